//! `http`: POST (or PUT/PATCH) the event as JSON, or a rendered body, to a URL, or ask one
//! (GET/DELETE/HEAD); optionally signed (`X-Hookgate-Signature: sha256=<hex HMAC of the
//! body>`). The answer is its result (`{"status", "body"}`, the body parsed as JSON when it
//! is JSON, `keep` picking a part of it), which `as = "name"` keeps for later actions. A URL
//! whose host comes out of a template (event data) may only reach `[outbound] allow_hosts`.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;
use std::time::Duration;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, RawAction};
use super::outbound::{UrlTarget, url_target};
use super::render::{RenderError, text};
use crate::secret::Secret;
use crate::template::{EventView, Template};

pub const KEYS: &[&str] = &[
    "url", "method", "headers", "body", "secret", "timeout", "success", "keep",
];

/// The methods an `http` action may use.
const METHODS: [&str; 6] = ["POST", "PUT", "PATCH", "GET", "DELETE", "HEAD"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub url: Template,
    pub method: String,
    pub headers: Vec<(String, Template)>,
    /// `None`: the event as JSON.
    pub body: Option<Template>,
    /// Signs the body: `X-Hookgate-Signature: sha256=<hex hmac>`.
    pub secret: Option<Secret<String>>,
    pub timeout: Duration,
    pub success: Success,
    /// `keep`: the path of the part of a JSON answer to keep.
    pub keep: Option<Vec<PathStep>>,
}

/// The status codes that count as success: inclusive ranges (`2xx` is 200..=299).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success(pub Vec<(u16, u16)>);

impl Success {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&status))
    }
}

/// One step of a `keep` path: a key, or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub url: String,
    /// The URL's host comes out of a template (event data): `[outbound]` confines it.
    pub host_from_template: bool,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `true` when the body is the event as JSON (sent as application/json).
    pub json: bool,
    pub secret: Option<Secret<String>>,
    pub timeout: Duration,
    pub success: Success,
    pub keep: Option<Vec<PathStep>>,
}

impl Spec {
    /// `url`, `method`, `headers`, `body` (the event as JSON without one), `secret`,
    /// `timeout`.
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let url = c.required_template(prefix, "url", &a.url, table, "http");
        let method = c
            .string(&a.method, &format!("{prefix}.method"))
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            let s = a.method.as_ref().map(Spanned::span);
            c.err(
                s,
                format!("{prefix}.method"),
                format!("{method:?} is not one of {}", METHODS.join(", ")),
            );
        }
        if matches!(method.as_str(), "GET" | "HEAD")
            && let Some(b) = &a.body
        {
            let message = format!("a {method} request carries no body");
            c.err(Some(b.span()), format!("{prefix}.body"), message);
        }
        let success = success(c, prefix, a);
        let keep = a.keep.as_ref().and_then(|k| match parse_path(k.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                c.err(Some(k.span()), format!("{prefix}.keep"), e);
                None
            }
        });
        let mut headers = Vec::new();
        if let Some(h) = &a.headers {
            for (k, v) in h.get_ref() {
                let key = format!("{prefix}.headers.{k}");
                if header_name_ok(k) {
                    if let Some(t) = c.template(&key, &Some(v.clone())) {
                        headers.push((k.clone(), t));
                    }
                } else {
                    c.err(
                        Some(v.span()),
                        key,
                        format!("{k:?} is not a valid header name"),
                    );
                }
            }
        }
        let body = c.template(&format!("{prefix}.body"), &a.body);
        let secret = c
            .string(&a.secret, &format!("{prefix}.secret"))
            .map(Secret::new);
        let timeout = Duration::from_secs(a.timeout.as_ref().map_or(10, |t| *t.get_ref()).max(1));
        let spec = Self {
            url: url?,
            method,
            headers,
            body,
            secret,
            timeout,
            success,
            keep,
        };
        if let Some(problem) = c.outbound().http_url_problem(spec.url.source()) {
            let s = a.url.as_ref().map(Spanned::span);
            c.err(s, format!("{prefix}.url"), problem);
        }
        Some(spec)
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("url".into(), self.url.source()));
        for (k, v) in &self.headers {
            out.push((format!("headers.{k}"), v.source()));
        }
        if let Some(b) = &self.body {
            out.push(("body".into(), b.source()));
        }
    }

    pub fn render(&self, ctx: &Value, ev: &EventView<'_>) -> Result<Rendered, RenderError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (k, t) in &self.headers {
            headers.push((k.clone(), text(ctx, &format!("headers.{k}"), t)?));
        }
        let (body, json) = match (&self.body, self.method.as_str()) {
            (Some(t), _) => (text(ctx, "body", t)?, false),
            // Asking, not telling: nothing to send.
            (None, "GET" | "HEAD" | "DELETE") => (String::new(), false),
            (None, _) => (event_json(ev), true),
        };
        Ok(Rendered {
            url: text(ctx, "url", &self.url)?,
            host_from_template: !matches!(
                url_target(self.url.source()),
                Ok(UrlTarget::Literal { .. })
            ),
            method: self.method.clone(),
            headers,
            body,
            json,
            secret: self.secret.clone(),
            timeout: self.timeout,
            success: self.success.clone(),
            keep: self.keep.clone(),
        })
    }
}

/// `success = [200, 404]` or `["2xx", 409]`: default every 2xx.
fn success(c: &mut dyn Check, prefix: &str, a: &RawAction) -> Success {
    let Some(v) = &a.success else {
        return Success(vec![(200, 299)]);
    };
    let key = format!("{prefix}.success");
    let items = match v.get_ref() {
        toml::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut out = Vec::new();
    for item in &items {
        let range = match item {
            toml::Value::Integer(n) => u16::try_from(*n)
                .ok()
                .filter(|n| (100..=599).contains(n))
                .map(|n| (n, n)),
            toml::Value::String(s) => s
                .strip_suffix("xx")
                .and_then(|d| d.parse::<u16>().ok())
                .filter(|d| (1..=5).contains(d))
                .map(|d| (d * 100, d * 100 + 99)),
            _ => None,
        };
        match range {
            Some(r) => out.push(r),
            None => {
                let message = format!("{item} is not a status code (100-599) or a class (\"2xx\")");
                c.err(Some(v.span()), key.clone(), message);
            }
        }
    }
    Success(out)
}

/// A `keep` path: keys separated by `.`, array indexes in brackets (`data.items[0].email`).
pub fn parse_path(text: &str) -> Result<Vec<PathStep>, String> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(PathStep::Key(key.to_owned()));
        } else if rest.is_empty() {
            return Err(format!("{text:?}: an empty key"));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let (index, after) = r
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: a [ without ]"))?;
            let i = index
                .parse()
                .map_err(|_| format!("{text:?}: [{index}] is not an index"))?;
            out.push(PathStep::Index(i));
            rest = after;
        }
        if !rest.is_empty() {
            return Err(format!("{text:?}: {rest:?} after an index"));
        }
    }
    Ok(out)
}

/// The part of `value` at `path` (`null` when it is not there).
pub fn pick(value: serde_json::Value, path: &[PathStep]) -> serde_json::Value {
    let mut v = value;
    for step in path {
        v = match (step, v) {
            (PathStep::Key(k), serde_json::Value::Object(mut m)) => m.remove(k).unwrap_or_default(),
            (PathStep::Index(i), serde_json::Value::Array(mut a)) if *i < a.len() => {
                a.swap_remove(*i)
            }
            _ => return serde_json::Value::Null,
        };
    }
    v
}

/// The event as the `http` action posts it by default.
pub fn event_json(ev: &EventView<'_>) -> String {
    serde_json::json!({
        "id": ev.id,
        "receiver": ev.receiver,
        "vendor": ev.vendor,
        "kind": ev.kind,
        "dedupe_key": ev.dedupe_key,
        "received_at_ms": ev.received_at_ms,
        "fields": ev.fields,
    })
    .to_string()
}

/// An HTTP token (RFC 9110): what a header name may be.
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
