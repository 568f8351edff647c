//! Validation of what happens after a callback is stored: `[tables.*]`, `[delivery]` and
//! `[[rules]]` with their actions. Every template and `if` expression is
//! compiled here, so `hookgate check` reports its problem with the rule, field and line.

use std::collections::{BTreeMap, HashSet};

use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAction, RawDelivery, RawRule, S};
use super::validate::Ctx;
use super::{Action, Condition, DeliveryConfig, Receiver, Rule, RuleAction};

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
        let concurrency = raw.concurrency.as_ref().map_or(32, |s| *s.get_ref());
        if concurrency == 0 {
            let s = raw.concurrency.as_ref().map(Spanned::span);
            self.err(s, "delivery.concurrency", "must be positive");
        }
        let per_destination = raw.per_destination.as_ref().map_or(16, |s| *s.get_ref());
        if per_destination == 0 {
            let s = raw.per_destination.as_ref().map(Spanned::span);
            self.err(s, "delivery.per_destination", "must be positive");
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
            per_destination: usize::try_from(per_destination)
                .unwrap_or(usize::MAX)
                .max(1),
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
        receivers_named: Option<&[String]>,
        receivers: &[Receiver],
    ) -> Option<RuleAction> {
        let raw = a.get_ref();
        let delay = self.delay(key, &raw.after);
        let at = self.check().template(&format!("{key}.at"), &raw.at);
        if let (Some(_), Some(at_span)) = (&raw.after, &raw.at) {
            self.err(
                Some(at_span.span()),
                format!("{key}.at"),
                "give after or at, not both",
            );
        }
        // `key` correlates any action with a later `cancel` (for group actions it is also
        // the group's key).
        let correlation = self.check().template(&format!("{key}.key"), &raw.key);
        let step = self.step_name(key, &raw.step);
        let condition = self.string(&raw.condition, &format!("{key}.if")).map(|c| {
            let s = raw.condition.as_ref().map(Spanned::span);
            self.compile(&format!("{key}.if"), s, &c, true)
        });
        let action = Action::validate(self.check(), key, a)?;
        if matches!(action, Action::AibotReply(_)) {
            self.aibot_receivers(key, a, receivers_named, receivers);
        }
        if let (Action::Cancel(_), Some(s)) = (&action, &raw.step) {
            let message = "a cancel runs when its event is stored and keeps nothing";
            self.err(Some(s.span()), format!("{key}.as"), message);
        }
        Some(RuleAction {
            action,
            delay,
            key: correlation,
            at,
            step,
            condition,
        })
    }

    /// Two actions of one rule cannot keep their results under one name.
    fn unique_steps(&mut self, prefix: &str, r: &RawRule) {
        let mut seen = HashSet::new();
        for (j, a) in r.actions.iter().enumerate() {
            if let Some(name) = &a.get_ref().step
                && !seen.insert(name.get_ref().clone())
            {
                let message = format!(
                    "another action of this rule keeps its result as {:?}",
                    name.get_ref()
                );
                self.err(
                    Some(name.span()),
                    format!("{prefix}.actions[{j}].as"),
                    message,
                );
            }
        }
    }

    /// `as = "name"`: a name templates can write after `steps.` (letters, digits, `_`).
    fn step_name(&mut self, key: &str, raw: &S<String>) -> Option<String> {
        let name = self.string(raw, &format!("{key}.as"))?;
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            let s = raw.as_ref().map(Spanned::span);
            let message = format!(
                "{name:?}: a step name is letters, digits and _ (steps.{name} must be a name)"
            );
            self.err(s, format!("{key}.as"), message);
            return None;
        }
        Some(name)
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

    pub(super) fn rules(
        &mut self,
        raw: &[Spanned<RawRule>],
        receivers: &[Receiver],
        receivers_declared: usize,
    ) -> Vec<Rule> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let prefix = format!("rules[{i}]");
            let table = Some(r.span());
            let line = self.line(&r.span());
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
            let schedule = self.scheduled(&prefix, r);
            let receivers_named = match schedule {
                Some(_) => None,
                None => self.rule_receivers(&prefix, &r.receiver, receivers, receivers_declared),
            };
            // Actions that answer the receiver (aibot replies) have none to answer on a clock.
            let answered = match schedule {
                Some(_) => Some(&[][..]),
                None => receivers_named.as_deref(),
            };
            let when = self.when(&prefix, r);
            let condition = self.string(&r.condition, &format!("{prefix}.if")).map(|c| {
                let s = r.condition.as_ref().map(Spanned::span);
                self.compile(&format!("{prefix}.if"), s, &c, true)
            });
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
                    self.rule_action(&key, a, answered, receivers)
                })
                .collect();
            self.unique_steps(&prefix, r);
            if self.errors_len() > errors_before {
                continue;
            }
            if let Some(name) = name {
                out.push(Rule {
                    name,
                    line,
                    receivers: receivers_named,
                    when,
                    condition,
                    stop: r.stop.as_ref().is_some_and(|s| *s.get_ref()),
                    schedule,
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
}

#[cfg(test)]
pub(super) mod tests {
    pub(in crate::config) const RECEIVER: &str = r#"[[receivers]]
name = "hr"
vendor = "wecom"
path = "/hr"
token = "t"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"
"#;

    /// The config problems of a WeCom receiver `hr` followed by `rest`.
    pub(in crate::config) fn errors(rest: &str) -> Vec<String> {
        let src = format!("{RECEIVER}{rest}");
        match crate::config::parse(&src, &|_| None) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn step_names_action_ifs_and_http_lookups_are_checked() {
        let errs = errors(
            r#"
[[rules]]
name = "r"
[[rules.actions]]
kind = "http"
method = "GET"
url = "https://api.example.com/x"
body = "no"
as = "1st"
success = [200, "4xx", 700]
keep = "data[x]"
[[rules.actions]]
kind = "log"
message = "x"
as = "same"
if = "steps.same =="
[[rules.actions]]
kind = "log"
message = "x"
as = "same"
[[rules.actions]]
kind = "cancel"
key = "k"
as = "c"
"#,
        );
        for want in [
            "line 15: rules[0].actions[0].body: a GET request carries no body",
            "line 16: rules[0].actions[0].as: \"1st\": a step name is letters, digits and _",
            "line 17: rules[0].actions[0].success: 700 is not a status code",
            "line 18: rules[0].actions[0].keep: \"data[x]\": [x] is not an index",
            "line 23: rules[0].actions[1].if: syntax error",
            "line 27: rules[0].actions[2].as: another action of this rule keeps its result as \"same\"",
            "line 31: rules[0].actions[3].as: a cancel runs when its event is stored and keeps nothing",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
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
