//! What validating an action kind needs: the [`Check`] the config validator implements
//! (report a problem with its line, fill `${VAR}`, compile a template, look up a connection
//! or `[outbound]`), the helpers every kind uses on top of it, [`RawAction`] (the keys as
//! written) and the vendor message shapes.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::connection::Connection;
use super::outbound::OutboundConfig;
use crate::template::{JsonTemplate, Template};

/// A key as written: absent, or its value with where it sits in the file.
pub type S<T> = Option<Spanned<T>>;

/// Where an action kind's validation reports to and what it may look up.
pub trait Check {
    /// A problem at `span` (its line is reported), under `key` (`rules[0].actions[1].to`).
    fn report(&mut self, span: Option<Range<usize>>, key: String, message: String);
    /// How many problems were reported so far.
    fn errors_len(&self) -> usize;
    /// A string with `${VAR}` filled in; `None` (and a problem) if that fails.
    fn string(&mut self, value: &S<String>, key: &str) -> Option<String>;
    /// Compiles a template once, for good (a problem is reported; the handle comes back).
    fn compile(&mut self, key: &str, span: Option<Range<usize>>, src: &str) -> Template;
    /// A connection that validated.
    fn connection(&self, name: &str) -> Option<&Connection>;
    /// Whether the file declares a connection of that name (valid or not: one with its own
    /// problems is not reported again).
    fn declared(&self, name: &str) -> bool;
    /// `[outbound]`, read before the rules whose targets it confines.
    fn outbound(&self) -> &OutboundConfig;
}

impl dyn Check + '_ {
    pub fn err(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.report(span, key.into(), message.into());
    }

    /// An optional template.
    pub fn template(&mut self, key: &str, value: &S<String>) -> Option<Template> {
        let text = self.string(value, key)?;
        let span = value.as_ref().map(Spanned::span);
        Some(self.compile(key, span, &text))
    }

    /// A template the kind requires: "missing (required for kind …)" without it.
    pub fn required_template(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        table: &Range<usize>,
        kind: &str,
    ) -> Option<Template> {
        if value.is_none() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.{key}"),
                format!("missing (required for kind {kind})"),
            );
            return None;
        }
        self.template(&format!("{prefix}.{key}"), value)
    }

    /// One template or a list of them (`departments`).
    pub fn template_list(&mut self, key: &str, value: &S<toml::Value>) -> Vec<Template> {
        let Some(v) = value else {
            return Vec::new();
        };
        let items: Vec<&toml::Value> = match v.get_ref() {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) => {
                    if let Some(t) = self.template(key, &Some(Spanned::new(v.span(), s.to_owned())))
                    {
                        out.push(t);
                    }
                }
                None => self.err(Some(v.span()), key, "must be a string or a list of strings"),
            }
        }
        out
    }

    /// A table of templates by name (`params = { a = "{{ x }}" }`), in name order.
    pub fn template_table(
        &mut self,
        key: &str,
        table: &Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    ) -> Vec<(String, Template)> {
        let Some(t) = table else {
            return Vec::new();
        };
        t.get_ref()
            .iter()
            .filter_map(|(name, v)| {
                let t = self.template(&format!("{key}.{name}"), &Some(v.clone()))?;
                Some((name.clone(), t))
            })
            .collect()
    }

    /// A TOML value as JSON, `${VAR}` filled in and every string compiled as a template.
    pub fn json_template(
        &mut self,
        key: &str,
        span: Range<usize>,
        value: &toml::Value,
    ) -> Option<JsonTemplate> {
        Some(match value {
            toml::Value::String(s) => {
                JsonTemplate::Text(self.template(key, &Some(Spanned::new(span, s.clone())))?)
            }
            toml::Value::Integer(i) => JsonTemplate::Value((*i).into()),
            toml::Value::Float(f) => JsonTemplate::Value((*f).into()),
            toml::Value::Boolean(b) => JsonTemplate::Value((*b).into()),
            toml::Value::Datetime(d) => JsonTemplate::Value(d.to_string().into()),
            toml::Value::Array(items) => JsonTemplate::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.json_template(&format!("{key}[{i}]"), span.clone(), v))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(t) => JsonTemplate::Map(
                t.iter()
                    .map(|(k, v)| {
                        Some((
                            k.clone(),
                            self.json_template(&format!("{key}.{k}"), span.clone(), v)?,
                        ))
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// A vendor message (`message = { … }`), required, checked against the vendor's shapes
    /// (see [`message_shape`]).
    pub fn message(
        &mut self,
        prefix: &str,
        raw: &S<toml::Value>,
        table: &Range<usize>,
        missing: &str,
        shape: &dyn Fn(&serde_json::Value) -> Option<String>,
    ) -> Option<JsonTemplate> {
        let key = format!("{prefix}.message");
        let Some(raw) = raw else {
            self.err(Some(table.clone()), key, missing);
            return None;
        };
        let message = self.json_template(&key, raw.span(), raw.get_ref())?;
        if let Some(problem) = shape(&message.source()) {
            self.err(Some(raw.span()), key, problem);
        }
        Some(message)
    }

    /// The `image.path` / `file.path` of a message: local files only from `media_dir`.
    pub fn media_paths(&mut self, prefix: &str, message: &JsonTemplate, span: &S<toml::Value>) {
        let source = message.source();
        let problems: Vec<(&str, String)> = super::outbound::media_paths(&source)
            .into_iter()
            .filter_map(|(key, path)| Some((key, self.outbound().media_problem(path)?)))
            .collect();
        for (key, problem) in problems {
            let s = span.as_ref().map(Spanned::span);
            self.err(s, format!("{prefix}.message.{key}"), problem);
        }
    }
}

/// What is missing from a vendor message: `type_key` names its type, one of `types` with the
/// keys its body requires (`a|b`: either); `body_key` says where the body sits for a type.
pub fn message_shape(
    message: &serde_json::Value,
    type_key: &str,
    types: &[(&str, &[&str])],
    body_key: &dyn for<'t> Fn(&'t str) -> &'t str,
) -> Option<String> {
    let names: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
    let Some(t) = message.get(type_key).and_then(|t| t.as_str()) else {
        return Some(format!("needs {type_key} = one of {}", names.join(", ")));
    };
    let Some((_, required)) = types.iter().find(|(name, _)| *name == t) else {
        return Some(format!(
            "{type_key} {t:?} is not one of {}",
            names.join(", ")
        ));
    };
    let body_key = body_key(t);
    let Some(body) = message.get(body_key).and_then(|b| b.as_object()) else {
        return Some(format!("needs a {body_key} table for {type_key} {t:?}"));
    };
    for req in *required {
        if !req.split('|').any(|k| body.contains_key(k)) {
            return Some(format!("{body_key}.{req} is required for {type_key} {t:?}"));
        }
    }
    None
}

/// Every key any action kind takes; validation says which apply to which kind.
#[derive(Debug, Default, Deserialize)]
pub struct RawAction {
    pub kind: S<String>,
    // log
    pub level: S<String>,
    /// A string for `log`, the vendor's message table for robots.
    pub message: S<toml::Value>,
    // http
    pub url: S<String>,
    pub method: S<String>,
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub body: S<String>,
    pub secret: S<String>,
    pub timeout: S<u64>,
    /// `http`: the status codes that count as success (`[200, 404]`, `"2xx"`).
    pub success: S<toml::Value>,
    /// `http`: the part of a JSON answer to keep (`data.items[0]`).
    pub keep: S<String>,
    // api
    pub path: S<String>,
    pub json: S<toml::Value>,
    // sql
    pub query: S<String>,
    pub params: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub max_rows: S<u64>,
    pub write: S<bool>,
    // email
    pub via: S<String>,
    pub to: S<toml::Value>,
    pub cc: S<toml::Value>,
    pub bcc: S<toml::Value>,
    pub subject: S<String>,
    pub html: S<String>,
    pub one_per_recipient: S<bool>,
    // robots
    pub webhook: S<String>,
    pub per_minute: S<u64>,
    // vendor apps: groups and notifications
    pub key: S<String>,
    pub chat_id: S<String>,
    pub name: S<String>,
    pub owner: S<String>,
    pub members: S<toml::Value>,
    pub add_members: S<toml::Value>,
    pub remove_members: S<toml::Value>,
    pub first_message: S<String>,
    pub users: S<toml::Value>,
    pub departments: S<toml::Value>,
    /// Any kind: run this long after the event ("90s", "15m", "24h", "2d", "1h30m").
    pub after: S<String>,
    /// Any kind: run at this time (a template; see `rules::parse_time`).
    pub at: S<String>,
    /// Any kind: keep what it returns for the rule's later actions, as `steps.<name>`.
    #[serde(rename = "as")]
    pub step: S<String>,
    /// Any kind: run only if this holds when the action is due (after the steps before it);
    /// otherwise it ends `skipped`, and so do the rule's later actions.
    #[serde(rename = "if")]
    pub condition: S<String>,
    /// `cancel`: only deliveries of these rules.
    pub rules: S<toml::Value>,
}

impl RawAction {
    /// The kind-specific keys that are set, by name, for the "does not apply" check.
    pub fn keys(&self) -> Vec<(&'static str, Range<usize>)> {
        fn span<T>(v: &S<T>) -> Option<Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("level", span(&self.level)),
            ("message", span(&self.message)),
            ("url", span(&self.url)),
            ("method", span(&self.method)),
            ("headers", self.headers.as_ref().map(Spanned::span)),
            ("body", span(&self.body)),
            ("secret", span(&self.secret)),
            ("timeout", span(&self.timeout)),
            ("success", span(&self.success)),
            ("keep", span(&self.keep)),
            ("path", span(&self.path)),
            ("json", span(&self.json)),
            ("query", span(&self.query)),
            ("params", self.params.as_ref().map(Spanned::span)),
            ("max_rows", span(&self.max_rows)),
            ("write", span(&self.write)),
            ("via", span(&self.via)),
            ("to", span(&self.to)),
            ("cc", span(&self.cc)),
            ("bcc", span(&self.bcc)),
            ("subject", span(&self.subject)),
            ("html", span(&self.html)),
            ("one_per_recipient", span(&self.one_per_recipient)),
            ("webhook", span(&self.webhook)),
            ("per_minute", span(&self.per_minute)),
            ("rules", span(&self.rules)),
            ("chat_id", span(&self.chat_id)),
            ("name", span(&self.name)),
            ("owner", span(&self.owner)),
            ("members", span(&self.members)),
            ("add_members", span(&self.add_members)),
            ("remove_members", span(&self.remove_members)),
            ("first_message", span(&self.first_message)),
            ("users", span(&self.users)),
            ("departments", span(&self.departments)),
        ]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .collect()
    }
}
