//! Actions with every template rendered: what the delivery worker sends.

use std::time::Duration;

use minijinja::Value;

use super::{EventView, RuleSet};
use crate::config::{Action, RobotVendor};
use crate::secret::Secret;

/// An action ready to run.
#[derive(Debug, Clone)]
pub enum Rendered {
    Log {
        level: tracing::Level,
        message: String,
    },
    Http(RenderedHttp),
    Email(RenderedEmail),
    Robot(RenderedRobot),
}

#[derive(Debug, Clone)]
pub struct RenderedRobot {
    pub vendor: RobotVendor,
    pub webhook: String,
    pub secret: Option<Secret<String>>,
    /// The vendor's JSON body with every template rendered.
    pub message: serde_json::Value,
    pub per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct RenderedHttp {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `true` when the body is the event as JSON (sent as application/json).
    pub json: bool,
    pub secret: Option<Secret<String>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RenderedEmail {
    pub via: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    pub one_per_recipient: bool,
}

impl Rendered {
    pub fn kind(&self) -> &'static str {
        match self {
            Rendered::Log { .. } => "log",
            Rendered::Http(_) => "http",
            Rendered::Email(_) => "email",
            Rendered::Robot(r) => r.vendor.kind(),
        }
    }
}

/// Addresses from rendered list items: each item may hold several, split on `,` `;` or
/// whitespace; empty ones (an unset field) are dropped.
fn addresses(items: Vec<String>) -> Vec<String> {
    items
        .iter()
        .flat_map(|s| s.split([',', ';', '\n', ' ', '\t']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn render(
    set: &RuleSet,
    rule: usize,
    action: usize,
    spec: &Action,
    ctx: &Value,
    ev: &EventView<'_>,
) -> Result<Rendered, String> {
    let field = |name: &str| set.render_field(rule, action, name, ctx);
    let list = |name: &str, n: usize| -> Result<Vec<String>, String> {
        (0..n).map(|i| field(&format!("{name}[{i}]"))).collect()
    };
    Ok(match spec {
        Action::Log { level, .. } => Rendered::Log {
            level: *level,
            message: field("message")?,
        },
        Action::Http {
            method,
            headers,
            body,
            secret,
            timeout,
            ..
        } => {
            let mut out_headers = Vec::with_capacity(headers.len());
            for (k, _) in headers {
                out_headers.push((k.clone(), field(&format!("headers.{k}"))?));
            }
            let (body, json) = match body {
                Some(_) => (field("body")?, false),
                None => (event_json(ev), true),
            };
            Rendered::Http(RenderedHttp {
                url: field("url")?,
                method: method.clone(),
                headers: out_headers,
                body,
                json,
                secret: secret.clone(),
                timeout: *timeout,
            })
        }
        Action::Email {
            via,
            to,
            cc,
            bcc,
            html,
            one_per_recipient,
            ..
        } => Rendered::Email(RenderedEmail {
            via: via.clone(),
            to: addresses(list("to", to.len())?),
            cc: addresses(list("cc", cc.len())?),
            bcc: addresses(list("bcc", bcc.len())?),
            subject: field("subject")?,
            body: field("body")?,
            html: html.as_ref().map(|_| field("html")).transpose()?,
            one_per_recipient: *one_per_recipient,
        }),
        Action::Robot {
            vendor,
            secret,
            message,
            per_minute,
            ..
        } => Rendered::Robot(RenderedRobot {
            vendor: *vendor,
            webhook: field("webhook")?,
            secret: secret.clone(),
            message: render_json(message, "message".into(), &field)?,
            per_minute: *per_minute,
        }),
    })
}

/// The JSON value with each string replaced by its rendered template (named by path, as
/// `Action::templates` names them).
fn render_json(
    value: &serde_json::Value,
    path: String,
    field: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(_) => J::String(field(&path)?),
        J::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_json(v, format!("{path}[{i}]"), field))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, format!("{path}.{k}"), field)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
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
