//! Validation of what happens after a callback is stored: `[tables.*]`, `[delivery]` and
//! `[[rules]]` with their actions. Every template and `if` expression is
//! compiled here, so `hookgate check` reports its problem with the rule, field and line.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAction, RawDelivery, RawRule, S};
use super::validate::Ctx;
use super::{
    Action, Condition, Connection, DeliveryConfig, Receiver, RobotVendor, Rule, RuleAction,
};
use crate::secret::Secret;

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
    pub(super) fn tables(
        &mut self,
        raw: &BTreeMap<String, Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    ) -> BTreeMap<String, BTreeMap<String, serde_json::Value>> {
        let mut out = BTreeMap::new();
        for (name, table) in raw {
            let mut entries = BTreeMap::new();
            for (key, value) in table.get_ref() {
                let v = match value.get_ref() {
                    toml::Value::String(s) => {
                        let expanded = self.string(
                            &Some(Spanned::new(value.span(), s.clone())),
                            &format!("tables.{name}.{key}"),
                        );
                        serde_json::Value::String(expanded.unwrap_or_default())
                    }
                    toml::Value::Integer(i) => (*i).into(),
                    toml::Value::Float(f) => (*f).into(),
                    toml::Value::Boolean(b) => (*b).into(),
                    _ => {
                        self.err(
                            Some(value.span()),
                            format!("tables.{name}.{key}"),
                            "must be a string, number or boolean",
                        );
                        continue;
                    }
                };
                entries.insert(key.clone(), v);
            }
            out.insert(name.clone(), entries);
        }
        out
    }

    pub(super) fn delivery(&mut self, raw: &RawDelivery) -> DeliveryConfig {
        let secs = |v: &S<u64>, d: u64| Duration::from_secs(v.as_ref().map_or(d, |s| *s.get_ref()));
        let concurrency = raw.concurrency.as_ref().map_or(8, |s| *s.get_ref());
        if concurrency == 0 {
            let s = raw.concurrency.as_ref().map(Spanned::span);
            self.err(s, "delivery.concurrency", "must be positive");
        }
        let first_retry = secs(&raw.first_retry, 10);
        if first_retry.is_zero() {
            let s = raw.first_retry.as_ref().map(Spanned::span);
            self.err(s, "delivery.first_retry", "must be positive");
        }
        let rule_changed = match self
            .string(&raw.rule_changed, "delivery.rule_changed")
            .as_deref()
        {
            None | Some("dead") => super::RuleChanged::Dead,
            Some("run_new") => super::RuleChanged::RunNew,
            Some(other) => {
                let s = raw.rule_changed.as_ref().map(Spanned::span);
                self.err(
                    s,
                    "delivery.rule_changed",
                    format!("{other:?} is not one of \"dead\", \"run_new\""),
                );
                super::RuleChanged::Dead
            }
        };
        DeliveryConfig {
            rule_changed,
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX).max(1),
            first_retry: first_retry.max(Duration::from_secs(1)),
            max_backoff: secs(&raw.max_backoff, 3600),
            give_up_after: secs(&raw.give_up_after, 24 * 3600),
        }
    }

    /// One `[[rules.actions]]` entry with its `after` or `at` and its `key`.
    fn rule_action(
        &mut self,
        key: &str,
        a: &Spanned<RawAction>,
        connections: &BTreeMap<String, Connection>,
        receivers_named: Option<&[String]>,
        receivers: &[Receiver],
    ) -> Option<RuleAction> {
        let raw = a.get_ref();
        let delay = self.delay(key, &raw.after);
        let at = self.template_at(&format!("{key}.at"), &raw.at);
        if let (Some(_), Some(at_span)) = (&raw.after, &raw.at) {
            self.err(
                Some(at_span.span()),
                format!("{key}.at"),
                "give after or at, not both",
            );
        }
        // `key` correlates any action with a later `cancel` (for group actions it is also
        // the group's key).
        let correlation = self.template_at(&format!("{key}.key"), &raw.key);
        let action = self.action(key, a, connections)?;
        if matches!(action, Action::AibotReply { .. }) {
            self.aibot_receivers(key, a, receivers_named, receivers);
        }
        Some(RuleAction {
            action,
            delay,
            key: correlation,
            at,
        })
    }

    pub(super) fn rules(
        &mut self,
        raw: &[Spanned<RawRule>],
        receivers: &[Receiver],
        connections: &BTreeMap<String, Connection>,
        receivers_declared: usize,
    ) -> Vec<Rule> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let prefix = format!("rules[{i}]");
            let table = Some(r.span());
            let r = r.get_ref();
            let errors_before = self.errors_len();
            let name = self.string(&r.name, &format!("{prefix}.name"));
            match &name {
                None if r.name.is_none() => {
                    self.err(table.clone(), format!("{prefix}.name"), "missing")
                }
                Some(n) if !names.insert(n.clone()) => {
                    let s = r.name.as_ref().map(Spanned::span);
                    self.err(
                        s,
                        format!("{prefix}.name"),
                        format!("duplicate rule name {n:?}"),
                    );
                }
                _ => {}
            }
            let receivers_named =
                self.rule_receivers(&prefix, &r.receiver, receivers, receivers_declared);
            let when = self.when(&prefix, r);
            let condition = self.string(&r.condition, &format!("{prefix}.if"));
            if let Some(c) = &condition
                && let Some(problem) = crate::template::expression_problem(c)
            {
                let s = r.condition.as_ref().map(Spanned::span);
                self.err(s, format!("{prefix}.if"), problem);
            }
            if r.actions.is_empty() {
                self.err(
                    table.clone(),
                    format!("{prefix}.actions"),
                    "no [[rules.actions]]: the rule would do nothing",
                );
            }
            let actions: Vec<RuleAction> = r
                .actions
                .iter()
                .enumerate()
                .filter_map(|(j, a)| {
                    let key = format!("{prefix}.actions[{j}]");
                    self.rule_action(&key, a, connections, receivers_named.as_deref(), receivers)
                })
                .collect();
            if self.errors_len() > errors_before {
                continue;
            }
            if let Some(name) = name {
                out.push(Rule {
                    name,
                    receivers: receivers_named,
                    when,
                    condition,
                    stop: r.stop.as_ref().is_some_and(|s| *s.get_ref()),
                    actions,
                });
            }
        }
        out
    }

    /// `receiver`: a name, a list of names, or `"*"` (the default): every receiver.
    fn rule_receivers(
        &mut self,
        prefix: &str,
        raw: &S<toml::Value>,
        receivers: &[Receiver],
        receivers_declared: usize,
    ) -> Option<Vec<String>> {
        let v = raw.as_ref()?;
        let key = format!("{prefix}.receiver");
        let names: Vec<String> = match v.get_ref() {
            toml::Value::String(s) if s == "*" => return None,
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect();
                match strings {
                    Some(s) => s,
                    None => {
                        self.err(
                            Some(v.span()),
                            key,
                            "must be a receiver name, a list of names, or \"*\"",
                        );
                        return Some(Vec::new());
                    }
                }
            }
            _ => {
                self.err(
                    Some(v.span()),
                    key,
                    "must be a receiver name, a list of names, or \"*\"",
                );
                return Some(Vec::new());
            }
        };
        // Receivers with their own errors are missing from `receivers`; do not pile on.
        if receivers.len() == receivers_declared {
            for n in &names {
                if !receivers.iter().any(|r| &r.name == n) {
                    self.err(
                        Some(v.span()),
                        key.clone(),
                        format!("no receiver named {n:?}"),
                    );
                }
            }
        }
        Some(names)
    }

    /// `when = { Event = "change_contact", ChangeType = ["create_user", "update_user"] }`.
    fn when(&mut self, prefix: &str, r: &RawRule) -> Vec<Condition> {
        let Some(when) = &r.when else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (path, value) in when.get_ref() {
            let key = format!("{prefix}.when.{path}");
            let scalar = |v: &toml::Value| match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            };
            let any_of: Option<Vec<String>> = match value.get_ref() {
                toml::Value::Array(items) => items.iter().map(scalar).collect(),
                v => scalar(v).map(|s| vec![s]),
            };
            match any_of {
                Some(any_of) if !any_of.is_empty() => out.push(Condition {
                    path: path.clone(),
                    any_of,
                }),
                _ => self.err(
                    Some(value.span()),
                    key,
                    "must be a string, integer or boolean, or a non-empty list of them",
                ),
            }
        }
        out
    }

    /// `after = "24h"` on any action.
    fn delay(&mut self, prefix: &str, value: &S<String>) -> Option<Duration> {
        let text = self.string(value, &format!("{prefix}.after"))?;
        match super::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                let s = value.as_ref().map(Spanned::span);
                self.err(s, format!("{prefix}.after"), e);
                None
            }
        }
    }

    pub(super) fn template_at(&mut self, key: &str, value: &S<String>) -> Option<String> {
        self.template(key, value)
    }

    fn template(&mut self, key: &str, value: &S<String>) -> Option<String> {
        let text = self.string(value, key)?;
        if let Some(problem) = crate::template::template_problem(&text) {
            let s = value.as_ref().map(Spanned::span);
            self.err(s, key, problem);
        }
        Some(text)
    }

    pub(super) fn need_template(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<String> {
        self.required_template(prefix, key, value, table, kind)
    }

    fn required_template(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        table: &std::ops::Range<usize>,
        kind: &str,
    ) -> Option<String> {
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
    pub(super) fn template_list(&mut self, key: &str, value: &S<toml::Value>) -> Vec<String> {
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

    fn action(
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
            "log" => {
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
                let message = self.required_template(prefix, "message", &text, &table, &kind);
                Action::Log {
                    level,
                    message: message?,
                }
            }
            "http" => {
                let url = self.required_template(prefix, "url", &a.url, &table, &kind);
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
                let timeout =
                    Duration::from_secs(a.timeout.as_ref().map_or(10, |t| *t.get_ref()).max(1));
                Action::Http {
                    url: url?,
                    method,
                    headers,
                    body,
                    secret,
                    timeout,
                }
            }
            "email" => {
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
                            && (connections.contains_key(v)
                                || !self.declared_connections.contains(v)) =>
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
                let subject = self.required_template(prefix, "subject", &a.subject, &table, &kind);
                let body = self.required_template(prefix, "body", &a.body, &table, &kind);
                let html = self.template(&format!("{prefix}.html"), &a.html);
                Action::Email {
                    via: via?,
                    to,
                    cc,
                    bcc,
                    subject: subject?,
                    body: body?,
                    html,
                    one_per_recipient: a.one_per_recipient.as_ref().is_some_and(|b| *b.get_ref()),
                }
            }
            "dingtalk_robot" => self.robot(prefix, a, &table, RobotVendor::DingTalk)?,
            "wecom_robot" => self.robot(prefix, a, &table, RobotVendor::WeCom)?,
            "feishu_robot" => self.robot(prefix, a, &table, RobotVendor::Feishu)?,
            "group_create" | "group_update" | "group_send" | "notify" => {
                self.app_action(prefix, a, &table, &kind, connections)?
            }
            "wecom_aibot_reply" => {
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
                if let Some(problem) = message_shape(&message, "msgtype", AIBOT_TYPES, &|t| t) {
                    self.err(Some(raw.span()), key, problem);
                }
                Action::AibotReply { message }
            }
            "cancel" => {
                let key = self.need_template(prefix, "key", &a.key, &table, &kind);
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
                Action::Cancel { key: key?, rules }
            }
            _ => return None,
        };
        self.outbound_problems(prefix, &action, &|field| match field {
            "webhook" => a.webhook.as_ref().map(Spanned::span),
            "url" => a.url.as_ref().map(Spanned::span),
            _ => a.message.as_ref().map(Spanned::span),
        });
        (self.errors_len() == before).then_some(action)
    }

    /// A bot reply travels over the connection its event came in on: the rule may apply only
    /// to `wecom_aibot` receivers.
    fn aibot_receivers(
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
        let problem = message_problem(&message, type_key, types, vendor);
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
    ) -> Option<serde_json::Value> {
        Some(match value {
            toml::Value::String(s) => {
                let text = self.template(key, &Some(Spanned::new(span, s.clone())))?;
                serde_json::Value::String(text)
            }
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(f) => (*f).into(),
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.json_template(&format!("{key}[{i}]"), span.clone(), v))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(t) => serde_json::Value::Object(
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

#[cfg(test)]
mod tests {
    const RECEIVER: &str = r#"[[receivers]]
name = "hr"
vendor = "wecom"
path = "/hr"
token = "t"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"
"#;

    fn errors(rest: &str) -> Vec<String> {
        let src = format!("{RECEIVER}{rest}");
        match crate::config::parse(&src, &|_| None) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_rule_problem_names_rule_field_and_line() {
        let errs = errors(
            r#"
[connections.mail]
kind = "smtp"
url = "imap://x"
from = "not an address"

[[rules]]
name = "r"
receiver = "nobody"
when = { Event = { nested = 1 } }
if = "a =="
[[rules.actions]]
kind = "email"
via = "post"
subject = "{{ x | nope }}"
body = "{% if %}"
url = "http://x"
[[rules.actions]]
kind = "telegram"
[[rules]]
name = "r"
[[rules.actions]]
kind = "log"
message = "ok"
level = "loud"
"#,
        );
        for want in [
            "line 11: connections.mail.url: must start with smtp:// or smtps://",
            "line 12: connections.mail.from: \"not an address\" is not an email address",
            "line 16: rules[0].receiver: no receiver named \"nobody\"",
            "line 17: rules[0].when.Event: must be a string, integer or boolean",
            "line 18: rules[0].if: syntax error",
            "line 19: rules[0].actions[0].to: missing (required for kind email)",
            "line 21: rules[0].actions[0].via: no smtp connection named \"post\"",
            "line 22: rules[0].actions[0].subject: unknown filter",
            "line 23: rules[0].actions[0].body: syntax error",
            "line 24: rules[0].actions[0].url: does not apply to kind email",
            "line 26: rules[0].actions[1].kind: \"telegram\" is not one of log, http, email",
            "line 28: rules[1].name: duplicate rule name \"r\"",
            "line 32: rules[1].actions[0].level: \"loud\" is not one of error, warn, info, debug",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn app_action_problems_are_named() {
        let errs = errors(
            r#"
[connections.ding]
kind = "dingtalk"
app_key = "k"
app_secret = "s"
corp_id = "ww1"
[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1"
from = "a@example.com"

[[rules]]
name = "r"
[[rules.actions]]
kind = "group_send"
via = "mail"
key = "k"
chat_id = "c"
message = { msgKey = "sampleText", msgParam = { content = "x" } }
[[rules.actions]]
kind = "group_send"
via = "ding"
key = "k"
message = { msgKey = "sampleActionCard1", msgParam = { title = "t" } }
[[rules.actions]]
kind = "group_create"
via = "ding"
key = "k"
name = "n"
owner = "o"
members = [{ dept = 2 }]
[[rules.actions]]
kind = "email"
via = "mail"
to = [{ department = 2 }]
subject = "s"
body = "b"
"#,
        );
        for want in [
            "line 13: connections.ding.corp_id: does not apply to kind dingtalk",
            "line 23: rules[0].actions[0].via: no wecom or dingtalk connection named \"mail\"",
            "line 25: rules[0].actions[0].chat_id: give key or chat_id, not both",
            "line 31: rules[0].actions[1].message: msgKey \"sampleActionCard1\" is not one of",
            "line 38: rules[0].actions[2].members[0]: unknown key \"dept\"",
            "line 42: rules[0].actions[3].to: a department needs via",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn bot_replies_need_a_bot_receiver_and_a_known_message_type() {
        let errs = errors(
            r#"
[[receivers]]
name = "bot"
vendor = "wecom_aibot"
bot_id = "b"
secret = "s"

[[rules]]
name = "any receiver"
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "stream", stream = { content = "x" } }

[[rules]]
name = "bot only"
receiver = "bot"
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "news", news = { articles = [] } }
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "text", text = { body = "x" } }
[[rules.actions]]
kind = "wecom_aibot_reply"
"#,
        );
        let want = [
            "line 18: rules[0].actions[0].kind: wecom_aibot_reply answers over a WeCom AI bot's connection, but the rule also applies to \"hr\"",
            "line 26: rules[1].actions[0].message: msgtype \"news\" is not one of stream, text, markdown, template_card",
            "line 29: rules[1].actions[1].message: text.content is required for msgtype \"text\"",
            "line 30: rules[1].actions[2].message: missing (required for kind wecom_aibot_reply)",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for want in want {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn a_valid_rule_file_parses() {
        let errs = errors(
            r#"
[tables.titles]
create_user = "新增成员"
[delivery]
first_retry = 5
[[rules]]
name = "forward"
receiver = "*"
[[rules.actions]]
kind = "http"
url = "http://127.0.0.1:9/{{ event.kind }}"
headers = { X-Team = "it" }
secret = "s"
"#,
        );
        assert!(errs.is_empty(), "{errs:#?}");
    }
}
