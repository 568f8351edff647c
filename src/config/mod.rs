//! The config file: `raw` (serde, with spans) → [`validate`] → [`Config`].
//! Validation is pure: `${VAR}` values come from a lookup passed in, and every problem is
//! reported at once with its key and file line. Clients and sockets are built elsewhere.

mod admin;
mod check;
mod connections;
mod env;
mod keys;
mod outbound;
mod partial;
mod raw;
mod receivers;
mod rules;
mod schedule;
mod store;
mod validate;
mod webhook;

#[cfg(feature = "server")]
pub use crate::store::settings::parse_postgres_url;

pub use crate::actions::Action;
pub use crate::actions::connection::{
    Connection, DingTalkConnection, SmtpConnection, WeComConnection,
};
pub use crate::actions::outbound::OutboundConfig;
pub use crate::store::settings::{Retention, StoreConfig, Synchronous};
pub use crate::time::parse_duration;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::crypto::envelope::Envelope;
use crate::crypto::feishu::FeishuKey;
use crate::event::Vendor;
use crate::secret::Secret;
use crate::template::Template;

pub use env::{expand, parse_env_file};
pub use partial::{StoreOnly, parse_store};
pub use validate::parse;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub receivers: Vec<Receiver>,
    pub connections: BTreeMap<String, Connection>,
    /// `[tables.NAME]`: lookup tables for templates (`tables.NAME[key]`).
    pub tables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    pub delivery: DeliveryConfig,
    /// `[outbound]`: where actions may read files and which hosts event data may reach.
    pub outbound: OutboundConfig,
    /// In file order; every matching rule fires unless an earlier one says `stop`.
    pub rules: Vec<Rule>,
    /// `[admin]`: who may use the admin API and console.
    pub admin: AdminConfig,
}

/// `[admin]` as validated: Basic users and bearer tokens, by name; the names with the
/// operator role (the others only read).
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    pub users: Vec<BasicUser>,
    pub tokens: Vec<AdminToken>,
    pub operators: std::collections::BTreeSet<String>,
    /// No credentials asked on a loopback `admin_listen` (everyone is an operator there).
    pub open_on_loopback: bool,
}

/// A bearer token of the admin API.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub name: String,
    pub secret: TokenSecret,
}

#[derive(Debug, Clone)]
pub enum TokenSecret {
    /// `sha256:<hex>`: the token's SHA-256, so the config holds no usable token.
    Sha256([u8; 32]),
    /// The token itself, through `${VAR}`.
    Plain(Secret<String>),
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    pub body_limit: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Open connections per listener; more are closed at once. Default: the file-descriptor
    /// limit (raised to its hard limit at start) less 64.
    pub max_connections: Option<usize>,
    /// For the `datetime` template filter. Default Asia/Shanghai.
    pub timezone: jiff::tz::TimeZone,
    /// Where Prometheus scrapes. Default `/metrics`.
    pub metrics_path: String,
    /// A separate listener for `/metrics`, `/healthz` and `/readyz` (say on 127.0.0.1 only);
    /// when set, the callback listener no longer serves the metrics.
    pub admin_listen: Option<SocketAddr>,
}

/// One callback endpoint: a vendor app's URL and credentials.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub path: String,
    /// Accepted clock skew of the vendor's timestamp, in seconds; 0 turns the check off.
    pub timestamp_window: u64,
    pub credentials: Credentials,
    /// Fields (by name, at any depth) blanked before the event is stored or matched.
    pub redact: Vec<String>,
}

impl Receiver {
    pub fn vendor(&self) -> Vendor {
        match self.credentials {
            Credentials::WeCom { .. } => Vendor::WeCom,
            Credentials::WechatMp { .. } => Vendor::WechatMp,
            Credentials::DingTalk { .. } => Vendor::DingTalk,
            Credentials::Feishu { .. } => Vendor::Feishu,
            Credentials::DingTalkRobot { .. } => Vendor::DingTalkRobot,
            Credentials::DingTalkStream(_) => Vendor::DingTalkStream,
            Credentials::FeishuWs(_) => Vendor::FeishuWs,
            Credentials::WecomAibot(_) => Vendor::WecomAibot,
            Credentials::Webhook(_) => Vendor::Webhook,
        }
    }

    /// A long-connection receiver: it has no path; the gateway connects out.
    pub fn is_stream(&self) -> bool {
        self.vendor().is_stream()
    }
}

/// Per-vendor credentials, checked and expanded (AES keys built) at load.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `suite`: a third-party suite's command callback, answered `success`.
    WeCom {
        envelope: Envelope,
        suite: bool,
    },
    /// `envelope` is absent only in plaintext mode.
    WechatMp {
        token: Secret<String>,
        envelope: Option<Envelope>,
        mode: MpMode,
    },
    DingTalk {
        envelope: Envelope,
    },
    Feishu {
        verification_token: Secret<String>,
        encrypt_key: Option<Box<FeishuKey>>,
    },
    DingTalkRobot {
        app_secret: Secret<String>,
    },
    DingTalkStream(DingTalkStream),
    FeishuWs(FeishuWs),
    WecomAibot(WecomAibot),
    Webhook(Box<Webhook>),
}

/// `vendor = "webhook"`: a signed webhook from any system.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub auth: WebhookAuth,
    /// What `when` matches as the event's kind (a template over the body's fields, `headers`
    /// and `query`); default `webhook`.
    pub kind: Option<Template>,
    /// What tells a retry from a new event (a template, as `kind`); default the Standard
    /// Webhooks `webhook-id`, else a digest of the body.
    pub dedupe_key: Option<Template>,
    /// The answer once the event is stored (a template, as `kind`); default `{"ok":true}`.
    pub reply: Option<Template>,
    /// `reply` is JSON (`application/json`, the default) or text.
    pub reply_json: bool,
    /// The answer to an authenticated GET with a query (a platform's URL check), a template
    /// over `headers` and `query`; without it such a GET is refused (405).
    pub url_check: Option<Template>,
    /// Only these client networks may call (empty: any). The client is the connection's
    /// peer, or, when the peer is one of `trusted_proxies`, the rightmost address of
    /// `X-Forwarded-For` that is not one of them.
    pub allow_ips: Vec<ipnet::IpNet>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// One `users` entry of Basic auth.
#[derive(Debug, Clone)]
pub struct BasicUser {
    pub name: String,
    pub password: Password,
}

/// A Basic password as configured.
#[derive(Debug, Clone)]
pub enum Password {
    /// The password itself (through `${VAR}`), compared in constant time.
    Plain(Secret<String>),
    /// An htpasswd bcrypt hash (`htpasswd -nB`: `$2y$…`), checked once per credential and
    /// remembered (see `ingress::Guard`).
    Bcrypt(String),
}

/// How a webhook proves where it comes from. Several secrets are tried in turn (rotation).
#[derive(Debug, Clone)]
pub enum WebhookAuth {
    /// Explicitly nothing (a trusted network, or a platform that cannot sign).
    None,
    /// HTTP Basic: `Authorization: Basic base64(name:password)` of one of `users`.
    Basic { users: Vec<BasicUser> },
    /// A static token (an API key) in a header or the query, after `prefix` (`Bearer `).
    Token {
        at: AuthAt,
        prefix: String,
        secrets: Vec<Secret<String>>,
    },
    /// An HMAC of the body in a header or the query (`X-Hub-Signature-256: sha256=<hex>`).
    Hmac {
        at: AuthAt,
        prefix: String,
        algorithm: crate::crypto::webhook::Algorithm,
        encoding: crate::crypto::webhook::Encoding,
        secrets: Vec<Secret<String>>,
    },
    /// A signature recipe (Jiandaoyun, 有数 and Weaver sign this way).
    Recipe(Box<Recipe>),
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` (within `timestamp_window`),
    /// `webhook-signature` (`v1,<base64>`); the secrets' key bytes (`whsec_` decoded).
    StandardWebhooks { keys: Vec<Secret<Vec<u8>>> },
}

/// `auth = "recipe"`: the `recipe` template (over `body`, `headers`, `query` and `secret`)
/// rendered, digested with `algorithm` and compared to what `at` carries; `timestamp` (a
/// template) within `timestamp_window` when given.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub at: AuthAt,
    pub prefix: String,
    pub recipe: Template,
    pub algorithm: crate::crypto::webhook::Algorithm,
    pub encoding: crate::crypto::webhook::Encoding,
    pub timestamp: Option<Template>,
    /// The zone a `timestamp` without one is read in (`[server] timezone`).
    pub timezone: jiff::tz::TimeZone,
    pub secrets: Vec<Secret<String>>,
}

/// Where a token or signature travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAt {
    /// A header, by its lowercase name.
    Header(String),
    Query(String),
}

/// `vendor = "dingtalk_stream"`: a DingTalk app's Stream-mode connection.
#[derive(Debug, Clone)]
pub struct DingTalkStream {
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub topics: Vec<StreamTopic>,
    /// Where `/v1.0/gateway/connections/open` is; default `https://api.dingtalk.com`.
    pub api_base: String,
    pub keepalive: Duration,
}

/// What a DingTalk Stream connection subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamTopic {
    /// Every event ticked in the developer console (`EVENT` `*`).
    Events,
    /// Messages to the app's robot (`/v1.0/im/bot/messages/get`).
    RobotMessages,
    /// Interactive-card actions (`/v1.0/card/instances/callback`).
    CardCallbacks,
}

impl StreamTopic {
    pub const ALL: [StreamTopic; 3] = [Self::Events, Self::RobotMessages, Self::CardCallbacks];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::RobotMessages => "robot_messages",
            Self::CardCallbacks => "card_callbacks",
        }
    }
}

/// `vendor = "feishu_ws"`: a Feishu/Lark self-built app's long connection.
#[derive(Debug, Clone)]
pub struct FeishuWs {
    pub app_id: String,
    pub app_secret: Secret<String>,
    /// `https://open.feishu.cn` (domain "feishu"), `https://open.larksuite.com` ("lark"), or
    /// `api_base`.
    pub api_base: String,
    pub keepalive: Duration,
}

/// `vendor = "wecom_aibot"`: a WeCom AI bot (智能机器人, API mode, 长连接).
#[derive(Debug, Clone)]
pub struct WecomAibot {
    pub bot_id: String,
    pub secret: Secret<String>,
    /// Default `wss://openws.work.weixin.qq.com`.
    pub ws_url: String,
    /// How often the gateway pings when the line is quiet; a connection silent for two of
    /// these (not even a pong) is replaced. Default 30 s.
    pub keepalive: Duration,
}

/// WeChat MP message encryption modes, as set in the MP console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpMode {
    /// Only encrypted (`encrypt_type=aes`) messages are accepted.
    Safe,
    /// Encrypted messages, and plaintext ones signed with the 3-part signature.
    Compat,
    /// Only plaintext messages (3-part signature).
    Plaintext,
}

/// The delivery worker and its retry policy.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Deliveries run at once.
    pub concurrency: usize,
    /// Deliveries run at once to one destination (a host, a connection, a vendor API); the
    /// others wait, so a slow destination cannot take every slot.
    pub per_destination: usize,
    /// Delay before the first retry; it doubles each time up to `max_backoff` (full jitter).
    pub first_retry: Duration,
    pub max_backoff: Duration,
    /// After this long since the event, a failing delivery goes dead instead of retrying.
    pub give_up_after: Duration,
    /// What a delivery does when its action changed (or vanished) in a reload since it was
    /// scheduled.
    pub rule_changed: RuleChanged,
}

impl DeliveryConfig {
    /// Deliveries run at once to one destination: `per_destination`, at most `concurrency`.
    pub fn lane_limit(&self) -> usize {
        self.per_destination.min(self.concurrency)
    }
}

/// `[delivery] rule_changed`: a pending delivery whose action is no longer the one it was
/// made for (a reload edited, reordered or removed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleChanged {
    /// Goes dead with "the rule changed since this was scheduled" (`deliveries retry` runs
    /// it with the action now at its place).
    #[default]
    Dead,
    /// Runs the action now at the same place of the same rule, if there is one.
    RunNew,
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Where the rule's table starts in the config file.
    pub line: usize,
    /// `None`: every receiver.
    pub receivers: Option<Vec<String>>,
    /// All must hold: the field at `path` equals one of `any_of` (compared as text).
    pub when: Vec<Condition>,
    /// A Jinja expression over the same context as templates; the rule fires if truthy.
    pub condition: Option<Template>,
    pub stop: bool,
    /// `schedule = …` or `every = …`: the rule fires on its clock, not on received events.
    pub schedule: Option<Scheduled>,
    pub actions: Vec<RuleAction>,
}

/// A scheduled rule's clock and what it does about slots missed while nothing ran.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub schedule: crate::schedule::Schedule,
    pub missed: crate::schedule::Missed,
}

/// One action of a rule, with when it runs and the key it is known by.
#[derive(Debug, Clone)]
pub struct RuleAction {
    pub action: Action,
    /// `after = …`: how long after the event it runs; `None` at once.
    pub delay: Option<Duration>,
    /// The `key` template that a later `cancel` names (and a group's key).
    pub key: Option<Template>,
    /// The `at` template (a time) it waits for.
    pub at: Option<Template>,
    /// `as = "name"`: its result is `steps.name` for the rule's later actions.
    pub step: Option<String>,
    /// `if = …`: decided when the action is due; false skips it and the rest of the rule.
    pub condition: Option<Template>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Dotted path into the event's fields (`header.event_type`).
    pub path: String,
    pub any_of: Vec<String>,
}

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            match e.line {
                Some(line) => writeln!(
                    f,
                    "  {}:{line}: {}",
                    self.file.display(),
                    ConfigError {
                        line: None,
                        ..e.clone()
                    }
                )?,
                None => writeln!(f, "  {}: {e}", self.file.display())?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the config at `path`. `${VAR}` comes from the process environment,
/// then from `env_file` (`KEY=VALUE` lines) when one is given. A relative store path is
/// taken from the config file's directory, so every command finds the same store.
pub fn load(path: &Path, env_file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let (src, lookup) = read(path, env_file)?;
    let mut config = parse(&src, &lookup).map_err(|errors| ConfigErrors {
        file: path.to_owned(),
        errors,
    })?;
    beside(path, &mut config.store);
    Ok(config)
}

/// Only `[store]` and `[delivery]` of the config at `path` (see [`parse_store`]), for the
/// commands that read the store: no other `${VAR}` needs to be set.
pub fn load_store(path: &Path, env_file: Option<&Path>) -> Result<StoreOnly, ConfigErrors> {
    let (src, lookup) = read(path, env_file)?;
    let mut only = parse_store(&src, &lookup).map_err(|errors| ConfigErrors {
        file: path.to_owned(),
        errors,
    })?;
    beside(path, &mut only.store);
    Ok(only)
}

/// A relative SQLite path, from the config file's directory.
fn beside(config: &Path, store: &mut StoreConfig) {
    if store.path.is_relative()
        && let Some(dir) = config.parent()
    {
        store.path = dir.join(&store.path);
    }
}

type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// The file's text, and `${VAR}` from the environment, then from `env_file`.
fn read(path: &Path, env_file: Option<&Path>) -> Result<(String, Lookup), ConfigErrors> {
    let fail = |file: &Path, message: String| ConfigErrors {
        file: file.to_owned(),
        errors: vec![ConfigError {
            line: None,
            key: String::new(),
            message,
        }],
    };
    let src = std::fs::read_to_string(path).map_err(|e| fail(path, format!("cannot read: {e}")))?;
    let file_vars = match env_file {
        None => Vec::new(),
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| parse_env_file(&text))
            .map_err(|e| fail(f, e))?,
    };
    let given = move |name: &str| {
        std::env::var(name).ok().or_else(|| {
            file_vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    // `VAR_FILE` and systemd credentials, for the variables the file uses and nothing set.
    let read_file = |p: &Path| std::fs::read_to_string(p);
    let (from_files, unreadable) = env::file_secrets(&src, &given, &read_file);
    if !unreadable.is_empty() {
        return Err(ConfigErrors {
            file: path.to_owned(),
            errors: unreadable
                .into_iter()
                .map(|message| ConfigError {
                    line: None,
                    key: String::new(),
                    message,
                })
                .collect(),
        });
    }
    let lookup = move |name: &str| {
        given(name).or_else(|| {
            from_files
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    Ok((src, Box::new(lookup)))
}
