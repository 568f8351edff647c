//! `vendor = "webhook"` receivers over HTTP against the real app. Requests are signed by
//! independent implementations (the `standardwebhooks` reference package and Python's stdlib
//! `hmac`): signed ones are stored once (a retry is a duplicate), wrong, stale or unsigned
//! ones get the same bare 403 and store nothing. The recipes that come in this way (or on a
//! clock) run end to end: Jiandaoyun, Yida, Alertmanager and the weekday digest.

mod common;

use common::{eventually, python, start};

const RECEIVERS: &str = r#"
[[receivers]]
name = "std"
vendor = "webhook"
path = "/hooks/std"
auth = "standard_webhooks"
secrets = ["whsec_AAAAAAAA", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
kind = "{{ type }}"

[[receivers]]
name = "gh"
vendor = "webhook"
path = "/hooks/gh"
auth = "hmac"
auth_header = "X-Hub-Signature-256"
prefix = "sha256="
secrets = ["old-secret", "It's a Secret to Everybody"]
dedupe_key = "{{ headers['x-github-delivery'] }}"

[[receivers]]
name = "alerts"
vendor = "webhook"
path = "/hooks/alerts"
auth = "token"
auth_header = "Authorization"
prefix = "Bearer "
secret = "t0ken"
kind = "{{ status }}"

[[rules]]
name = "log"
[[rules.actions]]
kind = "log"
message = "{{ event.receiver }} {{ event.kind }}"
"#;

/// Signs `body` with the reference implementations: (Standard Webhooks signature for
/// `msg_id` at `ts`, GitHub-style `sha256=<hex>`).
fn sign(msg_id: &str, ts: i64, body: &str) -> (String, String) {
    let script = r#"
import sys, hmac, hashlib, datetime
from standardwebhooks import Webhook
msg_id, ts, body = sys.argv[1], int(sys.argv[2]), sys.argv[3]
at = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
print(Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(msg_id, at, body))
print("sha256=" + hmac.new(b"It's a Secret to Everybody", body.encode(), hashlib.sha256).hexdigest())
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, msg_id, &ts.to_string(), body])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[tokio::test]
async fn signed_webhooks_are_stored_once_and_everything_else_is_refused_alike() {
    let s = start("", RECEIVERS).await;
    let now = common::now_ms() / 1000;
    let body = r#"{"type":"invoice.paid","id":7}"#;
    let (std_sig, gh_sig) = sign("msg_1", now, body);
    let ts = now.to_string();
    let std_headers = |sig: &str, ts: &str| {
        vec![
            ("webhook-id".to_owned(), "msg_1".to_owned()),
            ("webhook-timestamp".to_owned(), ts.to_owned()),
            ("webhook-signature".to_owned(), sig.to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ]
    };
    let post = |path: &'static str, headers: Vec<(String, String)>, body: &'static str| {
        let s = &s;
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            s.post(path, &h, body.as_bytes()).await
        }
    };
    // Standard Webhooks: accepted, and the retry of the same message id is a duplicate.
    for _ in 0..2 {
        let r = post("/hooks/std", std_headers(&std_sig, &ts), body).await;
        assert_eq!((r.status, r.json()), (200, serde_json::json!({"ok": true})));
    }
    // Refusals: another body, a stale timestamp (signed as the reference would), no
    // signature at all. Each is a bare 403 that says nothing more.
    let (stale_sig, _) = sign("msg_1", now - 3600, body);
    for (headers, b) in [
        (
            std_headers(&std_sig, &ts),
            r#"{"type":"invoice.paid","id":8}"#,
        ),
        (std_headers(&stale_sig, &(now - 3600).to_string()), body),
        (std_headers(&std_sig, &ts)[..2].to_vec(), body),
    ] {
        let r = post("/hooks/std", headers, b).await;
        assert_eq!((r.status, r.text()), (403, "rejected\n".to_owned()));
    }
    // GitHub-style HMAC with a rotated secret; the delivery header is the dedupe key.
    let gh = |sig: &str, delivery: &str| {
        vec![
            ("X-Hub-Signature-256".to_owned(), sig.to_owned()),
            ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
        ]
    };
    assert_eq!(
        post("/hooks/gh", gh(&gh_sig, "d-1"), body).await.status,
        200
    );
    assert_eq!(
        post("/hooks/gh", gh(&gh_sig, "d-1"), body).await.status,
        200
    );
    assert_eq!(
        post("/hooks/gh", gh("sha256=00", "d-2"), body).await.status,
        403
    );
    // A bearer token; the kind comes from the body.
    let bearer = |t: &str| vec![("Authorization".to_owned(), format!("Bearer {t}"))];
    let alert = r#"{"status":"firing","alerts":[{"labels":{"alertname":"DiskFull"}}]}"#;
    assert_eq!(
        post("/hooks/alerts", bearer("t0ken"), alert).await.status,
        200
    );
    assert_eq!(
        post("/hooks/alerts", bearer("nope"), alert).await.status,
        403
    );
    assert_eq!(post("/hooks/alerts", Vec::new(), alert).await.status, 403);

    let mut stored: Vec<(String, String, String)> = s
        .events()
        .into_iter()
        .map(|e| (e.receiver, e.kind, e.dedupe_key))
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            (
                "alerts".to_owned(),
                "firing".to_owned(),
                stored[0].2.clone()
            ),
            ("gh".to_owned(), "webhook".to_owned(), "d-1".to_owned()),
            (
                "std".to_owned(),
                "invoice.paid".to_owned(),
                "webhook-id=msg_1".to_owned()
            ),
        ]
    );
    assert!(stored[0].2.starts_with("sha256="), "{stored:?}");
    eventually(10, "three log deliveries done", || {
        let d = s.deliveries();
        d.len() == 3 && d.iter().all(|d| d.status.as_str() == "done")
    })
    .await;
    s.stop().await;
}

/// The Jiandaoyun recipe (`config/examples/jiandaoyun-wecom-robot.toml`) end to end: a push
/// signed as Jiandaoyun signs it (Python's hashlib) is announced in the WeCom group once,
/// however often it is retried; an update announces nothing; a wrong signature is refused.
#[tokio::test]
async fn the_jiandaoyun_example_announces_each_new_entry_once() {
    use common::vendors::{State, Vendors};
    let vendors = Vendors::start(State {
        wecom: vec!["k1".into()],
        ..State::default()
    })
    .await;
    let webhook = vendors.url("/cgi-bin/webhook/send?key=k1");
    let src = std::fs::read_to_string("config/examples/jiandaoyun-wecom-robot.toml").unwrap();
    let s = common::start_file(
        &src,
        &[
            ("JDY_SECRET", "jdy-s3cret"),
            ("WECOM_ROBOT_WEBHOOK", &webhook),
            ("WECOM_ROBOT_HOST", "127.0.0.1"),
        ],
    )
    .await;
    let sign = |nonce: &str, ts: &str, body: &str| -> String {
        let script = "import sys, hashlib; n, t, b = sys.argv[1:4]; \
                      print(hashlib.sha1(f'{n}:{b}:jdy-s3cret:{t}'.encode()).hexdigest())";
        let out = std::process::Command::new(python())
            .args(["-c", script, nonce, ts, body])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let ts = (common::now_ms() / 1000).to_string();
    let created = r#"{"op":"data_create","data":{"_id":"65f0","creator":{"name":"张三"},"customer":"华东仓储","amount":1200}}"#;
    let updated =
        r#"{"op":"data_update","data":{"_id":"65f0","creator":{"name":"张三"},"amount":1300}}"#;
    let push = |body: &'static str, deliver: &'static str, sig: String| {
        let s = &s;
        let q = format!("/hooks/jdy?nonce=n-{deliver}&timestamp={ts}");
        async move {
            let headers = [
                ("X-JDY-Signature", sig.as_str()),
                ("X-JDY-DeliverId", deliver),
                ("Content-Type", "application/json"),
            ];
            s.post(&q, &headers, body.as_bytes()).await.status
        }
    };
    let sig = sign("n-d1", &ts, created);
    assert_eq!(push(created, "d1", sig.clone()).await, 200);
    assert_eq!(push(created, "d1", sig).await, 200, "a retried push");
    assert_eq!(push(updated, "d2", sign("n-d2", &ts, updated)).await, 200);
    assert_eq!(push(created, "d3", sign("n-d3", &ts, updated)).await, 403);
    eventually(10, "the announcement", || !vendors.accepted().is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = vendors.accepted();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let text = sent[0].2["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("提交人：张三")
            && text.contains("- customer：华东仓储")
            && !text.contains("_id"),
        "{text}"
    );
    let kinds: Vec<String> = s.events().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"data_create".to_owned()) && kinds.contains(&"data_update".to_owned()));
    s.stop().await;
}

/// The Yida recipe (`config/examples/yida-group.toml`, seeds 000 and 001) against the fake
/// DingTalk APIs: 「创建会话群」 makes one group with the form's name, owner and members
/// (a re-run automation makes no second one) and writes its chat id back into a Yida form, 「更新会话群」 renames it and changes members,
/// 「群消息内容录入表」 posts into it; a wrong API key is refused and stores nothing.
#[tokio::test]
async fn the_yida_example_creates_updates_and_messages_a_group_from_forms() {
    use common::apps::{AppState, Apps};
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        ..AppState::default()
    })
    .await;
    let base = apps.base();
    let src = std::fs::read_to_string("config/examples/yida-group.toml").unwrap();
    let s = common::start_file(
        &src,
        &[
            ("YIDA_API_KEY", "yida-k3y"),
            ("YIDA_APP_TYPE", "APP_HOOKGATE"),
            ("YIDA_SYSTEM_TOKEN", "yida-system-token"),
            ("YIDA_SUMMARY_FORM", "FORM-SUMMARY"),
            ("DING_APP_KEY", "dingappkey"),
            ("DING_APP_SECRET", "dingsecret"),
            ("DING_API_BASE", &base),
            ("DING_NEW_API_BASE", &base),
        ],
    )
    .await;
    let submit = |key: &'static str, body: serde_json::Value| {
        let s = &s;
        async move {
            let headers = [("X-Api-Key", key), ("Content-Type", "application/json")];
            s.post("/hooks/yida", &headers, body.to_string().as_bytes())
                .await
                .status
        }
    };
    let create = serde_json::json!({
        "form": "create_group", "formInstId": "FINST-1", "groupName": "华东项目群",
        "owner": "owner01", "members": ["member01", "member02"]
    });
    assert_eq!(submit("yida-k3y", create.clone()).await, 200);
    assert_eq!(
        submit("yida-k3y", create).await,
        200,
        "the automation re-run"
    );
    assert_eq!(
        submit("wrong", serde_json::json!({"form": "create_group", "formInstId": "FINST-X", "groupName": "x", "owner": "o", "members": []})).await,
        403
    );
    eventually(10, "the group and its welcome", || {
        apps.messages().len() == 1
    })
    .await;
    let chats = apps.chats();
    assert_eq!(chats.len(), 1, "{chats:#?}");
    let chat = chats.values().next().unwrap().clone();
    assert_eq!(
        (chat.name.as_str(), chat.owner.as_str()),
        ("华东项目群", "owner01")
    );
    assert_eq!(chat.users, ["owner01", "member01", "member02"]);
    // The write-back: the new chat id into 「会话群数据汇总」 through Yida's API.
    eventually(10, "the write-back", || apps.yida().len() == 1).await;
    let saved = &apps.yida()[0];
    assert_eq!(
        (
            saved["appType"].as_str(),
            saved["formUuid"].as_str(),
            saved["userId"].as_str()
        ),
        (Some("APP_HOOKGATE"), Some("FORM-SUMMARY"), Some("owner01"))
    );
    assert_eq!(saved["formDataJson"]["群聊名称"], "华东项目群");
    let chat_id = chats.keys().next().unwrap();
    assert_eq!(
        saved["formDataJson"]["群聊ID"].as_str(),
        Some(chat_id.as_str()),
        "{saved}"
    );

    let update = serde_json::json!({
        "form": "update_group", "formInstId": "FINST-2", "group": "华东项目群",
        "newName": "华东项目群（二期）", "addMembers": ["member03"], "removeMembers": ["member01"]
    });
    assert_eq!(submit("yida-k3y", update).await, 200);
    let message = serde_json::json!({
        "form": "group_message", "formInstId": "FINST-3", "group": "华东项目群",
        "content": "### 周会\n明天 10:00"
    });
    assert_eq!(submit("yida-k3y", message).await, 200);
    eventually(10, "the rename and the message", || {
        apps.messages().len() == 2
            && apps.chats().values().next().unwrap().name == "华东项目群（二期）"
    })
    .await;
    let chat = apps.chats().values().next().unwrap().clone();
    let mut users = chat.users.clone();
    users.sort();
    assert_eq!(users, ["member02", "member03", "owner01"]);
    let (_, sent) = &apps.messages()[1];
    assert_eq!(sent["msgKey"], "sampleMarkdown");
    assert!(
        sent["msgParam"].to_string().contains("明天 10:00"),
        "{sent}"
    );
    assert_eq!(s.events().len(), 3, "the refused form stored nothing");
    s.stop().await;
}

/// Alertmanager's webhook body (version 4) for one group: firing, then resolved.
fn alert_group(status: &str) -> String {
    let ends = if status == "firing" {
        "0001-01-01T00:00:00Z"
    } else {
        "2026-12-01T10:20:00Z"
    };
    serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighCPU\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "dingtalk",
        "groupLabels": {"alertname": "HighCPU"},
        "commonLabels": {"alertname": "HighCPU", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [
            {"status": status, "labels": {"alertname": "HighCPU", "instance": "db-1:9100", "severity": "critical"},
             "annotations": {"summary": "db-1 CPU 超过 90%"}, "startsAt": "2026-12-01T10:00:00.123Z",
             "endsAt": ends, "generatorURL": "http://prom/graph", "fingerprint": "a1b2c3"},
            {"status": status, "labels": {"alertname": "HighCPU", "instance": "db-2:9100"},
             "annotations": {}, "startsAt": "2026-12-01T10:01:00Z",
             "endsAt": ends, "generatorURL": "http://prom/graph", "fingerprint": "d4e5f6"}
        ]
    })
    .to_string()
}

/// The Alertmanager recipe (`config/examples/alertmanager-dingtalk-robot.toml`) against the
/// fake DingTalk robot (which checks the 加签 signature): a firing group is one red message,
/// its retry a duplicate, the resolved group one green message; a wrong bearer token is
/// refused.
#[tokio::test]
async fn the_alertmanager_example_posts_firing_and_resolved_groups_to_the_robot() {
    use common::vendors::{State, Vendors};
    let vendors = Vendors::start(State {
        dingtalk: [("amtok".to_owned(), Some("SECrobot".to_owned()))].into(),
        ..State::default()
    })
    .await;
    let base = vendors.url("");
    let src = std::fs::read_to_string("config/examples/alertmanager-dingtalk-robot.toml").unwrap();
    let s = common::start_file(
        &src,
        &[
            ("ALERTMANAGER_TOKEN", "am-t0ken"),
            ("DING_ROBOT_WEBHOOK", base.trim_end_matches('/')),
            ("DING_ROBOT_HOST", "127.0.0.1"),
            ("DING_ROBOT_TOKEN", "amtok"),
            ("DING_ROBOT_SECRET", "SECrobot"),
        ],
    )
    .await;
    let post = |bearer: &'static str, body: String| {
        let s = &s;
        async move {
            let auth = format!("Bearer {bearer}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
                ("User-Agent", "Alertmanager/0.28.1"),
            ];
            s.post("/hooks/alertmanager", &headers, body.as_bytes())
                .await
                .status
        }
    };
    assert_eq!(post("am-t0ken", alert_group("firing")).await, 200);
    assert_eq!(
        post("am-t0ken", alert_group("firing")).await,
        200,
        "a retry"
    );
    assert_eq!(post("nope", alert_group("firing")).await, 403);
    assert_eq!(post("am-t0ken", alert_group("resolved")).await, 200);
    eventually(10, "two robot messages", || vendors.accepted().len() == 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = vendors.accepted();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let text = |i: usize| sent[i].2["markdown"]["text"].as_str().unwrap().to_owned();
    let title = |i: usize| sent[i].2["markdown"]["title"].as_str().unwrap().to_owned();
    assert_eq!(title(0), "[FIRING:2] HighCPU");
    assert!(
        text(0).contains("🔥 告警 HighCPU（2 条）")
            && text(0).contains("**db-1 CPU 超过 90%**（db-1:9100）")
            && text(0).contains("开始于 2026-12-01 18:00:00 · critical"),
        "{}",
        text(0)
    );
    assert_eq!(title(1), "[RESOLVED:2] HighCPU");
    assert!(
        text(1).contains("✅ 已恢复") && text(1).contains("恢复于 2026-12-01 18:20:00"),
        "{}",
        text(1)
    );
    assert_eq!(
        s.events().len(),
        2,
        "the retry and the refused post stored nothing"
    );
    s.stop().await;
}

/// The weekday digest (`config/examples/weekday-digest.toml`) with its clock sped up to every
/// second: each slot posts one message naming that weekday's duty from the table.
/// (`tests/cli.rs` checks the real schedule's next fire times through `explain --schedule`.)
#[tokio::test]
async fn the_weekday_digest_posts_once_per_slot_with_the_days_duty() {
    use common::vendors::{State, Vendors};
    let vendors = Vendors::start(State {
        wecom: vec!["k1".into()],
        ..State::default()
    })
    .await;
    let src = std::fs::read_to_string("config/examples/weekday-digest.toml").unwrap();
    let fast = src.replace(r#"schedule = "0 9 * * MON-FRI""#, r#"every = "1s""#);
    assert_ne!(src, fast);
    let webhook = vendors.url("/cgi-bin/webhook/send?key=k1");
    let s = common::start_file(
        &fast,
        &[
            ("WECOM_ROBOT_WEBHOOK", &webhook),
            ("WECOM_ROBOT_HOST", "127.0.0.1"),
        ],
    )
    .await;
    eventually(10, "two mornings", || vendors.accepted().len() >= 2).await;
    let events = s.events();
    let sent = vendors.accepted();
    assert!(sent.len() <= events.len(), "one message per slot");
    let duty = |weekday: &str| match weekday {
        "Mon" => "zhangsan",
        "Tue" => "lisi",
        "Wed" => "wangwu",
        "Thu" => "zhaoliu",
        "Fri" => "sunqi",
        _ => "未排班",
    };
    for e in &events {
        assert_eq!(
            (e.receiver.as_str(), e.kind.as_str()),
            ("schedule", "weekday digest")
        );
    }
    let slot = events[0].fields["slot"].as_str().unwrap().to_owned();
    let weekday = slot
        .parse::<jiff::Timestamp>()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .strftime("%a")
        .to_string();
    let texts: Vec<String> = sent
        .iter()
        .map(|m| m.2["markdown"]["content"].as_str().unwrap().to_owned())
        .collect();
    let want = format!("今日值班：<@{}>", duty(&weekday));
    assert!(
        texts.iter().any(|t| t.contains(&want)),
        "{want} in {texts:#?}"
    );
    s.stop().await;
}
