//! The config file as written: serde types with spans, every key optional so that validation
//! can report all missing and misplaced keys at once. Unknown keys are collected, not fatal.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub use crate::actions::check::RawAction;

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
    pub admin: Option<Spanned<RawAdmin>>,
}

/// `[admin]`: who may use the admin API and console on `server.admin_listen`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub users: S<Vec<Spanned<String>>>,
    pub tokens: S<Vec<Spanned<String>>>,
    pub operators: S<Vec<Spanned<String>>>,
    pub open_on_loopback: S<bool>,
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
    pub proxy: S<String>,
    pub no_proxy: S<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub path: S<String>,
    pub synchronous: S<String>,
    pub url: S<String>,
    pub pool_size: S<u64>,
    pub lease: S<String>,
    pub ca_file: S<String>,
    pub keep_events: S<String>,
    pub keep_deliveries: S<String>,
    pub prune_every: S<String>,
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
    // webhook receivers
    pub auth: S<String>,
    pub secrets: S<Vec<Spanned<String>>>,
    pub auth_header: S<String>,
    pub auth_query: S<String>,
    pub algorithm: S<String>,
    pub encoding: S<String>,
    pub prefix: S<String>,
    pub dedupe_key: S<String>,
    pub kind: S<String>,
    pub recipe: S<String>,
    pub timestamp: S<String>,
    pub reply: S<String>,
    pub reply_type: S<String>,
    pub url_check: S<String>,
    pub allow_ips: S<Vec<Spanned<String>>>,
    pub trusted_proxies: S<Vec<Spanned<String>>>,
    pub users: S<Vec<Spanned<String>>>,
    // every receiver
    pub redact: S<Vec<Spanned<String>>>,
}

impl RawReceiver {
    /// The vendor-specific keys that are set, by name, for the "does not apply" check.
    pub fn vendor_keys(&self) -> [(&'static str, Option<std::ops::Range<usize>>); 36] {
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
            ("auth", span(&self.auth)),
            ("secrets", span(&self.secrets)),
            ("auth_header", span(&self.auth_header)),
            ("auth_query", span(&self.auth_query)),
            ("algorithm", span(&self.algorithm)),
            ("encoding", span(&self.encoding)),
            ("prefix", span(&self.prefix)),
            ("dedupe_key", span(&self.dedupe_key)),
            ("kind", span(&self.kind)),
            ("recipe", span(&self.recipe)),
            ("timestamp", span(&self.timestamp)),
            ("reply", span(&self.reply)),
            ("reply_type", span(&self.reply_type)),
            ("url_check", span(&self.url_check)),
            ("allow_ips", span(&self.allow_ips)),
            ("trusted_proxies", span(&self.trusted_proxies)),
            ("users", span(&self.users)),
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
    // mysql, postgres
    pub pool_size: S<u64>,
    // wecom, dingtalk
    pub proxy: S<String>,
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
            ("pool_size", span(&self.pool_size)),
            ("proxy", span(&self.proxy)),
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
    pub per_destination: S<u64>,
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
    pub schedule: S<String>,
    pub every: S<String>,
    pub missed: S<String>,
    #[serde(default)]
    pub actions: Vec<Spanned<RawAction>>,
}
