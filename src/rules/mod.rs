//! Rules: which events fire which actions, and rendering an action's templates for an
//! event. Matching runs on the callback path before the event is stored (one delivery
//! per matched action goes into the same transaction); rendering runs in the delivery worker,
//! when the event has its id.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::Value;
use serde_json::{Map, Value as Json};

use crate::actions::Destination;
use crate::config::{Action, Config, Rule, RuleAction};
use crate::event::Vendor;
use crate::template::Template;
pub use crate::template::{EventView, MAX_RENDERED};
pub use crate::time::parse_time;

pub use crate::actions::{RenderError, Rendered};

mod index;
mod run;

use index::{field_matches, lookup};

/// Why a rule does or does not fire, cheap to make.
enum Check {
    Fires,
    Receiver,
    /// A scheduled rule and a received event, or a slot of another rule (or the reverse).
    Clock,
    /// The index of the first `when` condition that failed.
    When(usize),
    IfFalse,
    IfFailed(String),
}

/// Whether one rule fires for an event (`hookgate explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub index: usize,
    pub rule: String,
    pub fired: bool,
    pub why_not: Option<String>,
}

/// One action a rule selected for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub rule: String,
    pub action: usize,
    pub kind: &'static str,
    /// The action's fingerprint ([`crate::config::Action::fingerprint`]).
    pub spec: String,
    /// `after = …`: how long after the event it runs.
    pub delay: Option<std::time::Duration>,
    /// The rendered `key` (a `cancel` calls off pending deliveries with the same key).
    pub key: Option<String>,
    /// The rendered `at = …`: when it runs (see [`parse_time`]).
    pub at: Option<String>,
    /// For a `cancel`: the rules whose deliveries it calls off (empty: all).
    pub cancel: Option<Vec<String>>,
}

/// The rules of one config (their templates were compiled when the config was validated).
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Each action's fingerprint, by rule and action index (computed once).
    specs: Vec<Vec<String>>,
    /// Each action's destination (`None`: it runs here), by rule and action index.
    destinations: Vec<Vec<Option<Arc<str>>>>,
    tables: Json,
    /// The rules an event can fire, by a field of their `when`.
    index: index::Index,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl RuleSet {
    pub fn new(config: &Config) -> Self {
        let tables = serde_json::to_value(&config.tables).unwrap_or(Json::Null);
        let specs = config
            .rules
            .iter()
            .map(|r| r.actions.iter().map(|a| a.action.fingerprint()).collect())
            .collect();
        let destinations = config
            .rules
            .iter()
            .map(|r| {
                let own = |j| Arc::from(format!("rule {:?} action {j}", r.name));
                (r.actions.iter().enumerate())
                    .map(|(j, a)| match a.action.destination() {
                        Destination::Local => None,
                        Destination::Named(name) => Some(Arc::from(name)),
                        Destination::ThisAction => Some(own(j)),
                    })
                    .collect()
            })
            .collect();
        Self {
            specs,
            destinations,
            index: index::Index::new(&config.rules),
            rules: config.rules.clone(),
            tables,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The context templates see: the event's fields at the top level, `event` (the fields'
    /// own `event` object, if any, with `id`, `receiver`, `vendor`, `kind`, `dedupe_key` and
    /// `received_at` laid over it), `fields` (all fields), and `tables`.
    pub fn context(&self, ev: &EventView<'_>) -> Json {
        ev.context(&self.tables)
    }

    /// Every action that fires for the event, in file order, honouring `stop`. A condition
    /// that fails to evaluate does not match (and is logged). This runs on the callback path:
    /// nothing is formatted for rules that do not fire.
    pub fn matching(&self, ev: &EventView<'_>) -> Vec<Match> {
        let mut out = Vec::new();
        let mut ctx: Option<Value> = None;
        // Only the rules the index says can fire are tried, in declared order: the others'
        // `when` cannot hold.
        let mut candidates = Vec::new();
        self.index.candidates(ev.fields, &mut candidates);
        for i in candidates {
            let rule = &self.rules[i];
            if !matches!(self.check(rule, ev, &mut ctx), Check::Fires) {
                continue;
            }
            for (j, a) in rule.actions.iter().enumerate() {
                out.push(self.planned(i, j, rule, a, ev, &mut ctx));
            }
            if rule.stop {
                break;
            }
        }
        out
    }

    /// What one action of a firing rule plans: its key and `at` rendered (a failure is
    /// logged: no key, or at once), its delay and fingerprint.
    fn planned(
        &self,
        i: usize,
        j: usize,
        rule: &Rule,
        a: &RuleAction,
        ev: &EventView<'_>,
        ctx: &mut Option<Value>,
    ) -> Match {
        let mut render = |t: &Template| {
            let ctx =
                ctx.get_or_insert_with(|| Value::from(minijinja::value::Serde(self.context(ev))));
            t.render(ctx)
        };
        let key = a.key.as_ref().and_then(|t| match render(t) {
            Ok(k) if !k.trim().is_empty() => Some(k),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(rule = %rule.name, action = j, error = %e, "Action key did not render; no key.");
                None
            }
        });
        let at = a.at.as_ref().and_then(|t| match render(t) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(rule = %rule.name, action = j, error = %e, "`at` did not render; the action runs at once.");
                None
            }
        });
        Match {
            rule: rule.name.clone(),
            action: j,
            kind: a.action.kind(),
            spec: self.specs[i][j].clone(),
            delay: a.delay,
            key,
            at,
            cancel: match &a.action {
                Action::Cancel(c) => Some(c.rules.clone()),
                _ => None,
            },
        }
    }

    /// Whether each rule fires for the event and, if not, why; rules after a firing `stop`
    /// rule are not considered (and not listed).
    pub fn verdicts(&self, ev: &EventView<'_>) -> Vec<Verdict> {
        let mut out = Vec::new();
        let mut ctx: Option<Value> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let why_not = match self.check(rule, ev, &mut ctx) {
                Check::Fires => None,
                Check::Clock
                    if rule.schedule.is_some() && ev.vendor == Vendor::Schedule.as_str() =>
                {
                    Some(format!("this is a slot of rule {:?}", ev.kind))
                }
                Check::Clock if rule.schedule.is_some() => {
                    Some("it fires on its schedule, not on received events".into())
                }
                Check::Clock => Some("it fires on received events, not on a schedule".into()),
                Check::Receiver => Some(format!(
                    "receiver {:?} is not in {:?}",
                    ev.receiver,
                    rule.receivers.as_deref().unwrap_or_default()
                )),
                Check::When(c) => {
                    let c = &rule.when[c];
                    let actual = lookup(ev.fields, &c.path)
                        .map_or_else(|| "missing".to_owned(), |v| v.to_string());
                    Some(format!(
                        "when.{} is {actual}, not one of {:?}",
                        c.path, c.any_of
                    ))
                }
                Check::IfFalse => Some("if is false".into()),
                Check::IfFailed(e) => Some(format!("if failed: {e}")),
            };
            let fired = why_not.is_none();
            out.push(Verdict {
                index: i,
                rule: rule.name.clone(),
                fired,
                why_not,
            });
            if fired && rule.stop {
                break;
            }
        }
        out
    }

    fn check(&self, rule: &Rule, ev: &EventView<'_>, ctx: &mut Option<Value>) -> Check {
        // A slot's event is its own rule's, whose kind is the rule's name.
        let slot = ev.vendor == Vendor::Schedule.as_str();
        if slot != rule.schedule.is_some() || (slot && ev.kind != rule.name) {
            return Check::Clock;
        }
        if let Some(receivers) = &rule.receivers
            && !receivers.iter().any(|r| r == ev.receiver)
        {
            return Check::Receiver;
        }
        if let Some(c) = rule
            .when
            .iter()
            .position(|c| !field_matches(ev.fields, &c.path, &c.any_of))
        {
            return Check::When(c);
        }
        if let Some(condition) = &rule.condition {
            let ctx =
                ctx.get_or_insert_with(|| Value::from(minijinja::value::Serde(self.context(ev))));
            match condition.holds(ctx) {
                Ok(true) => {}
                Ok(false) => return Check::IfFalse,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "Rule condition failed; the rule does not fire.");
                    return Check::IfFailed(e);
                }
            }
        }
        Check::Fires
    }

    /// The rule by name and its action, if the config still has them.
    /// The fingerprint of the action now at `rule`'s index `action`, if there is one.
    pub fn spec(&self, rule: &str, action: usize) -> Option<&str> {
        let i = self.rules.iter().position(|r| r.name == rule)?;
        self.specs[i].get(action).map(String::as_str)
    }

    /// Where the action at `rule`'s index `action` sends; `None` when it runs here (or the
    /// config no longer has it).
    pub fn destination(&self, rule: &str, action: usize) -> Option<&Arc<str>> {
        let i = self.rules.iter().position(|r| r.name == rule)?;
        self.destinations[i].get(action)?.as_ref()
    }

    pub fn action(&self, rule: &str, action: usize) -> Option<(usize, &Action)> {
        let i = self.rules.iter().position(|r| r.name == rule)?;
        Some((i, &self.rules[i].actions.get(action)?.action))
    }

    /// Renders one action for an event (before any step has run: `steps` is empty).
    pub fn render(
        &self,
        rule: &str,
        action: usize,
        ev: &EventView<'_>,
    ) -> Result<Rendered, RenderError> {
        let ctx = self.run_context(ev, &Json::Object(Map::new()));
        self.render_in(rule, action, &ctx, ev)
    }
}

/// `BTreeMap` of tables as the config keeps them.
pub type Tables = BTreeMap<String, BTreeMap<String, Json>>;

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVERS: &str = r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/hr"
token = "t"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"

[[receivers]]
name = "lark"
vendor = "feishu"
path = "/lark"
verification_token = "v"
"#;

    fn set(rules: &str) -> RuleSet {
        let config = crate::config::parse(&format!("{RECEIVERS}\n{rules}"), &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        RuleSet::new(&config)
    }

    #[test]
    fn deliveries_are_counted_by_the_host_or_connection_the_config_names() {
        let rules = set(r#"
[outbound]
allow_hosts = ["*.example"]

[[rules]]
name = "a"
[[rules.actions]]
kind = "http"
url = "https://Hooks.example/a/{{ UserID }}"
[[rules.actions]]
kind = "log"
message = "m"
[[rules.actions]]
kind = "http"
url = "{{ Url }}"
[[rules]]
name = "b"
[[rules.actions]]
kind = "http"
url = "https://hooks.example:443/b"
[[rules.actions]]
kind = "http"
url = "http://hooks.example/b"
[[rules.actions]]
kind = "wecom_robot"
webhook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={{ Key }}"
message = { msgtype = "text", text = { content = "c" } }
"#);
        let to = |r, a| rules.destination(r, a).map(|d| d.to_string());
        assert_eq!(to("a", 0).as_deref(), Some("https://hooks.example:443"));
        assert_eq!(to("b", 0), to("a", 0), "one host, however it is written");
        assert_eq!(to("b", 1).as_deref(), Some("http://hooks.example:80"));
        assert_eq!(to("a", 1), None, "a log runs here");
        assert_eq!(
            to("a", 2).as_deref(),
            Some("rule \"a\" action 2"),
            "a host from a template: the action is its own destination"
        );
        assert_eq!(to("b", 2).as_deref(), Some("wecom_robot"));
        assert_eq!(to("c", 0), None);
    }

    fn fields(json: &str) -> Map<String, Json> {
        serde_json::from_str(json).unwrap()
    }

    fn view<'a>(receiver: &'a str, fields: &'a Map<String, Json>) -> EventView<'a> {
        EventView {
            id: 42,
            receiver,
            vendor: "wecom",
            kind: "change_contact/create_user",
            dedupe_key: "k",
            received_at_ms: 1_700_000_000_000,
            fields,
        }
    }

    const CONTACT: &str = r#"{"Event":"change_contact","ChangeType":"create_user","UserID":"zhangsan","CreateTime":"1700000000","Department":["1","2"],"header":{"event_type":"x"}}"#;

    /// The index leaves out only rules that cannot fire: for every event, `matching`
    /// gives what trying every rule in order gives (`verdicts` still tries them all).
    #[test]
    fn the_index_fires_exactly_what_trying_every_rule_fires() {
        let set = set(r#"
[[rules]]
name = "by type"
when = { ChangeType = ["create_user", "update_user"] }
[[rules.actions]]
kind = "log"
message = "a"
[[rules]]
name = "by event and department"
when = { Event = "change_contact", Department = ["2", "9"] }
[[rules.actions]]
kind = "log"
message = "b"
[[rules]]
name = "nested"
when = { "header.event_type" = "x" }
[[rules.actions]]
kind = "log"
message = "c"
[[rules]]
name = "numbers"
when = { CreateTime = ["1700000000", "1700000001"] }
[[rules.actions]]
kind = "log"
message = "c"
[[rules]]
name = "no when"
if = "UserID == 'zhangsan'"
[[rules.actions]]
kind = "log"
message = "d"
[[rules]]
name = "stops"
when = { ChangeType = "delete_user" }
stop = true
[[rules.actions]]
kind = "log"
message = "e"
[[rules]]
name = "after the stop"
[[rules.actions]]
kind = "log"
message = "f"
"#);
        for event in [
            CONTACT,
            r#"{"Event":"change_contact","ChangeType":"delete_user","Department":"9"}"#,
            r#"{"Event":"other","ChangeType":"update_user","CreateTime":1700000000,"header":{"event_type":"x"}}"#,
            r#"{"ChangeType":["x","update_user"],"UserID":"zhangsan"}"#,
            r#"{"ChangeType":true}"#,
            "{}",
        ] {
            let f = fields(event);
            let ev = view("hr", &f);
            let fired: Vec<String> = set
                .verdicts(&ev)
                .into_iter()
                .filter(|v| v.fired)
                .map(|v| v.rule)
                .collect();
            let mut matched: Vec<String> = set.matching(&ev).into_iter().map(|m| m.rule).collect();
            matched.dedup();
            assert_eq!(matched, fired, "{event}");
        }
    }

    #[test]
    fn a_scheduled_rule_fires_only_for_its_own_slots_and_event_rules_never_for_a_slot() {
        let set = set(r#"
[[rules]]
name = "all"
[[rules.actions]]
kind = "log"
message = "{{ UserID }}"
[[rules]]
name = "digest"
schedule = "0 9 * * MON-FRI"
if = "schedule == 'digest'"
[[rules.actions]]
kind = "log"
message = "digest {{ slot }}"
[[rules]]
name = "other"
every = "1h"
[[rules.actions]]
kind = "log"
message = "other"
"#);
        let contact = fields(CONTACT);
        let fired: Vec<String> = set
            .matching(&view("hr", &contact))
            .into_iter()
            .map(|m| m.rule)
            .collect();
        assert_eq!(fired, ["all"]);
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let slot = "2026-12-07T01:00:00Z".parse().unwrap();
        let event = crate::event::Event::scheduled("digest", slot, &tz, 1);
        assert_eq!(event.fields()["slot"], "2026-12-07T09:00:00+08:00");
        let view = EventView::unstored(&event);
        let fired: Vec<String> = set.matching(&view).into_iter().map(|m| m.rule).collect();
        assert_eq!(fired, ["digest"]);
        let why: Vec<Option<String>> = set.verdicts(&view).into_iter().map(|v| v.why_not).collect();
        assert_eq!(
            why,
            [
                Some("it fires on received events, not on a schedule".into()),
                None,
                Some("this is a slot of rule \"digest\"".into()),
            ]
        );
    }
    #[test]
    fn when_any_of_dotted_paths_arrays_and_stop() {
        let rules = set(r#"
[[rules]]
name = "contacts"
receiver = "hr"
when = { Event = "change_contact", ChangeType = ["create_user", "update_user"], Department = 2 }
[[rules.actions]]
kind = "log"
message = "a"
[[rules.actions]]
kind = "log"
message = "b"

[[rules]]
name = "nested"
when = { "header.event_type" = "x" }
stop = true
[[rules.actions]]
kind = "log"
message = "c"

[[rules]]
name = "after stop"
[[rules.actions]]
kind = "log"
message = "d"

[[rules]]
name = "other receiver"
receiver = ["lark"]
[[rules.actions]]
kind = "log"
message = "e"
"#);
        let f = fields(CONTACT);
        let m = rules.matching(&view("hr", &f));
        let got: Vec<(String, usize)> = m.into_iter().map(|m| (m.rule, m.action)).collect();
        assert_eq!(
            got,
            [
                ("contacts".to_owned(), 0),
                ("contacts".to_owned(), 1),
                ("nested".to_owned(), 0)
            ]
        );
        let other = fields(r#"{"Event":"change_contact","ChangeType":"delete_user"}"#);
        let v = rules.verdicts(&view("hr", &other));
        assert_eq!(
            v[0].why_not.as_deref(),
            Some(r#"when.ChangeType is "delete_user", not one of ["create_user", "update_user"]"#)
        );
        // Without the nested field, `stop` does not apply and later rules fire.
        let fired: Vec<String> = rules
            .matching(&view("hr", &other))
            .into_iter()
            .map(|m| m.rule)
            .collect();
        assert_eq!(fired, ["after stop"]);
    }

    #[test]
    fn if_expressions_templates_tables_and_datetime() {
        let rules = set(r#"
[server]
timezone = "Asia/Shanghai"

[tables.change_titles]
create_user = "新增成员"

[[rules]]
name = "r"
if = "UserID is startingwith('zhang') and event.receiver == 'hr'"
[[rules.actions]]
kind = "email"
via = "mail"
to = ["{{ UserID }}@example.com", "a@example.com; b@example.com", "{{ Missing }}"]
subject = "{{ tables.change_titles[ChangeType] }}：{{ UserID }}"
body = "时间：{{ CreateTime | datetime }} / {{ event.received_at | datetime('%H:%M') }} / #{{ event.id }} {{ event.kind }}"

[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1:25"
from = "IT <it@example.com>"
"#);
        let f = fields(CONTACT);
        assert_eq!(rules.matching(&view("hr", &f)).len(), 1);
        let Rendered::Email(m) = rules.render("r", 0, &view("hr", &f)).unwrap() else {
            panic!("not an email")
        };
        assert_eq!(
            crate::actions::people::join_people(&m.to),
            "zhangsan@example.com, a@example.com, b@example.com"
        );
        assert_eq!(m.subject, "新增成员：zhangsan");
        assert_eq!(
            m.body,
            "时间：2023-11-15 06:13:20 / 06:13 / #42 change_contact/create_user"
        );
        let lisi = fields(r#"{"UserID":"lisi"}"#);
        assert!(rules.matching(&view("hr", &lisi)).is_empty());
    }

    #[test]
    fn feishu_event_object_and_meta_share_event() {
        let rules = set(r#"
[[rules]]
name = "r"
[[rules.actions]]
kind = "log"
message = "{{ event.chat_id }} {{ event.receiver }} {{ header.event_type }} {{ fields.event.chat_id }}"
"#);
        let f = fields(
            r#"{"schema":"2.0","header":{"event_type":"im.chat.updated_v1"},"event":{"chat_id":"oc_1"}}"#,
        );
        let Rendered::Log(log) = rules.render("r", 0, &view("lark", &f)).unwrap() else {
            panic!()
        };
        assert_eq!(log.message, "oc_1 lark im.chat.updated_v1 oc_1");
    }

    #[test]
    fn template_problems_are_found_before_running() {
        // What `hookgate check` reports, from the compiler validation runs.
        let template_problem = |src: &str| {
            crate::template::Compiler::new(jiff::tz::TimeZone::UTC)
                .compile("t", src)
                .1
        };
        let expression_problem = |src: &str| {
            crate::template::Compiler::new(jiff::tz::TimeZone::UTC)
                .condition("t", src)
                .1
        };
        assert!(template_problem("{{ a ").unwrap().contains("syntax error"));
        assert!(
            template_problem("{{ a | no_such_filter }}")
                .unwrap()
                .contains("unknown filter")
        );
        assert_eq!(template_problem("{{ a | datetime }} {{ b | upper }}"), None);
        assert!(expression_problem("a ==").is_some());
        assert_eq!(expression_problem("a == 'x' and b"), None);
    }

    #[test]
    fn fuel_bounds_a_runaway_template() {
        let rules = set(r#"
[[rules]]
name = "r"
[[rules.actions]]
kind = "log"
message = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
"#);
        let f = fields("{}");
        let err = rules.render("r", 0, &view("hr", &f)).unwrap_err();
        assert!(
            matches!(&err, RenderError::Template { field, reason } if field == "message" && reason.contains("fuel")),
            "{err}"
        );
    }

    /// Security review, item 14: one `replace` on event-sized text allocated 2.6 GB and
    /// aborted the process; a loop well within fuel could render without bound.
    #[test]
    fn rendered_text_is_capped() {
        let rules = set(r#"
[[rules]]
name = "r"
[[rules.actions]]
kind = "log"
message = "{{ Name | replace('', Name) | replace('', Name) }}"
[[rules.actions]]
kind = "log"
message = "{% for i in range(20000) %}{{ Name }}{% endfor %}"
"#);
        let f = fields(&format!(r#"{{"Name":"{}"}}"#, "x".repeat(2000)));
        let err = rules
            .render("r", 0, &view("hr", &f))
            .unwrap_err()
            .to_string();
        assert!(err.contains("message") && err.contains("replace"), "{err}");
        let err = rules
            .render("r", 1, &view("hr", &f))
            .unwrap_err()
            .to_string();
        assert!(err.contains("message") && err.contains("1024 KiB"), "{err}");
        let small = fields(r#"{"Name":"ab"}"#);
        let Rendered::Log(log) = rules.render("r", 0, &view("hr", &small)).unwrap() else {
            panic!()
        };
        // "ab" → "abaabbab" → 8 characters with "ab" at each of their 9 gaps.
        assert_eq!(log.message.len(), 8 + 9 * 2);
    }

    /// Security review, defect 6: `<a href>` and `<img>` from an event field went verbatim
    /// into the HTML part of an email.
    #[test]
    fn html_email_escapes_event_fields_and_text_parts_do_not() {
        let rules = set(r#"
[[rules]]
name = "r"
[[rules.actions]]
kind = "email"
via = "mail"
to = ["a@example.com"]
subject = "{{ Name }}"
body = "{{ Name }}"
html = "<p>{{ Name }}</p>{{ '<b>ok</b>' | safe }}"

[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1:25"
from = "IT <it@example.com>"
"#);
        let f = fields(r#"{"Name":"<img src=\"http://t.example/p\">&"}"#);
        let Rendered::Email(m) = rules.render("r", 0, &view("hr", &f)).unwrap() else {
            panic!("not an email")
        };
        assert_eq!(
            m.html.as_deref(),
            Some(
                "<p>&lt;img src=&quot;http:&#x2f;&#x2f;t.example&#x2f;p&quot;&gt;&amp;</p><b>ok</b>"
            )
        );
        assert_eq!(m.body, r#"<img src="http://t.example/p">&"#);
        assert_eq!(m.subject, r#"<img src="http://t.example/p">&"#);
    }
}
