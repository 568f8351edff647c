//! Callback crypto: every vendor's signature and AES scheme, as pure functions over bytes.
//! Knows nothing about HTTP, config files or the store; `ingress` calls it, and only a value
//! that passed through here can become a [`Verified`] payload.

pub mod envelope;
pub mod feishu;
pub mod robot;
pub mod webhook;

use subtle::ConstantTimeEq;

/// A value whose signature (and, where the scheme has one, receive id) was checked.
///
/// Only this module and `ingress` can build one, so code past the boundary cannot be handed
/// unverified input by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }

    /// Converts the inner value, keeping the proof of verification.
    pub(crate) fn try_map<U>(
        self,
        f: impl FnOnce(T) -> Result<U, OpenError>,
    ) -> Result<Verified<U>, OpenError> {
        f(self.0).map(Verified)
    }
}

/// Why a callback could not be opened. Every variant is the caller's fault (bad input), so
/// none is retryable on our side; the vendor retries on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("signature mismatch")]
    BadSignature,
    #[error("timestamp {timestamp:?} is outside the {window_secs} s window")]
    StaleTimestamp { timestamp: String, window_secs: u64 },
    #[error("ciphertext is not valid base64")]
    Base64,
    #[error("ciphertext length {0} is not a positive multiple of 16")]
    CipherLength(usize),
    #[error("invalid PKCS#7 padding")]
    Padding,
    #[error("decrypted buffer too short or message length out of range")]
    IllegalBuffer,
    #[error("receive id mismatch: the message is for {got:?}")]
    ReceiveId { got: String },
    #[error("verification token mismatch")]
    BadToken,
    #[error("decrypted message is not UTF-8")]
    NotUtf8,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("method not allowed")]
    Method,
    #[error("plaintext message refused: the receiver accepts only encrypted ones")]
    PlaintextRefused,
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// A robot's `timestamp`/`sign` pair seen before with another body (the sign covers no body).
    #[error("timestamp and sign already used for another body")]
    Replayed,
    /// Too many unsigned requests for one receiver; they are refused without being decrypted.
    #[error("too many unsigned requests; refused without decrypting")]
    Throttled,
    /// A request that carried no valid proof of origin. Every failure behind it gets this one
    /// answer, so an unauthenticated caller learns nothing (no padding oracle); the inner error
    /// is for the log.
    #[error("not authenticated: {0}")]
    Unauthenticated(Box<OpenError>),
    /// The client's address is not in the receiver's `allow_ips`.
    #[error("client address {0} is not in allow_ips")]
    NotAllowed(String),
}

impl OpenError {
    /// A short, stable name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::Base64
            | Self::CipherLength(_)
            | Self::Padding
            | Self::IllegalBuffer
            | Self::NotUtf8 => "undecryptable",
            Self::ReceiveId { .. } => "receive_id",
            Self::BadToken => "bad_token",
            Self::Missing(_) | Self::Malformed { .. } => "malformed",
            Self::Method => "method",
            Self::PlaintextRefused => "plaintext_refused",
            Self::Replayed => "replayed",
            Self::Throttled => "throttled",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::NotAllowed(_) => "not_allowed",
        }
    }

    /// The WXBizMsgCrypt return code the official SDKs give for this failure (WeCom, WeChat MP).
    pub fn wxbiz_code(&self) -> Option<i32> {
        Some(match self {
            Self::BadSignature => -40001,
            Self::Malformed { .. } | Self::Missing(_) => -40002,
            Self::Base64 => -40010,
            Self::CipherLength(_) | Self::Padding => -40007,
            Self::IllegalBuffer | Self::NotUtf8 => -40008,
            Self::ReceiveId { .. } => -40005,
            Self::StaleTimestamp { .. }
            | Self::BadToken
            | Self::Method
            | Self::PlaintextRefused
            | Self::Replayed
            | Self::Throttled
            | Self::Unauthenticated(_)
            | Self::NotAllowed(_) => return None,
        })
    }

    /// The exception code of DingTalk's official `DingCallbackCrypto` for this failure.
    pub fn dingtalk_code(&self) -> Option<i32> {
        Some(match self {
            Self::BadSignature => 900005,
            Self::Base64 | Self::CipherLength(_) | Self::Padding => 900008,
            Self::IllegalBuffer | Self::NotUtf8 => 900009,
            Self::ReceiveId { .. } => 900010,
            _ => return None,
        })
    }

    /// The HTTP status to answer with: 403 when the sender is not who it claims, else 400.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadSignature
            | Self::StaleTimestamp { .. }
            | Self::ReceiveId { .. }
            | Self::BadToken
            | Self::PlaintextRefused
            | Self::Replayed
            | Self::Unauthenticated(_)
            | Self::NotAllowed(_) => 403,
            Self::Throttled => 429,
            Self::Method => 405,
            _ => 400,
        }
    }

    /// Wraps any failure of a request that was not authenticated (see `Unauthenticated`).
    pub(crate) fn unauthenticated(self) -> Self {
        match self {
            Self::Unauthenticated(_) => self,
            other => Self::Unauthenticated(Box::new(other)),
        }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl ToString) -> Self {
        Self::Malformed {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Constant-time equality of a received signature with the expected one.
pub fn ct_eq(received: &[u8], expected: &[u8]) -> bool {
    received.ct_eq(expected).into()
}

/// When a request was received and how much clock skew its timestamp may have.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub now_ms: i64,
    pub window_secs: u64,
}

impl Freshness {
    pub fn check(self, timestamp: &str) -> Result<(), OpenError> {
        check_timestamp(timestamp, self.now_ms, self.window_secs)
    }
}

/// Checks that a vendor timestamp is within `window_secs` of `now_ms`. Vendors send seconds
/// (WeCom, WeChat, Feishu) or milliseconds (DingTalk); values above 10^11 are milliseconds.
/// A window of 0 turns the check off.
pub fn check_timestamp(timestamp: &str, now_ms: i64, window_secs: u64) -> Result<(), OpenError> {
    if window_secs == 0 {
        return Ok(());
    }
    let stale = || OpenError::StaleTimestamp {
        timestamp: timestamp.chars().take(24).collect(),
        window_secs,
    };
    let value: i64 = timestamp.trim().parse().map_err(|_| stale())?;
    let ts_ms = if value > 100_000_000_000 {
        value
    } else {
        value.saturating_mul(1000)
    };
    let window_ms = i64::try_from(window_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    if now_ms.saturating_sub(ts_ms).abs() > window_ms {
        return Err(stale());
    }
    Ok(())
}

/// Lowercase hex of a digest into a fixed buffer (no allocation on the hot path).
pub(crate) fn hex_lower<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(M, 2 * N);
    let mut out = [0u8; M];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_window_accepts_seconds_and_milliseconds() {
        let now = 1_700_000_000_000;
        assert!(check_timestamp("1700000100", now, 300).is_ok());
        assert!(check_timestamp("1700000100000", now, 300).is_ok());
        assert!(check_timestamp("1699999600", now, 300).is_err());
        assert!(check_timestamp("1700000301", now, 300).is_err());
        assert!(check_timestamp("abc", now, 300).is_err());
        assert!(check_timestamp("abc", now, 0).is_ok());
        assert!(check_timestamp("-9223372036854775808", now, 300).is_err());
    }

    #[test]
    fn codes_follow_the_official_sdks() {
        assert_eq!(OpenError::BadSignature.wxbiz_code(), Some(-40001));
        assert_eq!(OpenError::Padding.dingtalk_code(), Some(900008));
        assert_eq!(OpenError::BadSignature.http_status(), 403);
        assert_eq!(OpenError::Base64.http_status(), 400);
    }
}
