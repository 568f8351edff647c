//! `[[rules.actions]]`: each action kind's keys, and its validation into an [`Action`] with
//! every template compiled (`hookgate check` reports a problem with the rule, field and
//! line); the vendor message shapes robots and bot replies take. The vendor-app kinds
//! (`group_*`, `notify`) are in `app_actions.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAction, S};
use super::validate::Ctx;
use super::{Action, Connection, Receiver, RobotVendor};
use crate::secret::Secret;
use crate::template::{JsonTemplate, Template};

/// Action kinds and the keys each takes besides `kind`.
const ACTION_KEYS: &[(&str, &[&str])] = &[
    ("log", &["level", "message"]),
    (
        "http",
        &["url", "method", "headers", "body", "secret", "timeout"],
    ),
    (
        "email",
        &[
            "via",
            "to",
            "cc",
            "bcc",
            "subject",
            "body",
            "html",
            "one_per_recipient",
        ],
    ),
    ("dingtalk_robot", ROBOT_KEYS),
    ("wecom_robot", ROBOT_KEYS),
    ("feishu_robot", ROBOT_KEYS),
    (
        "group_create",
        &["via", "key", "name", "owner", "members", "first_message"],
    ),
    (
        "group_update",
        &[
            "via",
            "key",
            "chat_id",
            "name",
            "owner",
            "add_members",
            "remove_members",
        ],
    ),
    ("group_send", &["via", "key", "chat_id", "message"]),
    ("notify", &["via", "users", "departments", "message"]),
    ("wecom_aibot_reply", &["message"]),
    ("cancel", &["rules"]),
];

const ROBOT_KEYS: &[&str] = &["webhook", "secret", "message", "per_minute"];

/// Per robot: each message type with the keys its object requires (`a|b`: either).
const DINGTALK_TYPES: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["title", "text"]),
    ("link", &["title", "text", "messageUrl"]),
    ("actionCard", &["title", "text", "singleTitle|btns"]),
    ("feedCard", &["links"]),
];
const WECOM_TYPES: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["content"]),
    ("news", &["articles"]),
    ("image", &["path"]),
    ("file", &["path"]),
    ("template_card", &["card_type"]),
];
/// WeCom AI bot replies over its connection (`aibot_respond_msg`; a welcome takes text or a
/// card, a card update a card).
const AIBOT_TYPES: &[(&str, &[&str])] = &[
    ("stream", &["content"]),
    ("text", &["content"]),
    ("markdown", &["content"]),
    ("template_card", &["card_type"]),
];
const FEISHU_TYPES: &[(&str, &[&str])] = &[
    ("text", &["text"]),
    ("post", &["post"]),
    ("share_chat", &["share_chat_id"]),
    ("image", &["image_key"]),
    ("interactive", &[]),
];

impl Ctx<'_> {
    pub(super) fn template_at(&mut self, key: &str, value: &S<String>) -> Option<Template> {
        self.template(key, value)
    }

    fn template(&mut self, key: &str, value: &S<String>) -> Option<Template> {
        let text = self.string(value, key)?;
        let s = value.as_ref().map(Spanned::span);
        Some(self.compile(key, s, &text, false))
    }

    pub(super) fn required_template(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<Template> {
        if value.is_none() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.{key}"),
                format!("missing (required for kind {kind})"),
            );
            return None;
        }
        self.template(&format!("{prefix}.{key}"), value)
    }

    /// `to`, `cc`, `bcc`: one template or a list of them.
    pub(super) fn template_list(&mut self, key: &str, value: &S<toml::Value>) -> Vec<Template> {
        let Some(v) = value else {
            return Vec::new();
        };
        let items: Vec<&toml::Value> = match v.get_ref() {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) => {
                    if let Some(t) = self.template(key, &Some(Spanned::new(v.span(), s.to_owned())))
                    {
                        out.push(t);
                    }
                }
                None => self.err(Some(v.span()), key, "must be a string or a list of strings"),
            }
        }
        out
    }

    pub(super) fn action(
        &mut self,
        prefix: &str,
        spanned: &Spanned<RawAction>,
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Action> {
        let table = spanned.span();
        let a = spanned.get_ref();
        let kind = self.string(&a.kind, &format!("{prefix}.kind"));
        let Some(kind) = kind else {
            if a.kind.is_none() {
                self.err(Some(table), format!("{prefix}.kind"), "missing");
            }
            return None;
        };
        let Some((_, allowed)) = ACTION_KEYS.iter().find(|(k, _)| *k == kind) else {
            let kinds: Vec<&str> = ACTION_KEYS.iter().map(|(k, _)| *k).collect();
            let s = a.kind.as_ref().map(Spanned::span);
            self.err(
                s,
                format!("{prefix}.kind"),
                format!("{kind:?} is not one of {}", kinds.join(", ")),
            );
            return None;
        };
        for (key, span) in a.keys() {
            if !allowed.contains(&key) {
                self.err(
                    Some(span),
                    format!("{prefix}.{key}"),
                    format!("does not apply to kind {kind}"),
                );
            }
        }
        let before = self.errors_len();
        let action = match kind.as_str() {
            "log" => self.log_action(prefix, a, &table, &kind)?,
            "http" => self.http_action(prefix, a, &table, &kind)?,
            "email" => self.email_action(prefix, a, &table, &kind, connections)?,
            "dingtalk_robot" => self.robot(prefix, a, &table, RobotVendor::DingTalk)?,
            "wecom_robot" => self.robot(prefix, a, &table, RobotVendor::WeCom)?,
            "feishu_robot" => self.robot(prefix, a, &table, RobotVendor::Feishu)?,
            "group_create" | "group_update" | "group_send" | "notify" => {
                self.app_action(prefix, a, &table, &kind, connections)?
            }
            "wecom_aibot_reply" => self.aibot_reply_action(prefix, a, table)?,
            "cancel" => self.cancel_action(prefix, a, &table, &kind)?,
            _ => return None,
        };
        self.outbound_problems(prefix, &action, &|field| match field {
            "webhook" => a.webhook.as_ref().map(Spanned::span),
            "url" => a.url.as_ref().map(Spanned::span),
            _ => a.message.as_ref().map(Spanned::span),
        });
        (self.errors_len() == before).then_some(action)
    }

    /// `log`: `level` and a `message` template.
    fn log_action(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<Action> {
        let level = match self.string(&a.level, &format!("{prefix}.level")).as_deref() {
            None | Some("info") => tracing::Level::INFO,
            Some("warn") => tracing::Level::WARN,
            Some("error") => tracing::Level::ERROR,
            Some("debug") => tracing::Level::DEBUG,
            Some(other) => {
                let s = a.level.as_ref().map(Spanned::span);
                self.err(
                    s,
                    format!("{prefix}.level"),
                    format!("{other:?} is not one of error, warn, info, debug"),
                );
                tracing::Level::INFO
            }
        };
        let text = match &a.message {
            Some(m) => match m.get_ref() {
                toml::Value::String(t) => Some(Spanned::new(m.span(), t.clone())),
                _ => {
                    self.err(
                        Some(m.span()),
                        format!("{prefix}.message"),
                        "must be a string for kind log",
                    );
                    None
                }
            },
            None => None,
        };
        if a.message.is_some() && text.is_none() {
            return None;
        }
        let message = self.required_template(prefix, "message", &text, table, kind);
        Some(Action::Log {
            level,
            message: message?,
        })
    }

    /// `http`: `url`, `method`, `headers`, `body` (the event as JSON without one), `secret`,
    /// `timeout`.
    fn http_action(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<Action> {
        let url = self.required_template(prefix, "url", &a.url, table, kind);
        let method = self
            .string(&a.method, &format!("{prefix}.method"))
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
            let s = a.method.as_ref().map(Spanned::span);
            self.err(
                s,
                format!("{prefix}.method"),
                format!("{method:?} is not one of POST, PUT, PATCH"),
            );
        }
        let mut headers = Vec::new();
        if let Some(h) = &a.headers {
            for (k, v) in h.get_ref() {
                let key = format!("{prefix}.headers.{k}");
                if syntax::header_name_ok(k) {
                    if let Some(t) = self.template(&key, &Some(v.clone())) {
                        headers.push((k.clone(), t));
                    }
                } else {
                    self.err(
                        Some(v.span()),
                        key,
                        format!("{k:?} is not a valid header name"),
                    );
                }
            }
        }
        let body = self.template(&format!("{prefix}.body"), &a.body);
        let secret = self
            .string(&a.secret, &format!("{prefix}.secret"))
            .map(Secret::new);
        let timeout = Duration::from_secs(a.timeout.as_ref().map_or(10, |t| *t.get_ref()).max(1));
        Some(Action::Http {
            url: url?,
            method,
            headers,
            body,
            secret,
            timeout,
        })
    }

    /// `email`: through an smtp connection, to / cc / bcc (addresses or departments), a
    /// subject, a text body and an optional html part.
    fn email_action(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &std::ops::Range<usize>,
        kind: &str,
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Action> {
        let via = self.string(&a.via, &format!("{prefix}.via"));
        match &via {
            None if a.via.is_none() => self.err(
                Some(table.clone()),
                format!("{prefix}.via"),
                "missing (the name of an smtp connection)",
            ),
            // A declared connection missing from `connections` had errors of its own.
            Some(v)
                if !matches!(connections.get(v), Some(Connection::Smtp(_)))
                    && (connections.contains_key(v) || !self.declared_connections.contains(v)) =>
            {
                let s = a.via.as_ref().map(Spanned::span);
                self.err(
                    s,
                    format!("{prefix}.via"),
                    format!("no smtp connection named {v:?}"),
                );
            }
            _ => {}
        }
        let to = self.recipients(&format!("{prefix}.to"), &a.to, connections);
        if a.to.is_none() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.to"),
                "missing (required for kind email)",
            );
        }
        let cc = self.recipients(&format!("{prefix}.cc"), &a.cc, connections);
        let bcc = self.recipients(&format!("{prefix}.bcc"), &a.bcc, connections);
        let subject = self.required_template(prefix, "subject", &a.subject, table, kind);
        let body = self.required_template(prefix, "body", &a.body, table, kind);
        let html = self.template(&format!("{prefix}.html"), &a.html);
        Some(Action::Email {
            via: via?,
            to,
            cc,
            bcc,
            subject: subject?,
            body: body?,
            html,
            one_per_recipient: a.one_per_recipient.as_ref().is_some_and(|b| *b.get_ref()),
        })
    }

    /// `wecom_aibot_reply`: a message of a type the bot connection answers with.
    fn aibot_reply_action(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: std::ops::Range<usize>,
    ) -> Option<Action> {
        let Some(raw) = &a.message else {
            self.err(
                Some(table),
                format!("{prefix}.message"),
                "missing (required for kind wecom_aibot_reply)",
            );
            return None;
        };
        let key = format!("{prefix}.message");
        let message = self.json_template(&key, raw.span(), raw.get_ref())?;
        if let Some(problem) = message_shape(&message.source(), "msgtype", AIBOT_TYPES, &|t| t) {
            self.err(Some(raw.span()), key, problem);
        }
        Some(Action::AibotReply { message })
    }

    /// `cancel`: a `key` template, and the rules whose deliveries it calls off (all without).
    fn cancel_action(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<Action> {
        let key = self.required_template(prefix, "key", &a.key, table, kind);
        let rules = match &a.rules {
            None => Vec::new(),
            Some(v) => match v.get_ref() {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(items) if items.iter().all(|i| i.is_str()) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => {
                    self.err(
                        Some(v.span()),
                        format!("{prefix}.rules"),
                        "must be a rule name or a list of them",
                    );
                    Vec::new()
                }
            },
        };
        Some(Action::Cancel { key: key?, rules })
    }

    /// A bot reply travels over the connection its event came in on: the rule may apply only
    /// to `wecom_aibot` receivers.
    pub(super) fn aibot_receivers(
        &mut self,
        prefix: &str,
        a: &Spanned<RawAction>,
        named: Option<&[String]>,
        receivers: &[Receiver],
    ) {
        let others: Vec<&str> = receivers
            .iter()
            .filter(|r| named.is_none_or(|n| n.contains(&r.name)))
            .filter(|r| r.vendor() != crate::event::Vendor::WecomAibot)
            .map(|r| r.name.as_str())
            .collect();
        if !others.is_empty() {
            let s = a.get_ref().kind.as_ref().map(Spanned::span);
            self.err(
                s,
                format!("{prefix}.kind"),
                format!(
                    "wecom_aibot_reply answers over a WeCom AI bot's connection, but the rule also applies to {} \
                     (give the rule receiver = the wecom_aibot receiver)",
                    others.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }

    fn robot(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &std::ops::Range<usize>,
        vendor: RobotVendor,
    ) -> Option<Action> {
        let kind = vendor.kind();
        let webhook = self.required_template(prefix, "webhook", &a.webhook, table, kind);
        if vendor == RobotVendor::WeCom && a.secret.is_some() {
            let s = a.secret.as_ref().map(Spanned::span);
            self.err(
                s,
                format!("{prefix}.secret"),
                "WeCom group robots have no signing secret",
            );
        }
        let secret = self
            .string(&a.secret, &format!("{prefix}.secret"))
            .map(Secret::new);
        let default_rate = if vendor == RobotVendor::Feishu {
            100
        } else {
            20
        };
        let per_minute = a.per_minute.as_ref().map_or(default_rate, |p| *p.get_ref());
        if per_minute == 0 {
            let s = a.per_minute.as_ref().map(Spanned::span);
            self.err(s, format!("{prefix}.per_minute"), "must be positive");
        }
        let Some(raw) = &a.message else {
            self.err(
                Some(table.clone()),
                format!("{prefix}.message"),
                format!("missing (required for kind {kind})"),
            );
            return None;
        };
        let key = format!("{prefix}.message");
        let message = self.json_template(&key, raw.span(), raw.get_ref())?;
        let (type_key, types) = match vendor {
            RobotVendor::DingTalk => ("msgtype", DINGTALK_TYPES),
            RobotVendor::WeCom => ("msgtype", WECOM_TYPES),
            RobotVendor::Feishu => ("msg_type", FEISHU_TYPES),
        };
        let problem = message_problem(&message.source(), type_key, types, vendor);
        if let Some(problem) = problem {
            self.err(Some(raw.span()), key, problem);
        }
        Some(Action::Robot {
            vendor,
            webhook: webhook?,
            secret,
            message,
            per_minute: u32::try_from(per_minute).unwrap_or(u32::MAX),
        })
    }

    /// A TOML value as JSON, `${VAR}` filled in and every string compiled as a template.
    pub(super) fn json_template(
        &mut self,
        key: &str,
        span: std::ops::Range<usize>,
        value: &toml::Value,
    ) -> Option<JsonTemplate> {
        Some(match value {
            toml::Value::String(s) => {
                JsonTemplate::Text(self.template(key, &Some(Spanned::new(span, s.clone())))?)
            }
            toml::Value::Integer(i) => JsonTemplate::Value((*i).into()),
            toml::Value::Float(f) => JsonTemplate::Value((*f).into()),
            toml::Value::Boolean(b) => JsonTemplate::Value((*b).into()),
            toml::Value::Datetime(d) => JsonTemplate::Value(d.to_string().into()),
            toml::Value::Array(items) => JsonTemplate::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.json_template(&format!("{key}[{i}]"), span.clone(), v))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(t) => JsonTemplate::Map(
                t.iter()
                    .map(|(k, v)| {
                        Some((
                            k.clone(),
                            self.json_template(&format!("{key}.{k}"), span.clone(), v)?,
                        ))
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }
}

/// What is missing from a robot message, by the vendor's documented shapes.
fn message_problem(
    message: &serde_json::Value,
    type_key: &str,
    types: &[(&str, &[&str])],
    vendor: RobotVendor,
) -> Option<String> {
    // DingTalk and WeCom nest the body under the type's name; Feishu under `content`
    // (`card` for interactive).
    message_shape(message, type_key, types, &|t| match (vendor, t) {
        (RobotVendor::Feishu, "interactive") => "card",
        (RobotVendor::Feishu, _) => "content",
        _ => t,
    })
}

/// What is missing from a vendor message: `type_key` names its type, one of `types` with the
/// keys its body requires (`a|b`: either); `body_key` says where the body sits for a type.
pub(super) fn message_shape(
    message: &serde_json::Value,
    type_key: &str,
    types: &[(&str, &[&str])],
    body_key: &dyn for<'t> Fn(&'t str) -> &'t str,
) -> Option<String> {
    let names: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
    let Some(t) = message.get(type_key).and_then(|t| t.as_str()) else {
        return Some(format!("needs {type_key} = one of {}", names.join(", ")));
    };
    let Some((_, required)) = types.iter().find(|(name, _)| *name == t) else {
        return Some(format!(
            "{type_key} {t:?} is not one of {}",
            names.join(", ")
        ));
    };
    let body_key = body_key(t);
    let Some(body) = message.get(body_key).and_then(|b| b.as_object()) else {
        return Some(format!("needs a {body_key} table for {type_key} {t:?}"));
    };
    for req in *required {
        if !req.split('|').any(|k| body.contains_key(k)) {
            return Some(format!("{body_key}.{req} is required for {type_key} {t:?}"));
        }
    }
    None
}

/// Syntax checks without pulling the mail and HTTP stacks into the core crate (fuzz builds it).
pub(super) mod syntax {
    /// `Name <user@host>` or `user@host`.
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

    /// An HTTP token (RFC 9110): what a header name may be.
    pub fn header_name_ok(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }
}
