//! DingTalk robot signatures: `sign = base64(HmacSHA256(key = secret, msg = timestamp + "\n" +
//! secret))`, timestamp in milliseconds. Used to verify outgoing-robot callbacks and to sign
//! custom-robot webhook calls. Also Feishu's custom-bot signature, which swaps key and message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::OpenError;

fn mac(secret: &str, timestamp: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(secret.as_bytes());
    mac
}

/// One use of an outgoing robot's `timestamp`/`sign` pair: the sign covers no body, so a pair
/// may carry one body (`digest`, its SHA-256) until `until_ms`, when the timestamp window
/// refuses it anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignUse {
    pub receiver: String,
    pub timestamp: String,
    pub sign: String,
    pub digest: [u8; 32],
    pub until_ms: i64,
}

impl SignUse {
    pub fn new(receiver: &str, timestamp: &str, sign: &str, body: &[u8], until_ms: i64) -> Self {
        use sha2::Digest;
        Self {
            receiver: receiver.to_owned(),
            timestamp: timestamp.to_owned(),
            sign: sign.trim().to_owned(),
            digest: Sha256::digest(body).into(),
            until_ms,
        }
    }
}

/// The base64 signature for `timestamp` (not URL-encoded).
pub fn sign(secret: &str, timestamp: &str) -> String {
    STANDARD.encode(mac(secret, timestamp).finalize().into_bytes())
}

/// Checks a received `sign` header in constant time.
pub fn verify(secret: &str, timestamp: &str, sign: &str) -> Result<(), OpenError> {
    let received = STANDARD
        .decode(sign.trim())
        .map_err(|_| OpenError::BadSignature)?;
    mac(secret, timestamp)
        .verify_slice(&received)
        .map_err(|_| OpenError::BadSignature)
}

/// Feishu custom bot: `base64(HmacSHA256(key = timestamp + "\n" + secret, msg = ""))`, seconds.
pub fn feishu_bot_sign(secret: &str, timestamp_secs: &str) -> String {
    let key = format!("{timestamp_secs}\n{secret}");
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    STANDARD.encode(mac.finalize().into_bytes())
}
