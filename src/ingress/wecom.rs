//! WeCom (企业微信): GET URL check answered with the bare decrypted `echostr`; POST events in
//! XML (`<Encrypt>`) or the JSON flavour (`"encrypt"`), answered 200 with an empty body, or
//! `success` for a third-party suite's command callback.

use super::{Accepted, Method, Query, Reply, Request, event, param, utf8};
use crate::config::Receiver;
use crate::crypto::envelope::{Envelope, Signed};
use crate::crypto::{Freshness, OpenError};
use crate::event::xml;

pub(super) fn open(
    receiver: &Receiver,
    envelope: &Envelope,
    suite: bool,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    let q = Query::parse(req.query);
    let signed = Signed {
        timestamp: param(&q, &["timestamp"])?,
        nonce: param(&q, &["nonce"])?,
        signature: param(&q, &["msg_signature"])?,
    };
    let fresh = Freshness {
        now_ms: req.now_ms,
        window_secs: receiver.timestamp_window,
    };
    match req.method {
        Method::Get => {
            let echostr = param(&q, &["echostr"])?;
            let opened = envelope.open(&signed, echostr, fresh)?;
            Ok(Accepted {
                reply: Reply::text(opened.into_inner().message),
                event: None,
            })
        }
        Method::Post => {
            let encrypt = encrypt_field(req.body)?;
            let plaintext = envelope
                .open(&signed, &encrypt, fresh)?
                .try_map(|o| utf8(o.message))?;
            let reply = if suite {
                Reply::text("success")
            } else {
                Reply::empty()
            };
            Ok(Accepted {
                reply,
                event: Some(event(receiver, plaintext, req.now_ms)?),
            })
        }
        Method::Other => Err(OpenError::Method),
    }
}

/// The ciphertext of a WXBizMsgCrypt POST body: `<xml><Encrypt>` or JSON `{"encrypt"}`.
pub(super) fn encrypt_field(body: &[u8]) -> Result<String, OpenError> {
    let text = std::str::from_utf8(body).map_err(|_| OpenError::malformed("body", "not UTF-8"))?;
    let text = text.trim_start();
    if text.starts_with('{') {
        let map = super::json_object(text.as_bytes())?;
        return super::str_field(&map, "encrypt").map(str::to_owned);
    }
    let mut fields = xml::to_json(text).map_err(|e| OpenError::malformed("body", e))?;
    match fields.remove("Encrypt") {
        Some(serde_json::Value::String(s)) => Ok(s),
        _ => Err(OpenError::Missing("Encrypt")),
    }
}

/// The plaintext fields as a verified value (used by WeChat MP compat and plaintext modes).
pub(super) fn plaintext_body(body: &[u8]) -> Result<String, OpenError> {
    String::from_utf8(body.to_vec()).map_err(|_| OpenError::malformed("body", "not UTF-8"))
}
