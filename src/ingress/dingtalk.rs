//! DingTalk (钉钉) HTTP event push: POST `{"encrypt": ...}` signed with `signature` or
//! `msg_signature`, `timestamp` or `timeStamp`, `nonce`. Every accepted callback, the
//! `check_url` family included, is answered with the encrypted `success` map.

use serde_json::json;

use super::{
    Accepted, Query, Reply, Request, event, json_object, param, require_post, str_field, utf8,
};
use crate::config::Receiver;
use crate::crypto::envelope::{Envelope, Signed, random_alnum};
use crate::crypto::{Freshness, OpenError};

/// URL checks DingTalk sends when the callback URL is saved; answered, never stored.
const URL_CHECKS: &[&str] = &[
    "check_url",
    "check_create_suite_url",
    "check_update_suite_url",
];

pub(super) fn open(
    receiver: &Receiver,
    envelope: &Envelope,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    require_post(req)?;
    let q = Query::parse(req.query);
    let signed = Signed {
        timestamp: param(&q, &["timeStamp", "timestamp"])?,
        nonce: param(&q, &["nonce"])?,
        signature: param(&q, &["msg_signature", "signature"])?,
    };
    let body = json_object(req.body)?;
    let encrypt = str_field(&body, "encrypt")?;
    let fresh = Freshness {
        now_ms: req.now_ms,
        window_secs: receiver.timestamp_window,
    };
    let opened = envelope.open(&signed, encrypt, fresh)?;
    let key_index = opened.get().key_index;
    let plaintext = opened.try_map(|o| utf8(o.message))?;
    let event = event(receiver, plaintext, req.now_ms)?;
    let is_check = URL_CHECKS.contains(&event.kind());
    Ok(Accepted {
        reply: success_reply(envelope, key_index, req.now_ms),
        event: (!is_check).then_some(event),
    })
}

/// `{"msg_signature","timeStamp","nonce","encrypt"}` around `success`, encrypted with the key
/// that opened the request, as the official `getEncryptedMap("success")` builds it.
fn success_reply(envelope: &Envelope, key_index: usize, now_ms: i64) -> Reply {
    let timestamp = now_ms.to_string();
    let nonce = String::from_utf8_lossy(&random_alnum()).into_owned();
    let sealed = envelope.seal(key_index, b"success", &timestamp, &nonce);
    Reply::json(&json!({
        "msg_signature": sealed.msg_signature,
        "timeStamp": timestamp,
        "nonce": nonce,
        "encrypt": sealed.encrypt,
    }))
}
