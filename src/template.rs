//! The Jinja environment every template and `if` expression runs in (minijinja): chainable
//! undefined values, fuel, a 1 MiB cap on what one rendering may produce, `html` parts
//! autoescaped, and the `datetime`, `shift` and capped `replace` filters; the event as
//! templates see it ([`EventView`]). Also what `hookgate check` reports about a template
//! before it ever runs.

use std::sync::{Arc, OnceLock};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};

use crate::time::{parse_duration, parse_time};

/// The event as templates and conditions see it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub id: i64,
    pub receiver: &'a str,
    pub vendor: &'a str,
    pub kind: &'a str,
    pub dedupe_key: &'a str,
    pub received_at_ms: i64,
    pub fields: &'a Map<String, Json>,
}

impl<'a> EventView<'a> {
    /// An event not stored yet: templates see its id as 0 (the id exists only once stored).
    pub fn unstored(event: &'a crate::event::Event) -> Self {
        Self {
            id: 0,
            receiver: event.receiver(),
            vendor: event.vendor().as_str(),
            kind: event.kind(),
            dedupe_key: event.dedupe_key(),
            received_at_ms: event.received_at_ms(),
            fields: event.fields(),
        }
    }

    /// The context templates see: the event's fields at the top level, `event` (the fields'
    /// own `event` object, if any, with `id`, `receiver`, `vendor`, `kind`, `dedupe_key` and
    /// `received_at` laid over it), `fields` (all fields), and `tables`.
    pub fn context(&self, tables: &Json) -> Json {
        let mut top = self.fields.clone();
        let mut meta = match self.fields.get("event") {
            Some(Json::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        meta.insert("id".into(), self.id.into());
        meta.insert("receiver".into(), self.receiver.into());
        meta.insert("vendor".into(), self.vendor.into());
        meta.insert("kind".into(), self.kind.into());
        meta.insert("dedupe_key".into(), self.dedupe_key.into());
        meta.insert("received_at".into(), self.received_at_ms.into());
        top.insert("fields".into(), Json::Object(self.fields.clone()));
        top.insert("event".into(), Json::Object(meta));
        top.insert("tables".into(), tables.clone());
        Json::Object(top)
    }
}

/// What `explain` shows for a step that has not run: any path under it renders as
/// `⟨steps.name.rows[0].email⟩`, so the later actions show where its answer goes.
#[derive(Debug)]
pub struct Placeholder(pub String);

impl minijinja::value::Object for Placeholder {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let path = match key.as_usize() {
            Some(i) if key.kind() == minijinja::value::ValueKind::Number => {
                format!("{}[{i}]", self.0)
            }
            _ => format!("{}.{key}", self.0),
        };
        Some(Value::from_object(Placeholder(path)))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "⟨{}⟩", self.0)
    }
}

/// Bounds what one template can make the renderer do (loops over huge ranges and the like).
const FUEL: u64 = 200_000;

/// The environment templates are compiled in; `tz` is the zone `datetime` and `shift` use.
pub fn environment(tz: jiff::tz::TimeZone) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    // Mail and chat text is taken as it is; an email's `html` part escapes what it inserts
    // (event fields must not become links or tracking pixels; `|safe` opts out).
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    // Fuel bounds steps, not bytes: `replace` refuses to build more than a rendering may hold.
    env.add_filter("replace", capped_replace);
    let shift_tz = tz.clone();
    env.add_filter(
        "datetime",
        move |value: Value, format: Option<String>| -> Result<String, minijinja::Error> {
            datetime(&value, format.as_deref(), &tz)
        },
    );
    env.add_filter(
        "shift",
        move |value: Value, by: String| -> Result<String, minijinja::Error> {
            shift(&value, &by, &shift_tz)
        },
    );
    env.add_filter("fromjson", fromjson);
    // Hex digests, for the request signatures other systems ask for (Weaver's Md5 header).
    env.add_filter("md5", |s: &str| {
        hex::encode(<md5::Md5 as md5::Digest>::digest(s))
    });
    env.add_filter("sha1", |s: &str| {
        hex::encode(<sha1::Sha1 as sha1::Digest>::digest(s))
    });
    env.add_filter("sha256", |s: &str| {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s))
    });
    env.add_filter("render", render_data);
    env.add_filter("fill", fill);
    env
}

fn invalid(message: String) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message)
}

/// `fromjson`: JSON text (Feishu's `message.content`, an API's string field) as a value.
fn fromjson(text: Value) -> Result<Value, minijinja::Error> {
    serde_json::from_str::<Json>(&text.to_string())
        .map(|v| Value::from(minijinja::value::Serde(v)))
        .map_err(|e| invalid(format!("fromjson: {e}")))
}

std::thread_local! {
    /// Whether a `render` is running on this thread: a template from data may not render
    /// another (no recursion through data).
    static RENDERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `render`: a template that comes from data (a mail body kept in a database row), rendered
/// in the same environment (fuel, filters, caps) with the variables the calling template
/// sees. A template from data cannot `render` another.
fn render_data(
    state: &minijinja::State<'_, '_>,
    source: Value,
) -> Result<String, minijinja::Error> {
    let source = source.to_string();
    if RENDERING.with(std::cell::Cell::get) {
        return Err(invalid(
            "render: a template from data cannot render another".into(),
        ));
    }
    let ctx: std::collections::BTreeMap<String, Value> = state
        .known_variables()
        .iter()
        .filter_map(|name| Some((name.to_string(), state.lookup(name)?)))
        .collect();
    RENDERING.with(|r| r.set(true));
    let out = state.env().render_str(&source, Value::from(ctx));
    RENDERING.with(|r| r.set(false));
    let out = out.map_err(|e| invalid(format!("render: {e}")))?;
    if out.len() > MAX_RENDERED {
        return Err(invalid(format!("render: more than {MAX_RENDERED} bytes")));
    }
    Ok(out)
}

/// `fill(values)`: `{name}` placeholders (as templates kept by other tools write them, e.g.
/// `新增时间：{createtime}`) replaced by `values[name]`, matched exactly or else ignoring case;
/// a placeholder with no value stays as written.
fn fill(text: Value, values: Value) -> Result<String, minijinja::Error> {
    let text = text.to_string();
    let lookup = |name: &str| -> Option<String> {
        if let Ok(v) = values.get_attr(name)
            && !v.is_undefined()
        {
            return Some(v.to_string());
        }
        values.try_iter().ok()?.find_map(|k| {
            let key = k.as_str()?;
            key.eq_ignore_ascii_case(name)
                .then(|| values.get_attr(key).ok().map(|v| v.to_string()))
                .flatten()
        })
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let (name, tail) = after.split_at(name_len);
        match (tail.strip_prefix('}'), name.is_empty()) {
            (Some(tail), false) => {
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = tail;
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
        if out.len() > MAX_RENDERED {
            return Err(invalid(format!("fill: more than {MAX_RENDERED} bytes")));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The most text one template may render (fuel bounds its steps, not its bytes).
pub const MAX_RENDERED: usize = 1 << 20;

/// `replace`, refusing a result larger than [`MAX_RENDERED`] before building it.
fn capped_replace(value: String, from: String, to: String) -> Result<String, minijinja::Error> {
    let hits = if from.is_empty() {
        value.chars().count() + 1
    } else {
        value.matches(from.as_str()).count()
    };
    let size = value
        .len()
        .saturating_add(hits.saturating_mul(to.len()))
        .saturating_sub(hits.saturating_mul(from.len()));
    if size > MAX_RENDERED {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("replace: the result would be {size} bytes, over the {MAX_RENDERED}"),
        ));
    }
    Ok(value.replace(from.as_str(), &to))
}

/// An output for templates that fails once [`MAX_RENDERED`] bytes are exceeded.
#[derive(Default)]
pub struct Capped(pub Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(bytes.len()) > MAX_RENDERED {
            return Err(std::io::Error::other(format!(
                "the rendered text passed {} KiB",
                MAX_RENDERED / 1024
            )));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `shift`: a time moved by a signed duration (`'-1d'`, `'2h30m'`), as local time.
fn shift(value: &Value, by: &str, tz: &jiff::tz::TimeZone) -> Result<String, minijinja::Error> {
    let invalid = |m: String| minijinja::Error::new(ErrorKind::InvalidOperation, m);
    let text = value.to_string();
    let ts =
        parse_time(&text, tz).ok_or_else(|| invalid(format!("shift: {text:?} is not a time")))?;
    let (sign, rest) = match by.trim().strip_prefix('-') {
        Some(r) => (-1i64, r),
        None => (1, by.trim().trim_start_matches('+')),
    };
    let d = parse_duration(rest).map_err(|e| invalid(format!("shift: {e}")))?;
    let secs = sign * i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let moved = ts
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| invalid(format!("shift: {e}")))?;
    Ok(moved
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string())
}

/// `datetime`: vendor epoch seconds or milliseconds (a number or numeric text) to local time.
fn datetime(
    value: &Value,
    format: Option<&str>,
    tz: &jiff::tz::TimeZone,
) -> Result<String, minijinja::Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(String::new());
    }
    let text = value.to_string();
    let ts = match text.trim().parse::<f64>() {
        Ok(n) => {
            // Seconds until the year 5138; above that, milliseconds (DingTalk, Feishu).
            let ms = if n.abs() > 1e11 { n } else { n * 1000.0 };
            jiff::Timestamp::from_millisecond(ms as i64).map_err(|e| {
                minijinja::Error::new(ErrorKind::InvalidOperation, format!("datetime: {e}"))
            })?
        }
        // RFC 3339 (Alertmanager, Standard Webhooks) or a local date and time.
        Err(_) => parse_time(&text, tz).ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("datetime: {text:?} is not a timestamp"),
            )
        })?,
    };
    let zoned = ts.to_zoned(tz.clone());
    Ok(zoned
        .strftime(format.unwrap_or("%Y-%m-%d %H:%M:%S"))
        .to_string())
}

/// A template compiled once, when its config is validated: a handle into the environment
/// of that config's [`Compiler`]. It renders only once the compiler has finished (a config
/// with errors is never run).
#[derive(Clone)]
pub struct Template {
    /// Its name in the environment (an `.html` field's name ends so: autoescaped).
    name: Arc<str>,
    src: Arc<str>,
    env: Arc<OnceLock<Environment<'static>>>,
}

impl Template {
    /// The text as written (what a fingerprint hashes).
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Renders for `ctx`, capped at [`MAX_RENDERED`]; the error is minijinja's reason.
    pub fn render(&self, ctx: &Value) -> Result<String, String> {
        let env = self
            .env
            .get()
            .ok_or("the config's templates were not compiled")?;
        let tmpl = env.get_template(&self.name).map_err(|e| describe(&e))?;
        let mut out = Capped::default();
        tmpl.render_captured_to(ctx.clone(), &mut out)
            .map_err(|e| describe_chain(&e))?;
        String::from_utf8(out.0).map_err(|e| e.to_string())
    }

    /// An `if` expression: true when it renders as `1` ([`condition_template`]).
    pub fn holds(&self, ctx: &Value) -> Result<bool, String> {
        self.render(ctx).map(|s| s == "1")
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.src, f)
    }
}

/// A JSON value whose every string is a [`Template`] (a vendor message body).
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    Text(Template),
    List(Vec<JsonTemplate>),
    /// Keys in order, as `serde_json` keeps them.
    Map(std::collections::BTreeMap<String, JsonTemplate>),
    /// A number, a boolean or null: as written.
    Value(Json),
}

impl JsonTemplate {
    /// The value as written, each template as its source text (for shape checks).
    pub fn source(&self) -> Json {
        match self {
            Self::Text(t) => Json::String(t.source().to_owned()),
            Self::List(items) => Json::Array(items.iter().map(Self::source).collect()),
            Self::Map(map) => {
                Json::Object(map.iter().map(|(k, v)| (k.clone(), v.source())).collect())
            }
            Self::Value(v) => v.clone(),
        }
    }

    /// Every template in it, named by its path from `path` (`message.markdown.text`,
    /// `message.at.atMobiles[0]`).
    pub fn templates<'a>(&'a self, path: String, out: &mut Vec<(String, &'a str)>) {
        match self {
            Self::Text(t) => out.push((path, t.source())),
            Self::List(items) => {
                for (i, v) in items.iter().enumerate() {
                    v.templates(format!("{path}[{i}]"), out);
                }
            }
            Self::Map(map) => {
                for (k, v) in map {
                    v.templates(format!("{path}.{k}"), out);
                }
            }
            Self::Value(_) => {}
        }
    }

    /// Renders every string; a failure names its path from `path` and minijinja's reason.
    pub fn render(&self, ctx: &Value, path: &str) -> Result<Json, (String, String)> {
        Ok(match self {
            Self::Text(t) => Json::String(t.render(ctx).map_err(|e| (path.to_owned(), e))?),
            Self::List(items) => Json::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.render(ctx, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Map(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(ctx, &format!("{path}.{k}"))?)))
                    .collect::<Result<_, (String, String)>>()?,
            ),
            Self::Value(v) => v.clone(),
        })
    }
}

/// Compiles one config's templates into one environment; [`Compiler::finish`] hands it to
/// every [`Template`] it made.
pub struct Compiler {
    env: Environment<'static>,
    tz: jiff::tz::TimeZone,
    shared: Arc<OnceLock<Environment<'static>>>,
    next: usize,
}

impl Compiler {
    /// `tz`: the zone `datetime` and `shift` use.
    pub fn new(tz: jiff::tz::TimeZone) -> Self {
        Self {
            env: environment(tz.clone()),
            tz,
            shared: Arc::new(OnceLock::new()),
            next: 0,
        }
    }

    /// Compiles `src`; `key` names it (a key ending in `.html` autoescapes). With the handle
    /// comes what `hookgate check` should report: bad syntax, or a filter, test or function
    /// that does not exist (the handle of a template that did not compile never renders).
    pub fn compile(&mut self, key: &str, src: &str) -> (Template, Option<String>) {
        self.next += 1;
        let template = Template {
            name: format!("{}:{key}", self.next).into(),
            src: src.into(),
            env: Arc::clone(&self.shared),
        };
        if let Err(e) = self
            .env
            .add_template_owned(template.name.to_string(), src.to_owned())
        {
            return (template, Some(describe(&e)));
        }
        let problem = match self.env.get_template(&template.name) {
            Ok(t) => match t.render(minijinja::context! {}) {
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::UnknownFilter
                            | ErrorKind::UnknownTest
                            | ErrorKind::UnknownFunction
                    ) =>
                {
                    Some(describe(&e))
                }
                _ => None,
            },
            Err(e) => Some(describe(&e)),
        };
        (template, problem)
    }

    /// The variables `t` reads, with their attribute paths (`tables.titles`).
    pub fn variables(&self, t: &Template) -> std::collections::HashSet<String> {
        self.env
            .get_template(&t.name)
            .map(|c| c.undeclared_variables(true))
            .unwrap_or_default()
    }

    /// The zone `datetime` and `shift` use (`[server] timezone`).
    pub fn timezone(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }

    /// An `if` expression, compiled as [`condition_template`].
    pub fn condition(&mut self, key: &str, expr: &str) -> (Template, Option<String>) {
        self.compile(key, &condition_template(expr))
    }

    /// Hands the environment to every template compiled in it.
    pub fn finish(self) {
        // A compiler is finished once (it is consumed), so the cell is empty here.
        let _ = self.shared.set(self.env);
    }
}

pub fn condition_template(expr: &str) -> String {
    format!("{{% if {expr} %}}1{{% endif %}}")
}

/// The expression a condition's template was made from (its source otherwise).
pub fn condition_expression(source: &str) -> &str {
    source
        .strip_prefix("{% if ")
        .and_then(|s| s.strip_suffix(" %}1{% endif %}"))
        .unwrap_or(source)
}

pub fn describe(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

/// [`describe`], with the cause (an output refused by [`Capped`]) when there is one.
pub fn describe_chain(e: &minijinja::Error) -> String {
    let mut s = describe(e);
    if let Some(source) = std::error::Error::source(e) {
        s.push_str(": ");
        s.push_str(&source.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config's templates are compiled once, into one environment their handles share:
    /// they render only after `finish`, an `.html` field autoescapes, and the handle of a
    /// template that did not compile reports its problem instead of rendering.
    #[test]
    fn handles_render_from_the_one_compiled_environment() {
        let mut c = Compiler::new(jiff::tz::TimeZone::UTC);
        let (text, p1) = c.compile("rules[0].actions[0].body", "hi {{ name }}");
        let (html, p2) = c.compile("rules[0].actions[0].html", "<b>{{ name }}</b>");
        let (cond, p3) = c.condition("rules[0].if", "name == '<x>'");
        let (broken, p4) = c.compile("rules[0].actions[1].body", "{{ name ");
        let (_, p5) = c.compile("rules[0].actions[2].body", "{{ name | nope }}");
        assert_eq!((p1, p2, p3), (None, None, None));
        assert!(p4.unwrap().contains("syntax error"));
        assert!(p5.unwrap().contains("unknown filter"));
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({ "name": "<x>" }),
        ));
        assert!(text.render(&ctx).unwrap_err().contains("not compiled"));
        c.finish();
        assert_eq!(text.render(&ctx).unwrap(), "hi <x>");
        assert_eq!(html.render(&ctx).unwrap(), "<b>&lt;x&gt;</b>");
        assert!(cond.holds(&ctx).unwrap());
        assert!(broken.render(&ctx).is_err());
        assert_eq!(text.source(), "hi {{ name }}");
    }

    #[test]
    fn times_parse_and_shift_in_the_configured_zone() {
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let want = 1_700_000_000_000;
        for text in [
            "1700000000",
            "1700000000000",
            "2023-11-15T06:13:20+08:00",
            "2023-11-15 06:13:20",
        ] {
            assert_eq!(
                parse_time(text, &tz).map(|t| t.as_millisecond()),
                Some(want),
                "{text}"
            );
        }
        assert_eq!(
            parse_time("2023-11-15", &tz).map(|t| t.as_millisecond()),
            Some(1_699_977_600_000)
        );
        assert_eq!(parse_time("soon", &tz), None);
        let v = Value::from("2023-11-15 06:13:20");
        assert_eq!(shift(&v, "-1d", &tz).unwrap(), "2023-11-14 06:13:20");
        assert_eq!(shift(&v, "2h30m", &tz).unwrap(), "2023-11-15 08:43:20");
        // `datetime` reads epoch seconds or milliseconds, and RFC 3339 (Alertmanager's
        // startsAt, with fractions) too.
        for text in ["1700000000", "1700000000000", "2023-11-14T22:13:20.123Z"] {
            let v = Value::from(text);
            assert_eq!(
                datetime(&v, None, &tz).unwrap(),
                "2023-11-15 06:13:20",
                "{text}"
            );
        }
        let e = datetime(&Value::from("soon"), None, &tz).unwrap_err();
        assert!(e.to_string().contains("is not a timestamp"), "{e}");
    }

    fn render(template: &str, ctx: serde_json::Value) -> Result<String, String> {
        environment(jiff::tz::TimeZone::UTC)
            .render_str(template, Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn placeholders_show_where_a_steps_answer_goes() {
        let env = environment(jiff::tz::TimeZone::UTC);
        let steps = Value::from(std::collections::BTreeMap::from([(
            "tpl".to_owned(),
            Value::from_object(Placeholder("steps.tpl".into())),
        )]));
        let ctx = minijinja::context! { steps => steps, x => "1" };
        let out = env
            .render_str(
                "{{ steps.tpl.rows[0].subject }} {{ steps.tpl.rows[0].subject | fill(x) }}",
                ctx,
            )
            .unwrap();
        assert_eq!(
            out,
            "⟨steps.tpl.rows[0].subject⟩ ⟨steps.tpl.rows[0].subject⟩"
        );
    }

    #[test]
    fn data_can_hold_json_text_templates_and_placeholders() {
        let ctx = serde_json::json!({
            "content": "{\"text\":\"你好 <b>\"}",
            "UserID": "lisi",
            "CreateTime": 1_700_000_100,
            "row": {
                "body": "{{ UserID }} at {{ CreateTime | datetime }}",
                "legacy": "新增时间：{createtime}\n 新增成员 ID：{userid} {unknown} {not closed",
                "loop": "{{ row.loop | render }}",
                "big": "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}"
            }
        });
        assert_eq!(
            render("{{ (content | fromjson).text }}", ctx.clone()).unwrap(),
            "你好 <b>"
        );
        assert!(
            render("{{ 'nope' | fromjson }}", ctx.clone())
                .unwrap_err()
                .contains("fromjson")
        );
        assert_eq!(
            render("{{ row.body | render }}", ctx.clone()).unwrap(),
            "lisi at 2023-11-14 22:15:00"
        );
        assert_eq!(
            render("{{ row.legacy | fill(fields_of) }}", {
                let mut c = ctx.clone();
                c["fields_of"] = serde_json::json!({"CreateTime": "2023-11-15", "UserID": "lisi"});
                c
            })
            .unwrap(),
            "新增时间：2023-11-15\n 新增成员 ID：lisi {unknown} {not closed"
        );
        // Data cannot recurse through render, nor outrun the fuel.
        let e = render("{{ row.loop | render }}", ctx.clone()).unwrap_err();
        assert!(e.contains("cannot render another"), "{e}");
        let e = render("{{ row.big | render }}", ctx).unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        // Digests as other systems' signatures want them (md5("abc"), sha1, sha256).
        assert_eq!(
            render(
                "{{ 'abc' | md5 }} {{ 'abc' | sha1 | upper }}",
                serde_json::json!({})
            )
            .unwrap(),
            "900150983cd24fb0d6963f7d28e17f72 A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(
            render("{{ 'abc' | sha256 }}", serde_json::json!({})).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
