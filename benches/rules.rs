//! Rule matching and rendering: one WeCom contact event against 1,000 rules (plain `when`
//! tables on one or two fields, every tenth with an `if` expression; 250 of them fire), the
//! same event against 1,000 rules of which one fires (each rule its own `ChangeType`, as a
//! config with many forms or event types has), and rendering the seed recipe's email.
//! `cargo bench --bench rules`.

use criterion::{Criterion, criterion_group, criterion_main};
use hookgate::rules::{EventView, RuleSet};
use std::fmt::Write as _;
use std::hint::black_box;

const RECEIVER: &str = r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/hr"
token = "t"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"

[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1:25"
from = "it@example.com"

[tables.titles]
create_user = "新增成员"
"#;

fn thousand_rules() -> String {
    let mut s = String::from(RECEIVER);
    let changes = ["create_user", "update_user", "delete_user", "create_party"];
    for i in 0..1000 {
        let change = changes[i % changes.len()];
        write!(
            s,
            "\n[[rules]]\nname = \"r{i}\"\nreceiver = \"hr\"\nwhen = {{ Event = \"change_contact\", ChangeType = [\"{change}\", \"x{i}\"] }}\n"
        )
        .unwrap();
        if i % 10 == 0 {
            writeln!(
                s,
                "if = \"UserID is startingwith('u{i}') or Department == '{i}'\""
            )
            .unwrap();
        }
        s.push_str("[[rules.actions]]\nkind = \"log\"\nmessage = \"{{ UserID }}\"\n");
    }
    s.push_str(
        r#"
[[rules]]
name = "mail"
[[rules.actions]]
kind = "email"
via = "mail"
to = "{% for d in Department | split(',') %}dept{{ d }}@example.com,{% endfor %}"
subject = "{{ tables.titles[ChangeType] }}：{{ Name or UserID }}"
body = """
新增时间：{{ CreateTime | datetime }}
新增成员 ID：{{ UserID }}
"""
"#,
    );
    s
}

/// 1,000 rules, each for its own change type: an event fires one.
fn one_of_a_thousand() -> String {
    let mut s = String::from(RECEIVER);
    for i in 0..1000 {
        write!(
            s,
            "\n[[rules]]\nname = \"r{i}\"\nreceiver = \"hr\"\nwhen = {{ Event = \"change_contact\", ChangeType = \"type{i}\" }}\n[[rules.actions]]\nkind = \"log\"\nmessage = \"{{{{ UserID }}}}\"\n"
        )
        .unwrap();
    }
    s
}

fn bench(c: &mut Criterion) {
    let config = hookgate::config::parse(&thousand_rules(), &|_| None).unwrap();
    let rules = RuleSet::new(&config);
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"ToUserName":"ww1","FromUserName":"sys","CreateTime":"1700000100","MsgType":"event",
            "Event":"change_contact","ChangeType":"create_user","UserID":"lisi","Name":"李四","Department":"1,2"}"#,
    )
    .unwrap();
    let view = EventView {
        id: 1,
        receiver: "hr",
        vendor: "wecom",
        kind: "change_contact/create_user",
        dedupe_key: "k",
        received_at_ms: 1_700_000_100_000,
        fields: &fields,
    };
    let matched = rules.matching(&view).len();
    // 250 rules name create_user; the 50 of them with an `if` are false for lisi; + mail.
    assert_eq!(matched, 201);
    c.bench_function("match_1000_rules", |b| {
        b.iter(|| black_box(rules.matching(black_box(&view))))
    });
    let config = hookgate::config::parse(&one_of_a_thousand(), &|_| None).unwrap();
    let one = RuleSet::new(&config);
    let mut fields = fields.clone();
    fields.insert("ChangeType".into(), "type500".into());
    let view_one = EventView {
        fields: &fields,
        ..view
    };
    assert_eq!(one.matching(&view_one).len(), 1);
    c.bench_function("match_1000_rules_1_fires", |b| {
        b.iter(|| black_box(one.matching(black_box(&view_one))))
    });
    c.bench_function("render_seed_email", |b| {
        b.iter(|| black_box(rules.render("mail", 0, black_box(&view)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
