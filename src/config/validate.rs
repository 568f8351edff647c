//! Raw config → [`Config`]: fills `${VAR}`, checks every key, builds AES keys, and collects
//! every problem with its line instead of stopping at the first.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

use super::keys::{key_at, key_name, key_span, segments};

use super::raw::{RawConfig, S};
use super::{Config, ConfigError, Connection, OutboundConfig, ServerConfig};
use crate::template::Compiler;

/// Parses and validates a config file's text; `lookup` supplies `${VAR}` values.
pub fn parse(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut ctx = Ctx::new(src, lookup);
    let doc = DeTable::parse(src).map_err(|e| vec![ctx.toml_error(&e)])?;
    let mut unknown = Vec::new();
    let raw: RawConfig =
        serde_ignored::deserialize(toml::de::Deserializer::from(doc.clone()), |path| {
            unknown.push(segments(&path));
        })
        .map_err(|e| vec![ctx.value_error(&e, &doc)])?;
    for path in unknown {
        let span = key_span(&doc, &path);
        ctx.err(span, key_name(&path), "unknown key");
    }
    let config = ctx.config(raw);
    if ctx.errors.is_empty() {
        Ok(config)
    } else {
        ctx.errors.sort_by_key(|e| e.line.unwrap_or(0));
        Err(ctx.errors)
    }
}

pub(super) struct Ctx<'a> {
    src: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) errors: Vec<ConfigError>,
    /// Connections declared in the file, valid or not: a `via` naming one with its own
    /// errors is not reported again.
    pub(super) declared_connections: HashSet<String>,
    /// `[outbound]`, read before the rules whose targets it confines.
    pub(super) outbound_config: OutboundConfig,
    /// Compiles the rules' templates once, in the zone of `[server] timezone`.
    pub(super) compiler: Option<Compiler>,
    /// The connections that validated, for the actions that name them.
    pub(super) valid_connections: BTreeMap<String, Connection>,
    /// `[tables]` names, once read: a template naming another is a typo that would render
    /// empty at run time.
    pub(super) table_names: Option<HashSet<String>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(src: &'a str, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            src,
            lookup,
            errors: Vec::new(),
            declared_connections: HashSet::new(),
            outbound_config: OutboundConfig::default(),
            compiler: None,
            valid_connections: BTreeMap::new(),
            table_names: None,
        }
    }
}

impl Ctx<'_> {
    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(super) fn errors_len(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn err(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = span.map(|s| self.line(&s));
        self.errors.push(ConfigError {
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        ConfigError {
            line: e.span().map(|s| self.line(&s)),
            key: String::new(),
            message: e.message().trim_end().to_owned(),
        }
    }

    /// A value of the wrong type (`listen = 12`): the error, with the key it is the value of.
    pub(super) fn value_error(
        &self,
        e: &toml::de::Error,
        doc: &Spanned<DeTable<'_>>,
    ) -> ConfigError {
        let key = e
            .span()
            .and_then(|s| key_at(doc.get_ref(), s.start))
            .unwrap_or_default();
        ConfigError {
            key,
            ..self.toml_error(e)
        }
    }

    /// A string value with `${VAR}` filled in; `None` (and an error) if that fails.
    pub(super) fn string(&mut self, value: &S<String>, key: &str) -> Option<String> {
        let v = value.as_ref()?;
        match super::expand(v.get_ref(), self.lookup) {
            Ok(s) => Some(s),
            Err(message) => {
                self.err(Some(v.span()), key, message);
                None
            }
        }
    }

    /// A config needs a receiver or a scheduled rule: otherwise nothing would ever happen.
    fn something_happens(&mut self, raw: &RawConfig) {
        let scheduled = raw.rules.iter().any(|r| {
            let r = r.get_ref();
            r.schedule.is_some() || r.every.is_some()
        });
        if raw.receivers.is_empty() && !scheduled {
            self.err(
                None,
                "receivers",
                "no [[receivers]] and no scheduled rules configured: nothing would ever happen",
            );
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let server = self.server(&raw.server);
        self.compiler = Some(Compiler::new(server.timezone.clone()));
        let store = self.store(&raw.store);
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut receivers = Vec::new();
        self.something_happens(&raw);
        for (i, r) in raw.receivers.iter().enumerate() {
            let prefix = format!("receivers[{i}]");
            // Duplicates are checked on the text as written, even for receivers with other errors.
            let raw_r = r.get_ref();
            if let Some(name) = &raw_r.name
                && name.get_ref() == crate::event::SCHEDULE_RECEIVER
            {
                self.err(
                    Some(name.span()),
                    format!("{prefix}.name"),
                    "\"schedule\" is the name scheduled rules' events are stored under; choose another",
                );
            } else if let Some(name) = &raw_r.name
                && !names.insert(name.get_ref().clone())
            {
                self.err(
                    Some(name.span()),
                    format!("{prefix}.name"),
                    format!("duplicate receiver name {:?}", name.get_ref()),
                );
            }
            if let Some(path) = &raw_r.path
                && !paths.insert(path.get_ref().clone())
            {
                self.err(
                    Some(path.span()),
                    format!("{prefix}.path"),
                    format!("duplicate path {:?}", path.get_ref()),
                );
            }
            if let Some(receiver) = self.receiver(&prefix, r) {
                receivers.push(receiver);
            }
        }
        if let Some(r) = receivers.iter().find(|r| r.path == server.metrics_path) {
            let span = raw.server.metrics_path.as_ref().map(Spanned::span);
            self.err(
                span,
                "server.metrics_path",
                format!("{:?} is receiver {:?}'s path", r.path, r.name),
            );
        }
        self.declared_connections = raw.connections.keys().cloned().collect();
        let connections = self.connections(&raw.connections);
        let tables = self.tables(&raw.tables);
        self.table_names = Some(tables.keys().cloned().collect());
        let delivery = self.delivery(&raw.delivery);
        let outbound = self.outbound(&raw.outbound);
        self.outbound_config = outbound.clone();
        self.valid_connections = connections.clone();
        let rules = self.rules(&raw.rules, &receivers, raw.receivers.len());
        let admin = self.admin(&raw.admin, &server);
        if let Some(compiler) = self.compiler.take() {
            compiler.finish();
        }
        Config {
            server,
            store,
            receivers,
            connections,
            tables,
            delivery,
            outbound,
            rules,
            admin,
        }
    }

    fn server(&mut self, raw: &super::raw::RawServer) -> ServerConfig {
        let listen = match self.string(&raw.listen, "server.listen") {
            Some(s) => s.parse().unwrap_or_else(|e| {
                let span = raw.listen.as_ref().map(Spanned::span);
                self.err(
                    span,
                    "server.listen",
                    format!("{s:?} is not an address:port ({e})"),
                );
                ([127, 0, 0, 1], 8080).into()
            }),
            None => ([127, 0, 0, 1], 8080).into(),
        };
        let secs =
            |v: &S<u64>, default| Duration::from_secs(v.as_ref().map_or(default, |s| *s.get_ref()));
        let body_limit = raw.body_limit.as_ref().map_or(1 << 20, |s| *s.get_ref());
        if body_limit == 0 {
            self.err(
                raw.body_limit.as_ref().map(Spanned::span),
                "server.body_limit",
                "must be positive",
            );
        }
        let timezone = match self.string(&raw.timezone, "server.timezone") {
            None => jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC),
            Some(name) => jiff::tz::TimeZone::get(&name).unwrap_or_else(|e| {
                let span = raw.timezone.as_ref().map(Spanned::span);
                self.err(span, "server.timezone", format!("{name:?}: {e}"));
                jiff::tz::TimeZone::UTC
            }),
        };
        let metrics_path = self
            .string(&raw.metrics_path, "server.metrics_path")
            .unwrap_or_else(|| "/metrics".into());
        if !metrics_path.starts_with('/') || metrics_path.contains(['?', '#', ' ']) {
            let span = raw.metrics_path.as_ref().map(Spanned::span);
            self.err(
                span,
                "server.metrics_path",
                format!("{metrics_path:?} must start with '/' and hold no '?', '#' or spaces"),
            );
        }
        let admin_listen = self
            .string(&raw.admin_listen, "server.admin_listen")
            .and_then(|a| {
                a.parse()
                    .map_err(|e| {
                        let span = raw.admin_listen.as_ref().map(Spanned::span);
                        self.err(
                            span,
                            "server.admin_listen",
                            format!("{a:?} is not an address:port ({e})"),
                        );
                    })
                    .ok()
            });
        let max_connections = raw.max_connections.as_ref().map(|m| {
            if *m.get_ref() == 0 {
                self.err(Some(m.span()), "server.max_connections", "must be positive");
            }
            usize::try_from(*m.get_ref()).unwrap_or(usize::MAX).max(1)
        });
        ServerConfig {
            listen,
            max_connections,
            timezone,
            metrics_path,
            admin_listen,
            body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX),
            header_read_timeout: secs(&raw.header_read_timeout, 10),
            body_read_timeout: secs(&raw.body_read_timeout, 10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credentials;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "tok".to_owned())
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/hooks/wecom/hr"
token = "${TOKEN}"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"
"#;

    /// The newcomer's walk-through: a misspelled table passed `check` and then every
    /// delivery died with "no recipients after rendering".
    #[test]
    fn a_template_naming_a_table_that_does_not_exist_is_refused() {
        let src = format!(
            "{GOOD}[tables.departments]\n\"2\" = \"it@example.com\"\n\n\
             [[rules]]\nname = \"r\"\n[[rules.actions]]\nkind = \"log\"\n\
             message = \"{{{{ tables.deparments[Department] }}}} {{{{ tables.departments['2'] }}}}\"\n"
        );
        let errors = parse(&src, &env).unwrap_err();
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.contains("rules[0].actions[0].message")
                && text.contains("tables.deparments that is not defined ([tables]: departments)"),
            "{text}"
        );
        assert_eq!(errors.len(), 1, "{text}");
    }

    #[test]
    fn retention_and_redaction_are_read_and_checked() {
        let src = format!(
            "{GOOD}redact = [\"Mobile\", \"Email\", \"Mobile\"]\n[store]\nkeep_events = \"30d\"\nkeep_deliveries = \"7d\"\n"
        );
        let c = parse(&src, &env).unwrap();
        assert_eq!(c.receivers[0].redact, ["Mobile", "Email"]);
        let keep = c.store.retention;
        assert_eq!(keep.keep_events, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(keep.keep_deliveries, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(keep.every, Duration::from_secs(600));
        let bad = |extra: &str| {
            let errors = parse(&format!("{GOOD}{extra}"), &env).unwrap_err();
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let e = bad("[store]\nkeep_events = \"2h\"\n");
        assert!(
            e.contains("store.keep_events") && e.contains("at least 1d"),
            "{e}"
        );
        let e = bad("[store]\nkeep_events = \"7d\"\nkeep_deliveries = \"30d\"\n");
        assert!(
            e.contains("store.keep_deliveries") && e.contains("go with their event"),
            "{e}"
        );
        let e = bad("redact = [\"user.mobile\"]\n");
        assert!(
            e.contains("receivers[0].redact") && e.contains("not a field name"),
            "{e}"
        );
    }

    #[test]
    fn good_config_validates() {
        let c = parse(GOOD, &env).unwrap();
        assert_eq!(c.receivers[0].name, "hr");
        assert_eq!(c.receivers[0].timestamp_window, 300);
        match &c.receivers[0].credentials {
            Credentials::WeCom { envelope, suite } => {
                assert_eq!(envelope.token().expose(), "tok");
                assert!(!suite);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = GOOD.replace("${TOKEN}", "${NOPE}").replace("B2C\"", "B2\"")
            + "tokne = 1\n\n[[receivers]]\nname = \"b\"\nvendor = \"feishu\"\npath = \"/hooks/wecom/hr\"\nverification_token = \"v\"\nreceive_id = \"x\"\n";
        let errors = parse(&bad, &env).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(
                &"line 9: receivers[0].token: environment variable NOPE is not set".to_owned()
            ),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with(
                "line 10: receivers[0].encoding_aes_key: malformed EncodingAESKey (-40004)"
            )),
            "{text:#?}"
        );
        assert!(
            text.contains(&"line 12: receivers[0].tokne: unknown key".to_owned()),
            "{text:#?}"
        );
        assert!(
            text.contains(
                &"line 19: receivers[1].receive_id: does not apply to vendor feishu".to_owned()
            ),
            "{text:#?}"
        );
    }

    #[test]
    fn a_postgres_store_and_its_mistakes() {
        let pg = GOOD.replace(
            "[[receivers]]",
            "[store]\nurl = \"postgres://hg:secret@db:5432/hookgate?sslmode=verify-full\"\npool_size = 4\nlease = \"45s\"\n\n[[receivers]]",
        );
        let c = parse(&pg, &env).unwrap();
        assert_eq!(
            c.store.url.as_ref().map(|u| u.expose().as_str()),
            Some("postgres://hg:secret@db:5432/hookgate?sslmode=verify-full")
        );
        assert_eq!(
            (c.store.pool_size, c.store.lease),
            (4, Duration::from_secs(45))
        );
        let bad = GOOD.replace(
            "[[receivers]]",
            "[store]\npath = \"x.db\"\nurl = \"postgres://db/h?sslmode=sometimes\"\nsynchronous = \"full\"\n\n[[receivers]]",
        );
        let errors = parse(&bad, &env).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for want in [
            "line 7: store.url: set either path (SQLite) or url (PostgreSQL), not both",
            "line 8: store.synchronous: applies to SQLite only",
            "line 7: store.url: not a PostgreSQL URL",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(want)),
                "{want}: {text:#?}"
            );
        }
        let sqlite_only = GOOD.replace("[[receivers]]", "[store]\nlease = \"1m\"\n\n[[receivers]]");
        let errors = parse(&sqlite_only, &env).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "line 6: store.lease: applies to a PostgreSQL store (url) only"
        );
    }

    #[test]
    fn stream_receivers_and_their_mistakes() {
        let streams = format!(
            "{GOOD}
[[receivers]]
name = \"ding\"
vendor = \"dingtalk_stream\"
client_id = \"dingabc\"
client_secret = \"s\"
topics = [\"events\", \"card_callbacks\"]

[[receivers]]
name = \"lark\"
vendor = \"feishu_ws\"
app_id = \"cli_1\"
app_secret = \"s\"
domain = \"lark\"
keepalive = \"500ms\"

[[receivers]]
name = \"bot\"
vendor = \"wecom_aibot\"
bot_id = \"B\"
secret = \"s\"
"
        );
        let c = parse(&streams, &env).unwrap();
        match &c.receivers[1].credentials {
            Credentials::DingTalkStream(d) => {
                assert_eq!(
                    d.topics,
                    [
                        super::super::StreamTopic::Events,
                        super::super::StreamTopic::CardCallbacks
                    ]
                );
                assert_eq!(d.api_base, "https://api.dingtalk.com");
            }
            other => panic!("{other:?}"),
        }
        match &c.receivers[2].credentials {
            Credentials::FeishuWs(f) => {
                assert_eq!(f.api_base, "https://open.larksuite.com");
                assert_eq!(f.keepalive, Duration::from_millis(500));
            }
            other => panic!("{other:?}"),
        }
        match &c.receivers[3].credentials {
            Credentials::WecomAibot(w) => assert_eq!(w.ws_url, "wss://openws.work.weixin.qq.com"),
            other => panic!("{other:?}"),
        }
        assert!(c.receivers[3].is_stream() && !c.receivers[0].is_stream());

        let bad = streams
            .replace(
                "topics = [\"events\", \"card_callbacks\"]",
                "topics = [\"everything\"]\npath = \"/ding\"",
            )
            .replace("keepalive = \"500ms\"", "keepalive = \"5ms\"")
            .replace("bot_id = \"B\"\n", "ws_url = \"https://x\"\n");
        let errors = parse(&bad, &env).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for want in [
            "receivers[1].topics: \"everything\" is not one of events, robot_messages, card_callbacks",
            "receivers[1].path: does not apply to vendor dingtalk_stream",
            "receivers[2].keepalive: must be at least 100ms",
            "receivers[3].bot_id: missing (required for vendor wecom_aibot)",
            "receivers[3].ws_url: must start with wss:// or ws://",
        ] {
            assert!(text.iter().any(|t| t.contains(want)), "{want}: {text:#?}");
        }
    }

    #[test]
    fn duplicate_paths_are_named() {
        let second = GOOD
            .split("[[receivers]]")
            .nth(1)
            .unwrap()
            .replace("\"hr\"", "\"hr2\"");
        let errors = parse(&format!("{GOOD}[[receivers]]{second}"), &env).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.key == "receivers[1].path" && e.message.contains("duplicate path")),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let errors = parse("[server]\nlisten = \n", &env).unwrap_err();
        assert_eq!(errors[0].line, Some(2));
    }

    /// `hookgate check` names every action `[outbound]` would refuse, with its line.
    #[test]
    fn confined_targets_are_checked() {
        let rules = r#"
[outbound]
allow_hosts = ["hooks.example.com", "not a host"]

[[rules]]
name = "r"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "http://10.0.0.8/robot/send?access_token=t"
message = { msgtype = "text", text = { content = "x" } }
[[rules.actions]]
kind = "wecom_robot"
webhook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
message = { msgtype = "image", image = { path = "{{ Name }}" } }
[[rules.actions]]
kind = "http"
url = "ftp://files.example.com/x"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{{ sessionWebhook }}"
message = { msgtype = "text", text = { content = "ok" } }
"#;
        let errors = parse(&format!("{GOOD}{rules}"), &env).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let want = [
            "outbound.allow_hosts[1]: \"not a host\"",
            "rules[0].actions[0].webhook: \"10.0.0.8\" is not a dingtalk_robot robot host",
            "rules[0].actions[1].message.image.path: local files are read only from [outbound] media_dir",
            "rules[0].actions[2].url: scheme \"ftp\"",
        ];
        for w in want {
            assert!(
                text.iter().any(|t| t.contains(w) && t.starts_with("line ")),
                "{w} in {text:#?}"
            );
        }
        assert_eq!(text.len(), 4, "{text:#?}");
        // The token in the webhook is not echoed.
        assert!(
            !text.iter().any(|t| t.contains("access_token")),
            "{text:#?}"
        );
        let ok = rules
            .replace(
                "\"not a host\"",
                "\"10.0.0.8\"]\nmedia_dir = \"/srv/media\"\n#",
            )
            .replace("ftp:", "https:");
        assert!(parse(&format!("{GOOD}{ok}"), &env).is_ok());
    }
}
