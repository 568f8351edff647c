//! The config file: `raw` (serde, with spans) → [`validate`] → [`Config`].
//! Validation is pure: `${VAR}` values come from a lookup passed in, and every problem is
//! reported at once with its key and file line. Clients and sockets are built elsewhere.

mod app_actions;
mod connections;
mod env;
mod outbound;
#[cfg(feature = "server")]
mod pg_url;
mod raw;
mod receivers;
mod rules;
mod validate;

#[cfg(feature = "server")]
pub use pg_url::parse_postgres_url;

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

pub use env::{expand, parse_env_file};
pub use outbound::{HostPattern, OutboundConfig, UrlTarget, robot_hosts, url_target};
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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file (the default store), unless `url` names a PostgreSQL database.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// `postgres://…`: the store shared by several replicas.
    pub url: Option<Secret<String>>,
    /// PostgreSQL connections per process.
    pub pool_size: usize,
    /// How long a replica's claim on a running delivery lasts without renewal; after that
    /// another replica runs it (PostgreSQL only: one SQLite file has one process).
    pub lease: Duration,
    /// CA certificates (PEM) for TLS to PostgreSQL; else the system's.
    pub ca_file: Option<PathBuf>,
}

impl StoreConfig {
    /// The embedded store at `path` with the defaults.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            url: None,
            pool_size: 16,
            lease: Duration::from_secs(30),
            ca_file: None,
        }
    }

    /// `url` in place of the file.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            url: Some(Secret::new(url.into())),
            ..Self::sqlite("")
        }
    }
}

/// SQLite's `synchronous`: `Full` fsyncs every commit; `Normal` survives a process crash but
/// may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

/// One callback endpoint: a vendor app's URL and credentials.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub path: String,
    /// Accepted clock skew of the vendor's timestamp, in seconds; 0 turns the check off.
    pub timestamp_window: u64,
    pub credentials: Credentials,
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

/// `[connections.NAME]`: an outbound endpoint actions refer to with `via`.
#[derive(Debug, Clone)]
pub enum Connection {
    Smtp(SmtpConnection),
    WeCom(WeComConnection),
    DingTalk(DingTalkConnection),
}

impl Connection {
    pub fn kind(&self) -> &'static str {
        match self {
            Connection::Smtp(_) => "smtp",
            Connection::WeCom(_) => "wecom",
            Connection::DingTalk(_) => "dingtalk",
        }
    }
}

/// A WeCom self-built app: its token comes from `gettoken?corpid&corpsecret`.
#[derive(Debug, Clone)]
pub struct WeComConnection {
    pub corp_id: String,
    pub secret: Secret<String>,
    /// The app's AgentId, for work notifications (`message/send`).
    pub agent_id: Option<i64>,
    /// Default `https://qyapi.weixin.qq.com`.
    pub api_base: String,
}

/// A DingTalk internal app: AppKey/AppSecret; the robot code for group messages.
#[derive(Debug, Clone)]
pub struct DingTalkConnection {
    pub app_key: String,
    pub app_secret: Secret<String>,
    /// The app robot's code (`robotCode`); default the AppKey.
    pub robot_code: String,
    /// The app's AgentId, for work notifications (`asyncsend_v2`).
    pub agent_id: Option<i64>,
    /// Default `https://oapi.dingtalk.com` (old API).
    pub api_base: String,
    /// Default `https://api.dingtalk.com` (v1.0 API).
    pub new_api_base: String,
}

/// An SMTP server as a lettre URL: `smtp://` (plain), `smtp://…?tls=required` (STARTTLS),
/// `smtps://` (TLS from the start); `user:password@` for AUTH.
#[derive(Debug, Clone)]
pub struct SmtpConnection {
    pub url: Secret<String>,
    pub from: String,
    /// A PEM file of extra CA certificates to trust (a private CA).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// The delivery worker and its retry policy.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Deliveries run at once.
    pub concurrency: usize,
    /// Delay before the first retry; it doubles each time up to `max_backoff` (full jitter).
    pub first_retry: Duration,
    pub max_backoff: Duration,
    /// After this long since the event, a failing delivery goes dead instead of retrying.
    pub give_up_after: Duration,
    /// What a delivery does when its action changed (or vanished) in a reload since it was
    /// scheduled.
    pub rule_changed: RuleChanged,
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
    /// `None`: every receiver.
    pub receivers: Option<Vec<String>>,
    /// All must hold: the field at `path` equals one of `any_of` (compared as text).
    pub when: Vec<Condition>,
    /// A Jinja expression over the same context as templates; the rule fires if truthy.
    pub condition: Option<String>,
    pub stop: bool,
    pub actions: Vec<RuleAction>,
}

/// One action of a rule, with when it runs and the key it is known by.
#[derive(Debug, Clone)]
pub struct RuleAction {
    pub action: Action,
    /// `after = …`: how long after the event it runs; `None` at once.
    pub delay: Option<Duration>,
    /// The `key` template that a later `cancel` names (and a group's key).
    pub key: Option<String>,
    /// The `at` template (a time) it waits for.
    pub at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Dotted path into the event's fields (`header.event_type`).
    pub path: String,
    pub any_of: Vec<String>,
}

/// An action; every string in it is a template.
#[derive(Debug, Clone)]
pub enum Action {
    Log {
        level: tracing::Level,
        message: String,
    },
    Http {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        /// `None`: the event as JSON.
        body: Option<String>,
        /// Signs the body: `X-Hookgate-Signature: sha256=<hex hmac>`.
        secret: Option<Secret<String>>,
        timeout: Duration,
    },
    Email {
        via: String,
        /// Addresses (templates), or `{ department = ID, via = "CONNECTION" }`: the members'
        /// addresses from the WeCom or DingTalk directory.
        to: Vec<Member>,
        cc: Vec<Member>,
        bcc: Vec<Member>,
        subject: String,
        body: String,
        html: Option<String>,
        /// One message per address in `to` (cc and bcc go with each) instead of one to all.
        one_per_recipient: bool,
    },
    /// A group robot message: `message` is the vendor's JSON body, every string in it a
    /// template (WeCom `image`/`file` take a `path` the gateway uploads).
    Robot {
        vendor: RobotVendor,
        webhook: String,
        secret: Option<Secret<String>>,
        message: serde_json::Value,
        /// Messages a minute this webhook accepts (the vendors allow 20; Feishu 100).
        per_minute: u32,
    },
    /// A group chat for `key`, created once: a key that exists is a success doing nothing.
    GroupCreate {
        via: String,
        vendor: AppVendor,
        key: String,
        name: String,
        owner: String,
        members: Vec<Member>,
        /// Sent as text right after creation (a new WeCom group shows in clients only then).
        first_message: Option<String>,
    },
    GroupUpdate {
        via: String,
        vendor: AppVendor,
        target: GroupTarget,
        name: Option<String>,
        owner: Option<String>,
        add_members: Vec<Member>,
        remove_members: Vec<Member>,
    },
    /// `message`: WeCom `appchat/send` body (msgtype + its object) or DingTalk
    /// `{ msgKey, msgParam }` for `robot/groupMessages/send`; strings are templates.
    GroupSend {
        via: String,
        vendor: AppVendor,
        target: GroupTarget,
        message: serde_json::Value,
    },
    /// Calls off the pending (delayed) deliveries whose `key` renders the same, when the event
    /// is stored; of the named rules only, if any. Not a delivery itself.
    Cancel { key: String, rules: Vec<String> },
    /// An answer over the WeCom AI bot connection the event came in on, to the push's `req_id`
    /// (`aibot_respond_msg`; to `enter_chat` a welcome, to `template_card_event` a card
    /// update). `message`: `{ msgtype, <msgtype> = {…} }`, strings are templates.
    AibotReply { message: serde_json::Value },
    /// A work notification to people (WeCom `message/send`, DingTalk `asyncsend_v2`).
    Notify {
        via: String,
        vendor: AppVendor,
        users: Vec<Member>,
        /// Department ids (templates) the vendor fans out itself.
        departments: Vec<String>,
        message: serde_json::Value,
    },
}

/// Group robots reached through a webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotVendor {
    /// DingTalk custom robot: `robot/send?access_token=`, optional 加签 secret.
    DingTalk,
    /// WeCom group robot: `webhook/send?key=`.
    WeCom,
    /// Feishu/Lark custom bot: `bot/v2/hook/…`, optional signature secret.
    Feishu,
}

impl RobotVendor {
    pub fn kind(self) -> &'static str {
        match self {
            Self::DingTalk => "dingtalk_robot",
            Self::WeCom => "wecom_robot",
            Self::Feishu => "feishu_robot",
        }
    }
}

/// Which vendor app a `via` connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppVendor {
    WeCom,
    DingTalk,
}

/// People for a group or a notification: a user id (a template; several may come out,
/// comma- or space-separated), or every member of a department looked up in the directory.
#[derive(Debug, Clone)]
pub enum Member {
    User(String),
    Department {
        /// A template.
        id: String,
        /// The connection whose directory is asked; default the action's `via`.
        via: Option<String>,
        recursive: bool,
    },
}

/// Which group an update or a message goes to.
#[derive(Debug, Clone)]
pub enum GroupTarget {
    /// The `key` of a `group_create` (a template), looked up in the group registry.
    Key(String),
    /// A vendor chat id (a template): WeCom chatid, DingTalk openConversationId (`cid…`).
    ChatId(String),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Log { .. } => "log",
            Action::Http { .. } => "http",
            Action::Email { .. } => "email",
            Action::Robot { vendor, .. } => vendor.kind(),
            Action::GroupCreate { .. } => "group_create",
            Action::GroupUpdate { .. } => "group_update",
            Action::GroupSend { .. } => "group_send",
            Action::Notify { .. } => "notify",
            Action::Cancel { .. } => "cancel",
            Action::AibotReply { .. } => "wecom_aibot_reply",
        }
    }

    /// The connection an action goes through, if it names one.
    pub fn via(&self) -> Option<&str> {
        match self {
            Action::Email { via, .. }
            | Action::GroupCreate { via, .. }
            | Action::GroupUpdate { via, .. }
            | Action::GroupSend { via, .. }
            | Action::Notify { via, .. } => Some(via),
            _ => None,
        }
    }

    /// What the action does, as a short hash: its kind, its connection and every template
    /// (not timeouts, budgets or secrets). A delivery keeps the fingerprint of the action it
    /// was made for, so a reload cannot make it run a different one.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.kind());
        h.update([0]);
        h.update(self.via().unwrap_or_default());
        for (field, src) in self.templates() {
            h.update([0]);
            h.update(field);
            h.update([0]);
            h.update(src);
        }
        h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every template the action holds, by field name (list items as `to[0]`).
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = Vec::new();
        match self {
            Action::Log { message, .. } => out.push(("message".into(), message)),
            Action::Http {
                url, headers, body, ..
            } => {
                out.push(("url".into(), url));
                for (k, v) in headers {
                    out.push((format!("headers.{k}"), v));
                }
                if let Some(b) = body {
                    out.push(("body".into(), b));
                }
            }
            Action::Email {
                to,
                cc,
                bcc,
                subject,
                body,
                html,
                ..
            } => {
                member_templates(&mut out, "to", to);
                member_templates(&mut out, "cc", cc);
                member_templates(&mut out, "bcc", bcc);
                out.push(("subject".into(), subject));
                out.push(("body".into(), body));
                if let Some(h) = html {
                    out.push(("html".into(), h));
                }
            }
            Action::Robot {
                webhook, message, ..
            } => {
                out.push(("webhook".into(), webhook));
                json_templates(&mut out, "message".into(), message);
            }
            Action::GroupCreate {
                key,
                name,
                owner,
                members,
                first_message,
                ..
            } => {
                out.push(("key".into(), key));
                out.push(("name".into(), name));
                out.push(("owner".into(), owner));
                member_templates(&mut out, "members", members);
                if let Some(m) = first_message {
                    out.push(("first_message".into(), m));
                }
            }
            Action::GroupUpdate {
                target,
                name,
                owner,
                add_members,
                remove_members,
                ..
            } => {
                target_template(&mut out, target);
                if let Some(n) = name {
                    out.push(("name".into(), n));
                }
                if let Some(o) = owner {
                    out.push(("owner".into(), o));
                }
                member_templates(&mut out, "add_members", add_members);
                member_templates(&mut out, "remove_members", remove_members);
            }
            Action::GroupSend {
                target, message, ..
            } => {
                target_template(&mut out, target);
                json_templates(&mut out, "message".into(), message);
            }
            Action::Cancel { key, .. } => out.push(("key".into(), key)),
            Action::AibotReply { message } => json_templates(&mut out, "message".into(), message),
            Action::Notify {
                users,
                departments,
                message,
                ..
            } => {
                member_templates(&mut out, "users", users);
                for (i, d) in departments.iter().enumerate() {
                    out.push((format!("departments[{i}]"), d));
                }
                json_templates(&mut out, "message".into(), message);
            }
        }
        out
    }
}

fn target_template<'a>(out: &mut Vec<(String, &'a str)>, target: &'a GroupTarget) {
    match target {
        GroupTarget::Key(k) => out.push(("key".into(), k)),
        GroupTarget::ChatId(c) => out.push(("chat_id".into(), c)),
    }
}

fn member_templates<'a>(out: &mut Vec<(String, &'a str)>, name: &str, members: &'a [Member]) {
    for (i, m) in members.iter().enumerate() {
        match m {
            Member::User(u) => out.push((format!("{name}[{i}]"), u)),
            Member::Department { id, .. } => out.push((format!("{name}[{i}].department"), id)),
        }
    }
}

/// Every string inside a JSON value, named by its path (`message.markdown.text`,
/// `message.at.atMobiles[0]`).
fn json_templates<'a>(
    out: &mut Vec<(String, &'a str)>,
    path: String,
    value: &'a serde_json::Value,
) {
    match value {
        serde_json::Value::String(s) => out.push((path, s)),
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json_templates(out, format!("{path}[{i}]"), v);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                json_templates(out, format!("{path}.{k}"), v);
            }
        }
        _ => {}
    }
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

/// Reads and validates a config file, taking `${VAR}` from the process environment.
/// Reads and validates the config at `path`. `${VAR}` comes from the process environment,
/// then from `env_file` (`KEY=VALUE` lines) when one is given.
pub fn load(path: &Path, env_file: Option<&Path>) -> Result<Config, ConfigErrors> {
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
    let lookup = |name: &str| {
        std::env::var(name).ok().or_else(|| {
            file_vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    parse(&src, &lookup).map_err(|errors| ConfigErrors {
        file: path.to_owned(),
        errors,
    })
}
