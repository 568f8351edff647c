//! `vendor = "webhook"`: a signed POST from any system. Who may call (`allow_ips`) and the
//! proof of origin (`auth`, over the body's exact bytes) are checked before anything else,
//! and every failure is one answer (403, the detail only in the log). The body (JSON,
//! form-encoded or XML) becomes the event's fields; a form is stored as the JSON object of
//! its fields, a JSON value that is not an object as `{"body": …}`. The receiver's `kind`,
//! `dedupe_key` and `reply` templates see the fields, `headers` and `query` (without what
//! carried the proof); a signed GET gets `url_check`.

mod auth;
#[cfg(feature = "server")]
pub(crate) use auth::basic_matches;
#[cfg(test)]
mod tests;

use minijinja::Value as Jinja;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use auth::{client_ip, verify};

use super::{Accepted, Guard, Method, Query, Reply, Request, event, require_post};
use crate::config::{AuthAt, Receiver, Webhook, WebhookAuth};
use crate::crypto::{OpenError, Verified};
use crate::event::Event;
use crate::template::Template;

/// Headers that carry credentials: never shown to templates.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "webhook-signature",
];

pub(super) fn open(
    receiver: &Receiver,
    w: &Webhook,
    guard: &Guard,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    let query = Query::parse(req.query);
    if !w.allow_ips.is_empty() {
        let client = client_ip(w, req);
        if !client.is_some_and(|ip| w.allow_ips.iter().any(|n| n.contains(&ip))) {
            let shown = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            return Err(OpenError::NotAllowed(shown));
        }
    }
    if req.method == Method::Get && w.url_check.is_some() {
        verify(receiver, &w.auth, guard, req, &query).map_err(OpenError::unauthenticated)?;
        let ctx = context(&Map::new(), &w.auth, req, &query);
        return Ok(Accepted {
            reply: reply(receiver, w, w.url_check.as_ref(), &ctx),
            event: None,
        });
    }
    require_post(req)?;
    verify(receiver, &w.auth, guard, req, &query).map_err(OpenError::unauthenticated)?;
    let content_type = req.headers.get("content-type");
    let (event, ctx) = tagged_event(receiver, w, req, &query, content_type, w.reply.is_some())?;
    let reply = match &ctx {
        Some(ctx) => reply(receiver, w, w.reply.as_ref(), ctx),
        None => Reply::json(&json!({ "ok": true })),
    };
    Ok(Accepted {
        reply,
        event: Some(event),
    })
}

/// An event from the operator's own file (`hookgate explain`): nothing to verify; the
/// receiver's `kind` and `dedupe_key` apply, seeing no headers and no query.
pub(super) fn from_file(
    receiver: &Receiver,
    w: &Webhook,
    text: &str,
    now_ms: i64,
) -> Result<Event, OpenError> {
    let headers = super::HeaderList(&[]);
    let req = Request {
        method: Method::Post,
        query: "",
        headers: &headers,
        body: text.as_bytes(),
        now_ms,
        peer: None,
    };
    tagged_event(receiver, w, &req, &Query::parse(""), None, false).map(|(event, _)| event)
}

/// The verified body as the event it is stored as, under the receiver's `kind` and
/// `dedupe_key`; with the context its templates see, when one of them (or the `reply`,
/// `with_reply`) needs it.
fn tagged_event(
    receiver: &Receiver,
    w: &Webhook,
    req: &Request<'_>,
    query: &Query<'_>,
    content_type: Option<&str>,
    with_reply: bool,
) -> Result<(Event, Option<Jinja>), OpenError> {
    let raw = normalize(content_type, req.body)?;
    // Checked by `verify` (or, with `auth = "none"`, accepted as configured; or the
    // operator's own file).
    let event = event(receiver, Verified::new(raw), req.now_ms)?;
    let ctx = (w.kind.is_some() || w.dedupe_key.is_some() || with_reply)
        .then(|| context(event.fields(), &w.auth, req, query));
    Ok((retag(event, w, req, ctx.as_ref())?, ctx))
}

/// The receiver's `reply` (or `url_check`) rendered; `{"ok":true}` without one, or when it
/// fails (logged).
fn reply(receiver: &Receiver, w: &Webhook, template: Option<&Template>, ctx: &Jinja) -> Reply {
    let Some(t) = template else {
        return Reply::json(&json!({ "ok": true }));
    };
    match t.render(ctx) {
        Ok(text) => Reply {
            status: 200,
            content_type: if w.reply_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            },
            body: text.into_bytes(),
        },
        Err(e) => {
            tracing::warn!(receiver = %receiver.name, error = %e, "The webhook's reply template failed; answered {{\"ok\":true}}.");
            Reply::json(&json!({ "ok": true }))
        }
    }
}

/// The body as the store keeps it: JSON object or XML text.
fn normalize(content_type: Option<&str>, body: &[u8]) -> Result<String, OpenError> {
    let text = std::str::from_utf8(body).map_err(|_| OpenError::NotUtf8)?;
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let form = content_type.is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if form {
        return Ok(Value::Object(form_fields(trimmed)).to_string());
    }
    if trimmed.is_empty() {
        return Ok("{}".to_owned());
    }
    if trimmed.starts_with('<') {
        return Ok(trimmed.to_owned());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(_)) => Ok(trimmed.to_owned()),
        Ok(other) => Ok(json!({ "body": other }).to_string()),
        Err(e) => Err(OpenError::malformed("body", e)),
    }
}

/// `a=1&b=x+y&a=2` → `{"a": ["1", "2"], "b": "x y"}`.
fn form_fields(text: &str) -> Map<String, Value> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    let mut out = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), Value::String(decode(v)));
        match out.get_mut(&k) {
            Some(Value::Array(items)) => items.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// The event under the receiver's `kind` and `dedupe_key`, when it has them; a Standard
/// Webhooks `webhook-id` is the default key (a retry carries the same one).
fn retag(
    event: Event,
    w: &Webhook,
    req: &Request<'_>,
    ctx: Option<&Jinja>,
) -> Result<Event, OpenError> {
    let standard_id = match w.auth {
        WebhookAuth::StandardWebhooks { .. } => req
            .headers
            .get("webhook-id")
            .map(|id| format!("webhook-id={id}")),
        _ => None,
    };
    let Some(ctx) = ctx else {
        return event
            .retag(None, standard_id)
            .map_err(|e| OpenError::malformed("event kind or key", e));
    };
    let render = |t: &Option<Template>, what: &str| {
        let t = t.as_ref()?;
        match t.render(ctx) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(receiver = %event.receiver(), error = %e, "The webhook's {what} template failed; the default is used.");
                None
            }
        }
    };
    let kind = render(&w.kind, "kind");
    let key = render(&w.dedupe_key, "dedupe_key").or(standard_id);
    event
        .retag(kind, key)
        .map_err(|e| OpenError::malformed("event kind or key", e))
}

/// What the receiver's templates see: the fields, `headers` and `query` (without the
/// headers and parameter that carried the proof), and `received_at` (epoch milliseconds).
fn context(
    fields: &Map<String, Value>,
    auth: &WebhookAuth,
    req: &Request<'_>,
    query: &Query<'_>,
) -> Jinja {
    let hidden_at = match auth {
        WebhookAuth::Token { at, .. } | WebhookAuth::Hmac { at, .. } => Some(at),
        WebhookAuth::Recipe(r) => Some(&r.at),
        _ => None,
    };
    let headers = headers_map(req, |k| {
        !SECRET_HEADERS.contains(&k) && !matches!(hidden_at, Some(AuthAt::Header(h)) if h == k)
    });
    let params = query_map(
        query,
        |k| !matches!(hidden_at, Some(AuthAt::Query(q)) if q == k),
    );
    let mut top = fields.clone();
    top.insert("headers".into(), headers);
    top.insert("query".into(), params);
    top.insert("received_at".into(), req.now_ms.into());
    Jinja::from(minijinja::value::Serde(Value::Object(top)))
}

/// The request's headers (lowercase names) that `keep` keeps, as a JSON object.
fn headers_map(req: &Request<'_>, keep: impl Fn(&str) -> bool) -> Value {
    let map: Map<String, Value> = req
        .headers
        .all()
        .into_iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Value::Object(map)
}

/// The query's parameters that `keep` keeps, as a JSON object.
fn query_map(query: &Query<'_>, keep: impl Fn(&str) -> bool) -> Value {
    let map: Map<String, Value> = query
        .pairs()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    Value::Object(map)
}
