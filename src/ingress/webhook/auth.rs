//! Who may call a webhook receiver: the client's address against `allow_ips` (seen through
//! `trusted_proxies` only), then the proof of origin its `auth` asks for.

use minijinja::Value as Jinja;
use serde_json::Map;

use super::super::{Guard, Query, Request};
use super::{headers_map, query_map};
use crate::config::{AuthAt, BasicUser, Password, Receiver, Recipe, Webhook, WebhookAuth};
use crate::crypto::OpenError;
use crate::crypto::webhook::{
    StandardError, digest, encoded_matches, hmac_matches, standard_verify, token_matches,
};

/// Who is calling: the peer, or behind `trusted_proxies` the rightmost `X-Forwarded-For`
/// address that is not one of them (a client cannot forge what the last proxy appended).
pub(super) fn client_ip(w: &Webhook, req: &Request<'_>) -> Option<std::net::IpAddr> {
    let peer = req.peer?;
    let trusted = |ip: &std::net::IpAddr| w.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let Some(forwarded) = req.headers.get("x-forwarded-for") else {
        return Some(peer);
    };
    let mut hops = forwarded.rsplit(',').map(str::trim);
    let mut last = peer;
    for hop in hops.by_ref() {
        // A hop that is not an address (garbage, or `unknown`) ends what can be trusted.
        let ip: std::net::IpAddr = hop.parse().ok()?;
        if !trusted(&ip) {
            return Some(ip);
        }
        last = ip;
    }
    Some(last)
}

/// The proof of origin `auth` asks for.
pub(super) fn verify(
    receiver: &Receiver,
    auth: &WebhookAuth,
    guard: &Guard,
    req: &Request<'_>,
    query: &Query<'_>,
) -> Result<(), OpenError> {
    let carried = |at: &AuthAt| match at {
        AuthAt::Header(h) => req.headers.get(h),
        AuthAt::Query(q) => query.get(q),
    };
    match auth {
        WebhookAuth::None => Ok(()),
        WebhookAuth::Basic { users } => {
            let given = req
                .headers
                .get("authorization")
                .ok_or(OpenError::Missing("authorization"))?;
            basic_matches(users, given, guard, req.now_ms)?
                .then_some(())
                .ok_or(OpenError::BadToken)
        }
        WebhookAuth::Token {
            at,
            prefix,
            secrets,
        } => {
            let given = carried(at).ok_or(OpenError::Missing("token"))?;
            let given = strip_prefix(given.trim(), prefix).ok_or(OpenError::BadToken)?;
            let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
            token_matches(&secrets, given)
                .then_some(())
                .ok_or(OpenError::BadToken)
        }
        WebhookAuth::Hmac {
            at,
            prefix,
            algorithm,
            encoding,
            secrets,
        } => {
            let given = carried(at).ok_or(OpenError::Missing("signature"))?;
            let given = strip_prefix(given.trim(), prefix).ok_or(OpenError::BadSignature)?;
            let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
            hmac_matches(*algorithm, *encoding, &secrets, &[req.body], given, "")
                .then_some(())
                .ok_or(OpenError::BadSignature)
        }
        WebhookAuth::Recipe(r) => {
            let given = carried(&r.at).ok_or(OpenError::Missing("signature"))?;
            let given = strip_prefix(given.trim(), &r.prefix).ok_or(OpenError::BadSignature)?;
            recipe_matches(receiver, r, req, query, given)
        }
        WebhookAuth::StandardWebhooks { keys } => {
            let header = |name: &'static str| req.headers.get(name).ok_or(OpenError::Missing(name));
            let (id, ts, sig) = (
                header("webhook-id")?,
                header("webhook-timestamp")?,
                header("webhook-signature")?,
            );
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.expose().as_slice()).collect();
            let window = i64::try_from(receiver.timestamp_window).unwrap_or(i64::MAX);
            let window = if window == 0 { i64::MAX } else { window };
            standard_verify(&keys, id, ts, sig, req.body, req.now_ms / 1000, window).map_err(|e| {
                match e {
                    StandardError::OutsideTolerance(..) | StandardError::BadTimestamp(_) => {
                        OpenError::StaleTimestamp {
                            timestamp: ts.chars().take(40).collect(),
                            window_secs: receiver.timestamp_window,
                        }
                    }
                    StandardError::NoMatch => OpenError::BadSignature,
                }
            })
        }
    }
}

/// `Basic base64(name:password)` of one of `users`: a plain password compared in constant
/// time, a bcrypt hash checked through the receiver's [`Guard`] (once per credential, new
/// ones within a budget). A name no user has costs a bcrypt check too, when any user has a
/// hash, so names cannot be told apart by the time a refusal takes.
pub(crate) fn basic_matches(
    users: &[BasicUser],
    given: &str,
    guard: &Guard,
    now_ms: i64,
) -> Result<bool, OpenError> {
    use base64::Engine;
    use subtle::ConstantTimeEq;
    let Some(encoded) = strip_prefix(given.trim(), "Basic ") else {
        return Ok(false);
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return Ok(false);
    };
    let Some((name, password)) = std::str::from_utf8(&decoded)
        .ok()
        .and_then(|s| s.split_once(':'))
    else {
        return Ok(false);
    };
    let mut plain = false;
    let mut hashed = None;
    for u in users {
        let same_name = u.name.as_bytes().ct_eq(name.as_bytes());
        match &u.password {
            Password::Plain(p) => {
                plain |= bool::from(same_name & p.expose().as_bytes().ct_eq(password.as_bytes()));
            }
            Password::Bcrypt(h) if bool::from(same_name) => hashed = Some(h.as_str()),
            Password::Bcrypt(_) => {}
        }
    }
    if plain {
        return Ok(true);
    }
    let any_hash = users.iter().find_map(|u| match &u.password {
        Password::Bcrypt(h) => Some(h.as_str()),
        Password::Plain(_) => None,
    });
    match (hashed, any_hash) {
        (Some(h), _) => guard.bcrypt_matches(name, password, h, now_ms),
        (None, Some(h)) => guard
            .bcrypt_matches(name, password, h, now_ms)
            .map(|_| false),
        (None, None) => Ok(false),
    }
}

/// A signature recipe: the claimed time within the window, then the recipe rendered with
/// each secret, digested, compared with `given`.
fn recipe_matches(
    receiver: &Receiver,
    r: &Recipe,
    req: &Request<'_>,
    query: &Query<'_>,
    given: &str,
) -> Result<(), OpenError> {
    let mut ctx = Map::new();
    ctx.insert("body".into(), String::from_utf8_lossy(req.body).into());
    ctx.insert("headers".into(), headers_map(req, |_| true));
    ctx.insert("query".into(), query_map(query, |_| true));
    if let Some(t) = &r.timestamp {
        let claimed = t
            .render(&Jinja::from(minijinja::value::Serde(&ctx)))
            .unwrap_or_default();
        let stale = || OpenError::StaleTimestamp {
            timestamp: claimed.chars().take(40).collect(),
            window_secs: receiver.timestamp_window,
        };
        let at = crate::time::parse_time(&claimed, &r.timezone).ok_or_else(stale)?;
        let skew_ms = (req.now_ms - at.as_millisecond()).unsigned_abs();
        let window = receiver.timestamp_window;
        if window > 0 && skew_ms > window.saturating_mul(1000) {
            return Err(stale());
        }
    }
    for secret in &r.secrets {
        ctx.insert("secret".into(), secret.expose().as_str().into());
        let Ok(text) = r.recipe.render(&Jinja::from(minijinja::value::Serde(&ctx))) else {
            continue;
        };
        if encoded_matches(&digest(r.algorithm, text.as_bytes()), r.encoding, given) {
            return Ok(());
        }
    }
    Err(OpenError::BadSignature)
}

/// `Bearer abc` → `abc` for prefix `Bearer ` (the prefix's case does not matter).
fn strip_prefix<'a>(given: &'a str, prefix: &str) -> Option<&'a str> {
    let head = given.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| given[prefix.len()..].trim_start())
}
