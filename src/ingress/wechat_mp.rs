//! WeChat Official Account (公众号): GET URL check with the 3-part `signature` answered with the
//! plain `echostr`; POST in safe mode (`encrypt_type=aes`, 4-part `msg_signature`), or in
//! plaintext (3-part `signature`) where the receiver's mode allows it. Answered `success`.

use super::wecom::encrypt_field;
use super::{Accepted, Method, Query, Reply, Request, event, param, utf8};
use crate::config::{MpMode, Receiver};
use crate::crypto::envelope::{Envelope, Signed, verify_signature};
use crate::crypto::{Freshness, OpenError, Verified};
use crate::secret::Secret;

pub(super) fn open(
    receiver: &Receiver,
    token: &Secret<String>,
    envelope: Option<&Envelope>,
    mode: MpMode,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    let q = Query::parse(req.query);
    let timestamp = param(&q, &["timestamp"])?;
    let nonce = param(&q, &["nonce"])?;
    let fresh = Freshness {
        now_ms: req.now_ms,
        window_secs: receiver.timestamp_window,
    };
    // The URL check and plaintext messages carry sha1(sorted [token, timestamp, nonce]).
    let plain_check = || -> Result<(), OpenError> {
        let signature = param(&q, &["signature"])?;
        let mut parts = [
            token.expose().as_bytes(),
            timestamp.as_bytes(),
            nonce.as_bytes(),
        ];
        verify_signature(&mut parts, signature)?;
        fresh.check(timestamp)
    };
    match req.method {
        Method::Get => {
            let echostr = param(&q, &["echostr"])?;
            plain_check()?;
            Ok(Accepted {
                reply: Reply::text(echostr.as_bytes()),
                event: None,
            })
        }
        Method::Post => {
            let encrypted = q.get("encrypt_type") == Some("aes");
            let plaintext = match (encrypted, envelope, mode) {
                (true, Some(envelope), MpMode::Safe | MpMode::Compat) => {
                    let signed = Signed {
                        timestamp,
                        nonce,
                        signature: param(&q, &["msg_signature"])?,
                    };
                    let encrypt = encrypt_field(req.body)?;
                    envelope
                        .open(&signed, &encrypt, fresh)?
                        .try_map(|o| utf8(o.message))?
                }
                (false, _, MpMode::Compat | MpMode::Plaintext) => {
                    plain_check()?;
                    Verified::new(super::wecom::plaintext_body(req.body)?)
                }
                (true, _, _) => {
                    return Err(OpenError::malformed(
                        "request",
                        "encrypted message, but the receiver is in plaintext mode",
                    ));
                }
                (false, _, MpMode::Safe) => return Err(OpenError::PlaintextRefused),
            };
            Ok(Accepted {
                reply: Reply::text("success"),
                event: Some(event(receiver, plaintext, req.now_ms)?),
            })
        }
        Method::Other => Err(OpenError::Method),
    }
}
