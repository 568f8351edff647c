//! The rule set's tests: matching by `when` and `if`, the index, scheduled rules, templates,
//! rendering and each action's destination.

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
        Some("<p>&lt;img src=&quot;http:&#x2f;&#x2f;t.example&#x2f;p&quot;&gt;&amp;</p><b>ok</b>")
    );
    assert_eq!(m.body, r#"<img src="http://t.example/p">&"#);
    assert_eq!(m.subject, r#"<img src="http://t.example/p">&"#);
}
