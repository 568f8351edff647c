//! DingTalk outgoing robot (企业内部机器人) callbacks: headers `timestamp` (ms) and `sign` =
//! base64(HmacSHA256(app_secret, timestamp + "\n" + app_secret)), one-hour window by default.
//! Answered 200 with an empty body; replies to the chat go out through actions.

use super::{Accepted, Reply, Request, event, require_post};
use crate::config::Receiver;
use crate::crypto::{Freshness, OpenError, Verified, robot};
use crate::secret::Secret;

pub(super) fn open(
    receiver: &Receiver,
    app_secret: &Secret<String>,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    require_post(req)?;
    let timestamp = req
        .headers
        .get("timestamp")
        .ok_or(OpenError::Missing("timestamp header"))?;
    let sign = req
        .headers
        .get("sign")
        .ok_or(OpenError::Missing("sign header"))?;
    robot::verify(app_secret.expose(), timestamp, sign)?;
    Freshness {
        now_ms: req.now_ms,
        window_secs: receiver.timestamp_window,
    }
    .check(timestamp)?;
    let body = String::from_utf8(req.body.to_vec()).map_err(|_| OpenError::NotUtf8)?;
    Ok(Accepted {
        reply: Reply::empty(),
        event: Some(event(receiver, Verified::new(body), req.now_ms)?),
    })
}
