//! `http`: POST (or PUT/PATCH) the event as JSON, or a rendered body, to a URL; optionally
//! signed (`X-Hookgate-Signature: sha256=<hex HMAC of the body>`). A URL whose host comes out
//! of a template (event data) may only reach `[outbound] allow_hosts`.

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

pub const KEYS: &[&str] = &["url", "method", "headers", "body", "secret", "timeout"];

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
        if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
            let s = a.method.as_ref().map(Spanned::span);
            c.err(
                s,
                format!("{prefix}.method"),
                format!("{method:?} is not one of POST, PUT, PATCH"),
            );
        }
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
        let (body, json) = match &self.body {
            Some(t) => (text(ctx, "body", t)?, false),
            None => (event_json(ev), true),
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
        })
    }
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
