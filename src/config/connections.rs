//! Validation of `[connections.NAME]`: SMTP servers, WeCom apps, DingTalk apps and the
//! MySQL/PostgreSQL databases `sql` actions query, that actions name with `via`. Secrets come from `${VAR}`; API base URLs are overridable for
//! private deployments and tests.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawConnection, S};
use super::validate::Ctx;
use super::{Connection, DingTalkConnection, SmtpConnection, WeComConnection};
use crate::actions::connection::{SqlBackend, SqlConnection};
use crate::actions::outbound::{ProxyChoice, ProxyConfig};
use crate::secret::Secret;

const KINDS: &[(&str, &[&str])] = &[
    ("smtp", &["url", "from", "ca_file", "timeout"]),
    (
        "wecom",
        &["corp_id", "secret", "agent_id", "api_base", "proxy"],
    ),
    (
        "dingtalk",
        &[
            "app_key",
            "app_secret",
            "robot_code",
            "agent_id",
            "api_base",
            "new_api_base",
            "proxy",
        ],
    ),
    ("mysql", &["url", "pool_size", "timeout"]),
    ("postgres", &["url", "pool_size", "timeout"]),
];

impl Ctx<'_> {
    /// `agent_id`: an integer, or a string holding one (`"${DING_AGENT_ID}"`).
    fn agent_id(&mut self, prefix: &str, v: &S<toml::Value>) -> Option<i64> {
        let v = v.as_ref()?;
        let key = format!("{prefix}.agent_id");
        match v.get_ref() {
            toml::Value::Integer(n) => Some(*n),
            toml::Value::String(s) => {
                let text = self.string(&Some(Spanned::new(v.span(), s.clone())), &key)?;
                text.trim()
                    .parse()
                    .map_err(|_| self.err(Some(v.span()), key, format!("{text:?} is not a number")))
                    .ok()
            }
            _ => {
                self.err(Some(v.span()), key, "must be a number");
                None
            }
        }
    }

    /// A vendor app's own `proxy`: a URL, or `"none"` to go direct.
    fn proxy_choice(&mut self, prefix: &str, c: &RawConnection) -> ProxyChoice {
        let key = format!("{prefix}.proxy");
        match self.string(&c.proxy, &key).as_deref() {
            None => ProxyChoice::Global,
            Some("none") => ProxyChoice::Direct,
            Some(text) => match ProxyConfig::parse(text, None) {
                Ok(p) => ProxyChoice::Own(p),
                Err(e) => {
                    let span = c.proxy.as_ref().map(Spanned::span);
                    self.err(span, key, format!("{e}; or \"none\" to connect directly"));
                    ProxyChoice::Global
                }
            },
        }
    }

    pub(super) fn connections(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawConnection>>,
    ) -> BTreeMap<String, Connection> {
        let mut out = BTreeMap::new();
        for (name, c) in raw {
            let prefix = format!("connections.{name}");
            let table = c.span();
            let c = c.get_ref();
            let Some(kind) = self.string(&c.kind, &format!("{prefix}.kind")) else {
                if c.kind.is_none() {
                    self.err(Some(table), format!("{prefix}.kind"), "missing");
                }
                continue;
            };
            let Some((_, allowed)) = KINDS.iter().find(|(k, _)| *k == kind) else {
                let s = c.kind.as_ref().map(Spanned::span);
                let kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
                self.err(
                    s,
                    format!("{prefix}.kind"),
                    format!("{kind:?} is not one of {}", kinds.join(", ")),
                );
                continue;
            };
            for (key, span) in c.keys() {
                if !allowed.contains(&key) {
                    self.err(
                        Some(span),
                        format!("{prefix}.{key}"),
                        format!("does not apply to kind {kind}"),
                    );
                }
            }
            let before = self.errors_len();
            let conn = match kind.as_str() {
                "smtp" => self.smtp(&prefix, c, &table).map(Connection::Smtp),
                "wecom" => self.wecom(&prefix, c, &table).map(Connection::WeCom),
                "mysql" | "postgres" => self.sql(&prefix, &kind, c, &table).map(Connection::Sql),
                _ => self.dingtalk(&prefix, c, &table).map(Connection::DingTalk),
            };
            if let Some(conn) = conn
                && self.errors_len() == before
            {
                out.insert(name.clone(), conn);
            }
        }
        out
    }

    fn need(
        &mut self,
        prefix: &str,
        key: &str,
        v: &S<String>,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<String> {
        if v.is_none() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.{key}"),
                format!("missing (required for kind {kind})"),
            );
            return None;
        }
        let value = self.string(v, &format!("{prefix}.{key}"))?;
        if value.is_empty() {
            let s = v.as_ref().map(Spanned::span);
            self.err(s, format!("{prefix}.{key}"), "is empty");
            return None;
        }
        Some(value)
    }

    fn base(&mut self, prefix: &str, key: &str, v: &S<String>, default: &str) -> String {
        let Some(value) = self.string(v, &format!("{prefix}.{key}")) else {
            return default.to_owned();
        };
        if !(value.starts_with("https://") || value.starts_with("http://")) {
            let s = v.as_ref().map(Spanned::span);
            self.err(
                s,
                format!("{prefix}.{key}"),
                format!("{value:?} is not an http(s):// URL"),
            );
        }
        value.trim_end_matches('/').to_owned()
    }

    fn smtp(
        &mut self,
        prefix: &str,
        c: &RawConnection,
        table: &std::ops::Range<usize>,
    ) -> Option<SmtpConnection> {
        let url = self.need(prefix, "url", &c.url, table, "smtp");
        let from = self.need(prefix, "from", &c.from, table, "smtp");
        if let Some(u) = &url
            && !(u.starts_with("smtp://") || u.starts_with("smtps://"))
        {
            let s = c.url.as_ref().map(Spanned::span);
            // The URL may hold a password: name the scheme only.
            self.err(
                s,
                format!("{prefix}.url"),
                "must start with smtp:// or smtps://",
            );
        }
        if let Some(f) = &from
            && !crate::actions::connection::mailbox_ok(f)
        {
            let s = c.from.as_ref().map(Spanned::span);
            self.err(
                s,
                format!("{prefix}.from"),
                format!("{f:?} is not an email address"),
            );
        }
        let ca_file = self.string(&c.ca_file, &format!("{prefix}.ca_file"));
        Some(SmtpConnection {
            url: Secret::new(url?),
            from: from?,
            ca_file: ca_file.map(Into::into),
            timeout: Duration::from_secs(c.timeout.as_ref().map_or(30, |t| *t.get_ref()).max(1)),
        })
    }

    /// A database for `sql` lookups: its URL (the scheme must match the kind), a pool size
    /// (default 4) and a timeout per query (default 10 s).
    fn sql(
        &mut self,
        prefix: &str,
        kind: &str,
        c: &RawConnection,
        table: &std::ops::Range<usize>,
    ) -> Option<SqlConnection> {
        let backend = match kind {
            "mysql" => SqlBackend::Mysql,
            _ => SqlBackend::Postgres,
        };
        let url = self.need(prefix, "url", &c.url, table, kind)?;
        let schemes: &[&str] = match backend {
            SqlBackend::Mysql => &["mysql://"],
            SqlBackend::Postgres => &["postgres://", "postgresql://"],
        };
        if !schemes.iter().any(|p| url.starts_with(p)) {
            let s = c.url.as_ref().map(Spanned::span);
            // The URL may hold a password: name the scheme only.
            let message = format!("must start with {}", schemes.join(" or "));
            self.err(s, format!("{prefix}.url"), message);
        }
        if backend == SqlBackend::Mysql && !cfg!(feature = "mysql") {
            let s = c.kind.as_ref().map(Spanned::span);
            let message = "this hookgate was built without MySQL support (cargo feature \"mysql\")";
            self.err(s, format!("{prefix}.kind"), message);
        }
        let pool_size = c.pool_size.as_ref().map_or(4, |p| *p.get_ref());
        if !(1..=64).contains(&pool_size) {
            let s = c.pool_size.as_ref().map(Spanned::span);
            self.err(s, format!("{prefix}.pool_size"), "must be 1 to 64");
        }
        Some(SqlConnection {
            backend,
            url: Secret::new(url),
            pool_size: usize::try_from(pool_size).unwrap_or(4),
            timeout: Duration::from_secs(c.timeout.as_ref().map_or(10, |t| *t.get_ref()).max(1)),
        })
    }

    fn wecom(
        &mut self,
        prefix: &str,
        c: &RawConnection,
        table: &std::ops::Range<usize>,
    ) -> Option<WeComConnection> {
        let corp_id = self.need(prefix, "corp_id", &c.corp_id, table, "wecom");
        let secret = self.need(prefix, "secret", &c.secret, table, "wecom");
        let api_base = self.base(
            prefix,
            "api_base",
            &c.api_base,
            "https://qyapi.weixin.qq.com",
        );
        Some(WeComConnection {
            corp_id: corp_id?,
            secret: Secret::new(secret?),
            agent_id: self.agent_id(prefix, &c.agent_id),
            api_base,
            proxy: self.proxy_choice(prefix, c),
        })
    }

    fn dingtalk(
        &mut self,
        prefix: &str,
        c: &RawConnection,
        table: &std::ops::Range<usize>,
    ) -> Option<DingTalkConnection> {
        let app_key = self.need(prefix, "app_key", &c.app_key, table, "dingtalk");
        let app_secret = self.need(prefix, "app_secret", &c.app_secret, table, "dingtalk");
        let robot_code = self
            .string(&c.robot_code, &format!("{prefix}.robot_code"))
            .filter(|r| !r.is_empty());
        let api_base = self.base(prefix, "api_base", &c.api_base, "https://oapi.dingtalk.com");
        let new_api_base = self.base(
            prefix,
            "new_api_base",
            &c.new_api_base,
            "https://api.dingtalk.com",
        );
        let app_key = app_key?;
        Some(DingTalkConnection {
            robot_code: robot_code.unwrap_or_else(|| app_key.clone()),
            app_key,
            app_secret: Secret::new(app_secret?),
            agent_id: self.agent_id(prefix, &c.agent_id),
            api_base,
            new_api_base,
            proxy: self.proxy_choice(prefix, c),
        })
    }
}
