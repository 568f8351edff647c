//! The config file as written: serde types with spans, every key optional so that validation
//! can report all missing and misplaced keys at once. Unknown keys are collected, not fatal.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub receivers: Vec<Spanned<RawReceiver>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: S<String>,
    pub body_limit: S<u64>,
    pub header_read_timeout: S<u64>,
    pub body_read_timeout: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub path: S<String>,
    pub synchronous: S<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawReceiver {
    pub name: S<String>,
    pub vendor: S<String>,
    pub path: S<String>,
    pub timestamp_window: S<u64>,
    pub token: S<String>,
    pub encoding_aes_key: S<String>,
    pub previous_encoding_aes_key: S<String>,
    pub receive_id: S<String>,
    pub suite: S<bool>,
    pub mode: S<String>,
    pub verification_token: S<String>,
    pub encrypt_key: S<String>,
    pub app_secret: S<String>,
}

impl RawReceiver {
    /// The vendor-specific keys that are set, by name, for the "does not apply" check.
    pub fn vendor_keys(&self) -> [(&'static str, Option<std::ops::Range<usize>>); 9] {
        fn span<T>(v: &S<T>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("token", span(&self.token)),
            ("encoding_aes_key", span(&self.encoding_aes_key)),
            (
                "previous_encoding_aes_key",
                span(&self.previous_encoding_aes_key),
            ),
            ("receive_id", span(&self.receive_id)),
            ("suite", span(&self.suite)),
            ("mode", span(&self.mode)),
            ("verification_token", span(&self.verification_token)),
            ("encrypt_key", span(&self.encrypt_key)),
            ("app_secret", span(&self.app_secret)),
        ]
    }
}
