//! Feishu/Lark event subscription: POST JSON, encrypted (`{"encrypt"}`) when the app has an
//! Encrypt Key, then signed with `X-Lark-Signature` over the raw body. `url_verification` is
//! answered `{"challenge"}` after the verification token check; events `{"msg":"success"}`.
//!
//! With an Encrypt Key, an unsigned body can only be the URL check (Feishu signs everything
//! else). It must still be decrypted to learn that, so every failure of an unsigned body gets
//! one answer (no padding oracle), and unsigned decrypts are budgeted per receiver.

use serde_json::{Map, Value, json};

use super::{Accepted, Guard, Reply, Request, event, json_object, require_post};
use crate::config::Receiver;
use crate::crypto::feishu::FeishuKey;
use crate::crypto::{Freshness, OpenError, Verified, ct_eq};
use crate::secret::Secret;

pub(super) fn open(
    receiver: &Receiver,
    verification_token: &Secret<String>,
    key: Option<&FeishuKey>,
    guard: &Guard,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    require_post(req)?;
    match (key, req.headers.get("x-lark-signature")) {
        (Some(key), Some(signature)) => {
            // Checked over the raw bytes before anything is decrypted.
            verify(receiver, key, signature, req)?;
            open_body(receiver, verification_token, Some(key), req)
        }
        (Some(key), None) => guard
            .unsigned_decrypt(req.now_ms)
            .and_then(|()| url_check(receiver, verification_token, key, req))
            .map_err(OpenError::unauthenticated),
        (None, _) => open_body(receiver, verification_token, None, req),
    }
}

fn verify(
    receiver: &Receiver,
    key: &FeishuKey,
    signature: &str,
    req: &Request<'_>,
) -> Result<(), OpenError> {
    let timestamp = req
        .headers
        .get("x-lark-request-timestamp")
        .ok_or(OpenError::Missing("X-Lark-Request-Timestamp"))?;
    let nonce = req
        .headers
        .get("x-lark-request-nonce")
        .ok_or(OpenError::Missing("X-Lark-Request-Nonce"))?;
    key.verify_signature(timestamp, nonce, req.body, signature)?;
    Freshness {
        now_ms: req.now_ms,
        window_secs: receiver.timestamp_window,
    }
    .check(timestamp)
}

/// An unsigned body to a receiver with an Encrypt Key: only a URL check with the right token.
fn url_check(
    receiver: &Receiver,
    verification_token: &Secret<String>,
    key: &FeishuKey,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    let accepted = open_body(receiver, verification_token, Some(key), req)?;
    match accepted.event {
        None => Ok(accepted),
        Some(_) => Err(OpenError::Missing("X-Lark-Signature")),
    }
}

/// Decrypts (with a key) and answers a body whose origin is settled: signed, or a receiver
/// without an Encrypt Key (token only).
fn open_body(
    receiver: &Receiver,
    verification_token: &Secret<String>,
    key: Option<&FeishuKey>,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    let outer = json_object(req.body)?;
    let plaintext = match (outer.get("encrypt"), key) {
        (Some(Value::String(encrypt)), Some(key)) => key.decrypt(encrypt)?,
        (Some(_), Some(_)) => {
            return Err(OpenError::malformed("body", "\"encrypt\" is not a string"));
        }
        (Some(_), None) => {
            return Err(OpenError::malformed(
                "body",
                "encrypted, but the receiver has no encrypt_key",
            ));
        }
        (None, _) => String::from_utf8(req.body.to_vec()).map_err(|_| OpenError::NotUtf8)?,
    };
    let fields = match serde_json::from_str(&plaintext) {
        Ok(Value::Object(map)) => map,
        _ => return Err(OpenError::malformed("event", "not a JSON object")),
    };
    if fields.get("type").and_then(Value::as_str) == Some("url_verification") {
        check_token(&fields, &["token"], verification_token)?;
        let challenge = fields
            .get("challenge")
            .and_then(Value::as_str)
            .ok_or(OpenError::Missing("challenge"))?;
        return Ok(Accepted {
            reply: Reply::json(&json!({ "challenge": challenge })),
            event: None,
        });
    }
    check_token(&fields, &["header", "token"], verification_token)
        .or_else(|_| check_token(&fields, &["token"], verification_token))?;
    let event = event(receiver, Verified::new(plaintext), req.now_ms)?;
    Ok(Accepted {
        reply: Reply::json(&json!({ "msg": "success" })),
        event: Some(event),
    })
}

/// Compares the token at `path` (v2 `header.token`, v1 `token`) in constant time.
fn check_token(
    fields: &Map<String, Value>,
    path: &[&str],
    expected: &Secret<String>,
) -> Result<(), OpenError> {
    let mut value = fields.get(path[0]);
    for key in &path[1..] {
        value = value.and_then(|v| v.get(key));
    }
    match value.and_then(Value::as_str) {
        Some(token) if ct_eq(token.as_bytes(), expected.expose().as_bytes()) => Ok(()),
        _ => Err(OpenError::BadToken),
    }
}
