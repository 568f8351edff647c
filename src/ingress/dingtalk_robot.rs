//! DingTalk outgoing robot (企业内部机器人) callbacks: headers `timestamp` (ms) and `sign` =
//! base64(HmacSHA256(app_secret, timestamp + "\n" + app_secret)), one-hour window (as DingTalk
//! documents). Answered 200 with an empty body; replies to the chat go out through actions.
//!
//! The sign covers the timestamp only, never the body, so the receiver's [`Guard`] lets one
//! (timestamp, sign) pair carry one body: a captured pair cannot bring in a new message.
//! A missing header is an authentication failure (403, 310000) like a wrong sign.

use super::{Accepted, Guard, Reply, Request, event, require_post};
use crate::config::Receiver;
use crate::crypto::robot::SignUse;
use crate::crypto::{Freshness, OpenError, Verified, robot};
use crate::secret::Secret;

/// The (timestamp, sign) pair of a robot request and the body it carries, remembered until
/// the timestamp window would refuse it anyway (both sides of it, so twice the window).
pub(super) fn sign_use(receiver: &Receiver, req: &Request<'_>) -> Result<SignUse, OpenError> {
    let header = |name: &'static str| req.headers.get(name).ok_or(OpenError::Missing(name));
    let keep_ms = i64::try_from(receiver.timestamp_window.max(3_600))
        .unwrap_or(i64::MAX / 4_000)
        .saturating_mul(2_000);
    Ok(SignUse::new(
        &receiver.name,
        header("timestamp")?,
        header("sign")?,
        req.body,
        req.now_ms.saturating_add(keep_ms),
    ))
}

pub(super) fn open(
    receiver: &Receiver,
    app_secret: &Secret<String>,
    guard: &Guard,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    require_post(req)?;
    let header = |name: &'static str| {
        req.headers
            .get(name)
            .ok_or(OpenError::Missing(name).unauthenticated())
    };
    let (timestamp, sign) = (header("timestamp")?, header("sign")?);
    robot::verify(app_secret.expose(), timestamp, sign)?;
    Freshness {
        now_ms: req.now_ms,
        window_secs: receiver.timestamp_window,
    }
    .check(timestamp)?;
    guard.robot_sign(&sign_use(receiver, req)?, req.now_ms)?;
    let body = String::from_utf8(req.body.to_vec()).map_err(|_| OpenError::NotUtf8)?;
    Ok(Accepted {
        reply: Reply::empty(),
        event: Some(event(receiver, Verified::new(body), req.now_ms)?),
    })
}
