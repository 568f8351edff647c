//! The config file as written: serde types with spans, every key optional so that validation
//! can report all missing and misplaced keys at once. Unknown keys are collected, not fatal.

use std::collections::BTreeMap;

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
    #[serde(default)]
    pub connections: BTreeMap<String, Spanned<RawConnection>>,
    #[serde(default)]
    pub tables: BTreeMap<String, Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub outbound: RawOutbound,
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: S<String>,
    pub body_limit: S<u64>,
    pub header_read_timeout: S<u64>,
    pub body_read_timeout: S<u64>,
    pub timezone: S<String>,
    pub metrics_path: S<String>,
    pub admin_listen: S<String>,
    pub max_connections: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawOutbound {
    pub media_dir: S<String>,
    pub allow_hosts: S<Vec<toml::Spanned<String>>>,
    pub allow_private: S<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub path: S<String>,
    pub synchronous: S<String>,
    pub url: S<String>,
    pub pool_size: S<u64>,
    pub lease: S<String>,
    pub ca_file: S<String>,
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
    // stream receivers
    pub client_id: S<String>,
    pub client_secret: S<String>,
    pub topics: S<Vec<String>>,
    pub app_id: S<String>,
    pub domain: S<String>,
    pub bot_id: S<String>,
    pub secret: S<String>,
    pub api_base: S<String>,
    pub ws_url: S<String>,
    pub keepalive: S<String>,
}

impl RawReceiver {
    /// The vendor-specific keys that are set, by name, for the "does not apply" check.
    pub fn vendor_keys(&self) -> [(&'static str, Option<std::ops::Range<usize>>); 19] {
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
            ("client_id", span(&self.client_id)),
            ("client_secret", span(&self.client_secret)),
            ("topics", span(&self.topics)),
            ("app_id", span(&self.app_id)),
            ("domain", span(&self.domain)),
            ("bot_id", span(&self.bot_id)),
            ("secret", span(&self.secret)),
            ("api_base", span(&self.api_base)),
            ("ws_url", span(&self.ws_url)),
            ("keepalive", span(&self.keepalive)),
        ]
    }
}

/// `[connections.NAME]`: who actions talk to.
#[derive(Debug, Default, Deserialize)]
pub struct RawConnection {
    pub kind: S<String>,
    // smtp
    pub url: S<String>,
    pub from: S<String>,
    pub ca_file: S<String>,
    pub timeout: S<u64>,
    // wecom
    pub corp_id: S<String>,
    pub secret: S<String>,
    /// An integer, or a string (so that `${VAR}` works).
    pub agent_id: S<toml::Value>,
    // dingtalk
    pub app_key: S<String>,
    pub app_secret: S<String>,
    pub robot_code: S<String>,
    // both: API hosts (private deployments, tests)
    pub api_base: S<String>,
    pub new_api_base: S<String>,
}

impl RawConnection {
    /// The kind-specific keys that are set, for the "does not apply" check.
    pub fn keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        fn span<T>(v: &S<T>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("url", span(&self.url)),
            ("from", span(&self.from)),
            ("ca_file", span(&self.ca_file)),
            ("timeout", span(&self.timeout)),
            ("corp_id", span(&self.corp_id)),
            ("secret", span(&self.secret)),
            ("agent_id", span(&self.agent_id)),
            ("app_key", span(&self.app_key)),
            ("app_secret", span(&self.app_secret)),
            ("robot_code", span(&self.robot_code)),
            ("api_base", span(&self.api_base)),
            ("new_api_base", span(&self.new_api_base)),
        ]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .collect()
    }
}

/// `[delivery]`: the worker and its retry policy.
#[derive(Debug, Default, Deserialize)]
pub struct RawDelivery {
    pub concurrency: S<u64>,
    pub first_retry: S<u64>,
    pub max_backoff: S<u64>,
    pub give_up_after: S<u64>,
    pub rule_changed: S<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRule {
    pub name: S<String>,
    pub receiver: S<toml::Value>,
    pub when: Option<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    #[serde(rename = "if")]
    pub condition: S<String>,
    pub stop: S<bool>,
    #[serde(default)]
    pub actions: Vec<Spanned<RawAction>>,
}

/// Every key any action kind takes; validation says which apply to which kind.
#[derive(Debug, Default, Deserialize)]
pub struct RawAction {
    pub kind: S<String>,
    // log
    pub level: S<String>,
    /// A string for `log`, the vendor's message table for robots.
    pub message: S<toml::Value>,
    // http
    pub url: S<String>,
    pub method: S<String>,
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub body: S<String>,
    pub secret: S<String>,
    pub timeout: S<u64>,
    // email
    pub via: S<String>,
    pub to: S<toml::Value>,
    pub cc: S<toml::Value>,
    pub bcc: S<toml::Value>,
    pub subject: S<String>,
    pub html: S<String>,
    pub one_per_recipient: S<bool>,
    // robots
    pub webhook: S<String>,
    pub per_minute: S<u64>,
    // vendor apps: groups and notifications
    pub key: S<String>,
    pub chat_id: S<String>,
    pub name: S<String>,
    pub owner: S<String>,
    pub members: S<toml::Value>,
    pub add_members: S<toml::Value>,
    pub remove_members: S<toml::Value>,
    pub first_message: S<String>,
    pub users: S<toml::Value>,
    pub departments: S<toml::Value>,
    /// Any kind: run this long after the event ("90s", "15m", "24h", "2d", "1h30m").
    pub after: S<String>,
    /// Any kind: run at this time (a template; see `rules::parse_time`).
    pub at: S<String>,
    /// `cancel`: only deliveries of these rules.
    pub rules: S<toml::Value>,
}

impl RawAction {
    /// The kind-specific keys that are set, by name, for the "does not apply" check.
    pub fn keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        fn span<T>(v: &S<T>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("level", span(&self.level)),
            ("message", span(&self.message)),
            ("url", span(&self.url)),
            ("method", span(&self.method)),
            ("headers", self.headers.as_ref().map(Spanned::span)),
            ("body", span(&self.body)),
            ("secret", span(&self.secret)),
            ("timeout", span(&self.timeout)),
            ("via", span(&self.via)),
            ("to", span(&self.to)),
            ("cc", span(&self.cc)),
            ("bcc", span(&self.bcc)),
            ("subject", span(&self.subject)),
            ("html", span(&self.html)),
            ("one_per_recipient", span(&self.one_per_recipient)),
            ("webhook", span(&self.webhook)),
            ("per_minute", span(&self.per_minute)),
            ("rules", span(&self.rules)),
            ("chat_id", span(&self.chat_id)),
            ("name", span(&self.name)),
            ("owner", span(&self.owner)),
            ("members", span(&self.members)),
            ("add_members", span(&self.add_members)),
            ("remove_members", span(&self.remove_members)),
            ("first_message", span(&self.first_message)),
            ("users", span(&self.users)),
            ("departments", span(&self.departments)),
        ]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .collect()
    }
}
