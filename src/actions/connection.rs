//! `[connections.NAME]` as validated: the outbound endpoints actions name with `via` (an
//! SMTP server, a WeCom or DingTalk app, a MySQL or PostgreSQL database).

use std::path::PathBuf;
use std::time::Duration;

use crate::actions::outbound::ProxyChoice;
use crate::secret::Secret;

/// `[connections.NAME]`: an outbound endpoint actions refer to with `via`.
#[derive(Debug, Clone)]
pub enum Connection {
    Smtp(SmtpConnection),
    WeCom(WeComConnection),
    DingTalk(DingTalkConnection),
    Sql(SqlConnection),
}

impl Connection {
    pub fn kind(&self) -> &'static str {
        match self {
            Connection::Smtp(_) => "smtp",
            Connection::WeCom(_) => "wecom",
            Connection::DingTalk(_) => "dingtalk",
            Connection::Sql(c) => c.backend.as_str(),
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
    /// The proxy its API calls go through (WeCom checks the caller's IP: errcode 60020).
    pub proxy: ProxyChoice,
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
    pub proxy: ProxyChoice,
}

/// A database `sql` actions query.
#[derive(Debug, Clone)]
pub struct SqlConnection {
    pub backend: SqlBackend,
    /// `mysql://user:password@host:3306/db` (`?require_ssl=true` for TLS) or a libpq URL
    /// (`postgres://…?sslmode=require`).
    pub url: Secret<String>,
    pub pool_size: usize,
    /// For one query, connecting included.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlBackend {
    Mysql,
    Postgres,
}

impl SqlBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Postgres => "postgres",
        }
    }
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

/// `Name <user@host>` or `user@host` (an SMTP `from`), checked without the mail stack.
pub fn mailbox_ok(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(l), Some(inner)) => &inner[l + 1..],
        (None, None) => s,
        _ => return false,
    };
    let Some((user, host)) = addr.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && !host.is_empty()
        && !host.contains('@')
        && !addr.contains(char::is_whitespace)
}
