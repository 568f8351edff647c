//! The real `hookgate` binary: `check` on good and bad files, `serve` on 127.0.0.1:0 with a
//! URL check and an event over HTTP, `events list`/`show`, `explain` (and `--schedule`),
//! `deliveries list`/`retry` against a running server, and shutdown on SIGTERM.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hookgate");

#[test]
fn check_accepts_the_example_and_names_every_problem() {
    // Security review, defect 11: the example fell back to published sample keys when a
    // variable was unset; now every missing secret is an error that names it.
    let missing = Command::new(BIN)
        .args(["check", "--config", "config/hookgate.example.toml"])
        .env_remove("HOOKGATE_ENV_FILE")
        .env_remove("WECOM_HR_TOKEN")
        .env_remove("LARK_ENCRYPT_KEY")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    for var in [
        "WECOM_HR_TOKEN",
        "LARK_ENCRYPT_KEY",
        "DING_ROBOT_APP_SECRET",
    ] {
        assert!(
            err.contains(&format!("environment variable {var} is not set")),
            "{err}"
        );
    }
    let ok = Command::new(BIN)
        .args(["check", "--config", "config/hookgate.example.toml"])
        .args(["--env-file", common::DEMO_ENV])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("hr") && out.contains("/hooks/wecom/hr") && out.contains("dingtalk_robot"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[receivers]]\nname = \"a\"\nvendor = \"wecom\"\npath = \"/a\"\ntoken = \"${UNSET_FOR_TEST}\"\nencoding_aes_key = \"short\"\nreceive_id = \"\"\ncolour = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .env_remove("UNSET_FOR_TEST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        ":5: receivers[0].token: environment variable UNSET_FOR_TEST is not set",
        ":6: receivers[0].encoding_aes_key: malformed EncodingAESKey (-40004)",
        ":8: receivers[0].colour: unknown key",
    ] {
        assert!(err.contains(line), "missing {line:?} in\n{err}");
    }
}

#[tokio::test]
async fn serve_answers_stores_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db/hookgate.db");
    let config = dir.path().join("hookgate.toml");
    let example = std::fs::read_to_string("config/hookgate.example.toml").unwrap();
    std::fs::write(&config, example).unwrap();
    let served = common::Served::start(
        &config,
        &[
            ("HOOKGATE_LISTEN", "127.0.0.1:0".as_ref()),
            ("HOOKGATE_DB", db.as_os_str()),
            ("HOOKGATE_ENV_FILE", common::DEMO_ENV.as_ref()),
            // The environment wins over the env file.
            ("WECOM_HR_TOKEN", "tok".as_ref()),
        ],
    );
    let addr = served.addr;

    let env = hookgate::crypto::envelope::Envelope::new(
        "tok".into(),
        vec![
            hookgate::crypto::envelope::AesKey::from_encoding_aes_key(
                "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            )
            .unwrap(),
        ],
        "wx5823bf96d3bd56c7".into(),
    );
    let ts = (common::now_ms() / 1000).to_string();
    let sealed = env.seal(0, b"1616140317555161061", &ts, "n");
    let target = format!(
        "/hooks/wecom/hr?msg_signature={}&timestamp={ts}&nonce=n&echostr={}",
        sealed.msg_signature,
        common::enc(&sealed.encrypt)
    );
    let r = common::raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "1616140317555161061"));

    let msg = "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>77</MsgId></xml>";
    let sealed = env.seal(0, msg.as_bytes(), &ts, "n");
    let body = format!(
        "<xml><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.encrypt
    );
    let req = format!(
        "POST /hooks/wecom/hr?msg_signature={}&timestamp={ts}&nonce=n HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        sealed.msg_signature,
        body.len()
    );
    assert_eq!(common::raw(addr, req.as_bytes()).await.status, 200);

    let list = Command::new(BIN)
        .args(["events", "list", "--config"])
        .arg(&config)
        .env("HOOKGATE_DB", &db)
        .env("HOOKGATE_ENV_FILE", common::DEMO_ENV)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(
        out.contains("MsgId=77") && out.contains(" hr "),
        "{out}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let show = Command::new(BIN)
        .args(["events", "show", "1", "--config"])
        .arg(&config)
        .env("HOOKGATE_DB", &db)
        .env("HOOKGATE_ENV_FILE", common::DEMO_ENV)
        .output()
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(event["event"]["fields"]["Content"], "hi");

    // Security review, defect 5: the store (decrypted events, access tokens) was 0644 in 0755.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path().join("db")), 0o700);
    assert_eq!(mode(db.clone()), 0o600);
    assert_eq!(mode(dir.path().join("db/hookgate.db-wal")), 0o600);

    // SIGTERM: a clean exit.
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
}

const CONTACT_XML: &str = "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
<CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
<ChangeType>create_user</ChangeType><UserID><![CDATA[lisi]]></UserID><Name><![CDATA[李四]]></Name>\
<Department><![CDATA[2]]></Department></xml>";

#[test]
fn explain_shows_which_rules_fire_and_what_they_send() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.xml");
    std::fs::write(&event, CONTACT_XML).unwrap();
    let run = |file: &std::path::Path| {
        Command::new(BIN)
            .args([
                "explain",
                "--config",
                "config/examples/wecom-contact-email.toml",
            ])
            .args(["--receiver", "contacts"])
            .arg(file)
            .env("WECOM_CONTACT_TOKEN", "t")
            .env(
                "WECOM_CONTACT_AES_KEY",
                "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            )
            .env("WECOM_CORP_ID", "ww1")
            .env("SMTP_URL", "smtp://127.0.0.1:25")
            .env("DEPT_2_MAIL", "hr-a@example.com, hr-b@example.com")
            .output()
            .unwrap()
    };
    let out = run(&event);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "kind change_contact/create_user",
        "rule \"mail the department on contact changes\": FIRES",
        "to: hr-a@example.com, hr-b@example.com",
        "(one message per recipient)",
        "subject: 新增成员：李四",
        "新增时间：2023-11-15 06:15:00",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    std::fs::write(&event, CONTACT_XML.replace("create_user", "create_party")).unwrap();
    let text = String::from_utf8_lossy(&run(&event).stdout).into_owned();
    assert!(
        text.contains("does not fire: when.ChangeType is \"create_party\""),
        "{text}"
    );
}

#[test]
fn explain_shows_lookups_as_planned_and_where_their_answers_go() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.xml");
    std::fs::write(&event, CONTACT_XML).unwrap();
    let out = Command::new(BIN)
        .args([
            "explain",
            "--config",
            "config/examples/wecom-contact-email-mysql.toml",
        ])
        .args(["--receiver", "contacts"])
        .arg(&event)
        .env("WECOM_CONTACT_TOKEN", "t")
        .env(
            "WECOM_CONTACT_AES_KEY",
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        )
        .env("WECOM_CORP_ID", "ww1")
        .env("WECOM_APP_SECRET", "s")
        // Nothing listens there: explain does not run lookups.
        .env("IPAAS_DB_URL", "mysql://u:p@127.0.0.1:1/ipaas")
        .env("SMTP_URL", "smtp://127.0.0.1:25")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "action 0 (sql, keeps its result as steps.tpl):",
        "read-only query via ipaas (mysql, at most 1 rows)",
        ":changeType = \"create_user\"",
        "action 1 (email, if \"steps.tpl.count > 0\" (decided when it runs)):",
        "subject: ⟨steps.tpl.rows[0].subject⟩",
        "⟨steps.tpl.rows[0].email_body⟩",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn explain_schedule_lists_weekday_mornings_and_what_the_next_one_posts() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["explain", "--config", "config/examples/weekday-digest.toml"])
            .args(args)
            .env(
                "WECOM_ROBOT_WEBHOOK",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = run(&["--schedule"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("rule \"weekday digest\": 0 9 * * MON-FRI (a missed slot runs once at start); next, in Asia/Shanghai:"),
        "{text}"
    );
    let times: Vec<&str> = text.lines().filter(|l| l.starts_with("  20")).collect();
    assert_eq!(times.len(), 5, "{text}");
    for t in times {
        assert!(t.contains(" 09:00:00 "), "{t}");
        assert!(!t.ends_with("Sat") && !t.ends_with("Sun"), "{t}");
    }
    let (ok, text) = run(&["--schedule", "weekday digest"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("rule \"weekday digest\": FIRES") && text.contains("今日值班：<@"),
        "{text}"
    );
    let (ok, text) = run(&["--schedule", "nightly"]);
    assert!(
        !ok && text
            .contains("no scheduled rule named \"nightly\" (scheduled rules: weekday digest)"),
        "{text}"
    );
}

#[tokio::test]
async fn deliveries_list_and_retry_a_dead_delivery() {
    let sink = common::sink::Sink::start(&[400]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "${{HOOKGATE_DB}}"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "tok"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"
[[rules]]
name = "forward"
[[rules.actions]]
kind = "http"
url = "{}"
as = "answer"
"#,
            sink.url("/in")
        ),
    )
    .unwrap();
    let served = common::Served::start(&config, &[("HOOKGATE_DB", db.as_os_str())]);
    let env = hookgate::crypto::envelope::Envelope::new(
        "tok".into(),
        vec![
            hookgate::crypto::envelope::AesKey::from_encoding_aes_key(
                "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            )
            .unwrap(),
        ],
        "ww1".into(),
    );
    let (q, body) = common::wecom_post(
        &env,
        "ww1",
        CONTACT_XML,
        &(common::now_ms() / 1000).to_string(),
    );
    let req = format!(
        "POST /wecom?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(common::raw(served.addr, req.as_bytes()).await.status, 200);

    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("HOOKGATE_DB", &db)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    common::eventually(10, "the delivery is dead", || {
        cli(&["deliveries", "list", "--status", "dead"])
            .1
            .contains("HTTP 400")
    })
    .await;
    let (ok, list) = cli(&["deliveries", "list"]);
    assert!(
        ok && list.contains("forward#0") && list.contains("dead"),
        "{list}"
    );
    let (ok, out) = cli(&["deliveries", "retry", "--dead"]);
    assert!(ok && out.contains("1 delivery queued"), "{out}");
    // The running server picks it up (it polls) and the sink now answers 200.
    common::eventually(10, "done after the retry", || {
        cli(&["deliveries", "list", "--status", "done"])
            .1
            .contains("forward#0")
    })
    .await;
    assert_eq!(sink.received().len(), 2);
    // What it kept for later actions, as JSON.
    let (ok, out) = cli(&["deliveries", "show", "1"]);
    let shown: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        ok && shown["status"] == "done" && shown["result"]["status"] == 200,
        "{out}"
    );
    let (ok, out) = cli(&["deliveries", "show", "999"]);
    assert!(!ok && out.contains("no delivery 999"), "{out}");
    let (ok, out) = cli(&["deliveries", "retry", "999"]);
    assert!(!ok && out.contains("no dead or pending delivery"), "{out}");
    assert!(served.terminate().success());
}

#[tokio::test]
async fn groups_list_and_show_read_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"${HOOKGATE_DB}\"\n[[receivers]]\nname = \"hr\"\nvendor = \"dingtalk_robot\"\npath = \"/r\"\napp_secret = \"s\"\n",
    )
    .unwrap();
    let store = hookgate::store::Store::open(&hookgate::config::StoreConfig::sqlite(&db))
        .await
        .unwrap();
    store
        .put_group(hookgate::store::GroupRow {
            connection: "ding".into(),
            key: "proc-1".into(),
            chat_id: "chat0001".into(),
            open_conversation_id: Some("cid0001".into()),
            name: "审批·差旅".into(),
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_000,
        })
        .await
        .unwrap();
    drop(store);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("HOOKGATE_DB", &db)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, list) = run(&["groups", "list"]);
    assert!(
        ok && list.contains("proc-1") && list.contains("chat0001") && list.contains("审批·差旅"),
        "{list}"
    );
    let (ok, show) = run(&["groups", "show", "proc-1"]);
    assert!(ok, "{show}");
    let g: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(g["open_conversation_id"], "cid0001");
    let (ok, out) = run(&["groups", "show", "nope"]);
    assert!(!ok && out.contains("no group with key"), "{out}");

    // A creation left unsure (chat id ""): listed as such, settled with `set` or `forget`.
    let store = hookgate::store::Store::open(&hookgate::config::StoreConfig::sqlite(&db))
        .await
        .unwrap();
    for key in ["proc-2", "proc-3"] {
        store
            .put_group(hookgate::store::GroupRow {
                connection: "ding".into(),
                key: key.into(),
                chat_id: String::new(),
                open_conversation_id: None,
                name: "审批·采购".into(),
                created_at_ms: 1_700_000_000_000,
                updated_at_ms: 1_700_000_000_000,
            })
            .await
            .unwrap();
    }
    drop(store);
    let (ok, list) = run(&["groups", "list"]);
    assert!(ok && list.contains("(being created, or unsure)"), "{list}");
    let set = [
        "groups",
        "set",
        "proc-2",
        "--via",
        "ding",
        "--chat-id",
        "chat0002",
        "--open-conversation-id",
        "cid0002",
    ];
    let (ok, out) = run(&set);
    assert!(ok, "{out}");
    let (_, show) = run(&["groups", "show", "proc-2"]);
    let g: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(
        (&g["chat_id"], &g["open_conversation_id"], &g["name"]),
        (&"chat0002".into(), &"cid0002".into(), &"审批·采购".into())
    );
    // A key with a chat is not silently pointed elsewhere.
    let (ok, out) = run(&[
        "groups",
        "set",
        "proc-1",
        "--via",
        "ding",
        "--chat-id",
        "chat9",
    ]);
    assert!(!ok && out.contains("already has chat chat0001"), "{out}");
    let (ok, out) = run(&["groups", "forget", "proc-3", "--via", "ding"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["groups", "show", "proc-3"]);
    assert!(!ok && out.contains("no group with key"), "{out}");
    let (ok, out) = run(&["groups", "forget", "proc-3", "--via", "ding"]);
    assert!(!ok && out.contains("no group with key"), "{out}");
    // Changing the registry by hand is an operator's action: in the audit trail.
    let (ok, out) = run(&["audit"]);
    assert!(
        ok && out.contains("group forget") && out.contains("proc-3"),
        "{out}"
    );
}

/// Every commented-out example in the example config is valid once uncommented, so the
/// documentation cannot drift from what `check` accepts.
#[test]
fn the_commented_examples_in_the_example_config_are_valid() {
    let src = std::fs::read_to_string("config/hookgate.example.toml").unwrap();
    let looks_like_toml = |l: &str| {
        l.starts_with('[')
            || l.split_once('=').is_some_and(|(k, _)| {
                !k.trim().is_empty()
                    && k.trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    let uncommented: String = src
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if looks_like_toml(rest) => format!("{rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(uncommented.matches("kind = \"group_create\"").count() == 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("full.toml");
    std::fs::write(&file, uncommented).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config"])
        .arg(&file)
        .args(["--env-file", common::DEMO_ENV]);
    for var in [
        "SMTP_PASSWORD",
        "EGRESS_PROXY_PASSWORD",
        "ERP_HOOK_SECRET",
        "DING_ROBOT_TOKEN",
        "DING_ROBOT_SECRET",
        "WECOM_ROBOT_KEY",
        "LARK_HOOK_ID",
        "LARK_HOOK_SECRET",
        "WECOM_CORP_ID",
        "WECOM_APP_SECRET",
        "DING_APP_KEY",
        "DING_APP_SECRET",
        "DING_ROBOT_CODE",
        "CI_WEBHOOK_SECRET",
        "JDY_SECRET",
        "ALERTS_TOKEN",
        "BIZ_DB_PASSWORD",
        "YIDA_SYSTEM_TOKEN",
        "ONCALL_PASSWORD",
    ] {
        cmd.env(var, "x");
    }
    cmd.env("BILLING_WHSEC", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    cmd.env(
        "WECOM_HR_OLD_AES_KEY",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    );
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("group_create, group_update, group_send, notify"),
        "{text}"
    );
}

const RECEIVER_A: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"${HOOKGATE_DB}\"\n\
[[receivers]]\nname = \"a\"\nvendor = \"dingtalk_robot\"\npath = \"/a\"\napp_secret = \"s\"\n";

#[tokio::test]
async fn a_changed_config_is_reloaded_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config = dir.path().join("hookgate.toml");
    std::fs::write(&config, RECEIVER_A).unwrap();
    let served = common::Served::start(&config, &[("HOOKGATE_DB", db.as_os_str())]);
    let get = |path: &'static str| {
        let addr = served.addr;
        async move {
            common::raw(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .status
        }
    };
    assert_eq!(get("/b").await, 404);
    // A new receiver appears once the file changes (polled every 2 s).
    let with_b = format!(
        "{RECEIVER_A}[[receivers]]\nname = \"b\"\nvendor = \"dingtalk_robot\"\npath = \"/b\"\napp_secret = \"s\"\n"
    );
    std::fs::write(&config, &with_b).unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = get("/b").await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the new receiver answers its bare GET hint");
    // A broken file is refused: the running config keeps serving.
    std::fs::write(&config, format!("{with_b}\n[[receivers]]\nname = 1\n")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    // And SIGHUP forces a check too.
    Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(get("/a").await, 200);
    assert_eq!(get("/b").await, 200);
    let metrics = common::raw(
        served.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .text();
    assert!(
        metrics.contains("hookgate_config_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookgate_config_reloads_total{outcome=\"rejected\"} 2"),
        "{metrics}"
    );
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn json_logs_and_an_admin_listener_for_metrics() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{admin}\"\nmetrics_path = \"/internal/metrics\"\n\
             [store]\npath = {:?}\n[[receivers]]\nname = \"a\"\nvendor = \"dingtalk_robot\"\npath = \"/a\"\napp_secret = \"s3cr3t-app\"\n",
            dir.path().join("db").display().to_string()
        ),
    )
    .unwrap();
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Guard(
        Command::new(BIN)
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Every line is a JSON object; the first names the address.
    let first = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(v["fields"]["message"], "hookgate listening.");
    let addr: std::net::SocketAddr = v["fields"]["addr"].as_str().unwrap().parse().unwrap();
    let get = |a: std::net::SocketAddr, path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        async move { common::raw(a, req.as_bytes()).await }
    };
    // Wait for the admin listener.
    let mut m = None;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            m = Some(get(admin, "/internal/metrics").await);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let m = m.expect("the admin listener did not come up");
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("hookgate_deliveries_pending 0"),
        "{}",
        m.text()
    );
    assert_eq!(get(admin, "/healthz").await.status, 200);
    assert_eq!(
        get(admin, "/a").await.status,
        404,
        "no callbacks on the admin listener"
    );
    assert_eq!(
        get(addr, "/internal/metrics").await.status,
        404,
        "metrics moved off the main listener"
    );
    assert_eq!(get(addr, "/a").await.status, 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert!(child.0.wait().unwrap().success());
    let rest: Vec<String> = rx.try_iter().collect();
    for l in &rest {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.is_object());
        assert!(!l.contains("s3cr3t-app"), "a secret in the log: {l}");
    }
}

#[tokio::test]
async fn scheduled_deliveries_are_listed_and_cancelled_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "${HOOKGATE_DB}"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "tok"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "ww1"
[[rules]]
name = "remind tomorrow"
[[rules.actions]]
kind = "log"
message = "still open: {{ UserID }}"
after = "1d"
key = "item-{{ UserID }}"
"#,
    )
    .unwrap();
    let served = common::Served::start(&config, &[("HOOKGATE_DB", db.as_os_str())]);
    let env = hookgate::crypto::envelope::Envelope::new(
        "tok".into(),
        vec![
            hookgate::crypto::envelope::AesKey::from_encoding_aes_key(
                "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            )
            .unwrap(),
        ],
        "ww1".into(),
    );
    let (q, body) = common::wecom_post(
        &env,
        "ww1",
        CONTACT_XML,
        &(common::now_ms() / 1000).to_string(),
    );
    let req = format!(
        "POST /wecom?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(common::raw(served.addr, req.as_bytes()).await.status, 200);
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("HOOKGATE_DB", &db)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, list) = cli(&["deliveries", "list", "--status", "scheduled"]);
    assert!(
        ok && list.contains("item-lisi") && list.contains("remind tomorrow#0"),
        "{list}"
    );
    let (ok, out) = cli(&["deliveries", "cancel", "--key", "item-lisi"]);
    assert!(ok && out.contains("1 delivery cancelled"), "{out}");
    let (ok, list) = cli(&["deliveries", "list", "--status", "cancelled"]);
    assert!(
        ok && list.contains("item-lisi") && list.contains("cancelled by cli:"),
        "{list}"
    );
    let (ok, list) = cli(&["deliveries", "list", "--status", "scheduled"]);
    assert!(ok && !list.contains("item-lisi"), "{list}");
    assert!(served.terminate().success());
}

#[test]
fn explain_shows_timers_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let start = dir.path().join("start.json");
    std::fs::write(&start, r#"{"EventType":"bpms_task_change","processInstanceId":"risk-7","title":"整改","type":"start","staffId":"h1","url":"https://x"}"#).unwrap();
    let finish = dir.path().join("finish.json");
    std::fs::write(
        &finish,
        std::fs::read_to_string(&start)
            .unwrap()
            .replace("start", "finish"),
    )
    .unwrap();
    let run = |file: &std::path::Path| {
        let out = Command::new(BIN)
            .args([
                "explain",
                "--config",
                "config/examples/e10-escalation.toml",
                "--receiver",
                "approvals",
            ])
            .arg(file)
            .env("DING_CALLBACK_TOKEN", "t")
            .env(
                "DING_CALLBACK_AES_KEY",
                "1234567890123456789012345678901234567890123",
            )
            .env("DING_APP_KEY", "k")
            .env("DING_APP_SECRET", "s")
            .env("DING_AGENT_ID", "7")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&start);
    assert!(
        text.contains("action 0 (notify, scheduled for")
            && text.contains("(after 86400s), key \"risk-7\""),
        "{text}"
    );
    assert!(
        text.contains("(group_create, scheduled for") && text.contains("(after 172800s)"),
        "{text}"
    );
    let text = run(&finish);
    assert!(
        text.contains("cancels every pending delivery with key \"risk-7\""),
        "{text}"
    );
}

/// Security review, defect 9: the inherited soft file limit (256 here) was kept, so a few
/// hundred idle sockets starved callbacks. `serve` raises it to the hard limit.
#[test]
fn serve_raises_the_file_descriptor_limit() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"${HOOKGATE_DB}\"\n\n\
         [[receivers]]\nname = \"bot\"\nvendor = \"dingtalk_robot\"\npath = \"/bot\"\napp_secret = \"s\"\n",
    )
    .unwrap();
    let db = dir.path().join("db/hookgate.db");
    let hard = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct passed in.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) },
            0
        );
        lim.rlim_max.min(1 << 20)
    };
    let served = common::Served::start_with(&config, &[("HOOKGATE_DB", db.as_os_str())], |cmd| {
        // SAFETY: only setrlimit runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
                lim.rlim_cur = 256.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
                Ok(())
            });
        }
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", served.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(soft, hard, "{line}");
    assert!(served.terminate().success());
}

/// Security review, defect 10: a pending delivery pointed into the config by rule name and
/// action index, so a reload that put another action first made a timer run that one.
#[tokio::test]
async fn a_reload_never_runs_a_scheduled_delivery_as_another_action() {
    let sink = common::sink::Sink::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config = dir.path().join("hookgate.toml");
    let with = |first: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"${{HOOKGATE_DB}}\"\n\
             [[receivers]]\nname = \"bot\"\nvendor = \"dingtalk_robot\"\npath = \"/bot\"\napp_secret = \"s\"\n\
             [[rules]]\nname = \"later\"\n{first}\
             [[rules.actions]]\nkind = \"http\"\nurl = \"{}\"\nafter = \"3s\"\n",
            sink.url("/reminder")
        )
    };
    std::fs::write(&config, with("")).unwrap();
    let served = common::Served::start(&config, &[("HOOKGATE_DB", db.as_os_str())]);
    let ts = common::now_ms().to_string();
    let sign = hookgate::crypto::robot::sign("s", &ts);
    let body = r#"{"msgtype":"text","text":{"content":"hi"},"msgId":"m-1"}"#;
    let req = format!(
        "POST /bot HTTP/1.1\r\nHost: x\r\nConnection: close\r\ntimestamp: {ts}\r\nsign: {sign}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(common::raw(served.addr, req.as_bytes()).await.status, 200);
    // Another action now comes first: index 0 is no longer the reminder.
    let other = format!(
        "[[rules.actions]]\nkind = \"http\"\nurl = \"{}\"\nafter = \"3s\"\n",
        sink.url("/other")
    );
    std::fs::write(&config, with(&other)).unwrap();
    Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .unwrap();
    let list = || {
        let out = Command::new(BIN)
            .args(["deliveries", "list", "--config"])
            .arg(&config)
            .env("HOOKGATE_DB", &db)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    common::eventually(15, "the delivery is dead", || {
        list().contains("the rule changed since this was scheduled")
    })
    .await;
    assert!(sink.received().is_empty(), "{:?}", sink.received());
    assert!(served.terminate().success());
}

/// Issue 17: the read commands need no secrets and find the store from any directory (a
/// relative store path is the config file's); `--json` prints the admin API's shapes; a
/// stored event is replayed through one rule as loaded now, and the audit trail says who.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_no_secrets_from_anywhere_and_a_replay_runs_one_rule_again() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:0"

[store]
path = "var/hookgate.db"

[[receivers]]
name = "alerts"
vendor = "webhook"
path = "/hooks/alerts"
auth = "token"
auth_header = "Authorization"
prefix = "Bearer "
secret = "${ALERTS_TOKEN}"
kind = "{{ status }}"
dedupe_key = "{{ id }}"

[[rules]]
name = "log it"
[[rules.actions]]
kind = "log"
message = "alert {{ id }}"

[[rules]]
name = "log again"
[[rules.actions]]
kind = "log"
message = "again {{ id }}"
"#,
    )
    .unwrap();
    let token = "a-long-alerts-token-0123".as_ref();
    let served = common::Served::start_with(&config, &[("ALERTS_TOKEN", token)], |c| {
        c.current_dir(elsewhere.path());
    });
    let body = r#"{"id":"a-1","status":"firing"}"#;
    let req = format!(
        "POST /hooks/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer a-long-alerts-token-0123\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(common::raw(served.addr, req.as_bytes()).await.status, 200);
    assert!(
        dir.path().join("var/hookgate.db").exists(),
        "beside the config"
    );
    // From yet another directory, without ALERTS_TOKEN.
    let run = |args: &[&str], secret: bool| {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(std::env::temp_dir())
            .env_remove("ALERTS_TOKEN")
            .env("USER", "ann");
        if secret {
            c.env("ALERTS_TOKEN", token);
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = run(&["events", "list", "--json"], false);
    assert!(ok, "{out}");
    let page: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(page["items"][0]["dedupe_key"], "a-1", "{out}");
    let id = page["items"][0]["id"].as_i64().unwrap().to_string();
    common::eventually(10, "both rules done", || {
        let (_, out) = run(&["deliveries", "list", "--status", "done", "--json"], false);
        serde_json::from_str::<serde_json::Value>(&out)
            .is_ok_and(|v| v["items"].as_array().is_some_and(|a| a.len() == 2))
    })
    .await;
    // A replay renders rules: without the secret it says which one is missing.
    let (ok, out) = run(&["events", "replay", &id, "--rule", "log again"], false);
    assert!(!ok && out.contains("ALERTS_TOKEN"), "{out}");
    let (ok, out) = run(&["events", "replay", &id, "--rule", "log again"], true);
    assert!(ok && out.contains("replay 1, 1 deliveries stored"), "{out}");
    let (ok, out) = run(&["events", "replay", &id, "--rule", "no such"], true);
    assert!(!ok && out.contains("no rule named"), "{out}");
    common::eventually(10, "the replay done", || {
        let (_, out) = run(&["deliveries", "list", "--status", "done"], false);
        out.contains("log again#0") && out.contains("(replay 1)")
    })
    .await;
    let (ok, out) = run(&["audit"], false);
    assert!(
        ok && out.contains("cli:ann") && out.contains("replay"),
        "{out}"
    );
    let (ok, out) = run(&["events", "show", &id], false);
    let shown: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        ok && shown["deliveries"].as_array().unwrap().len() == 3,
        "{out}"
    );
    assert_eq!(shown["rules"], serde_json::json!(["log it", "log again"]));
    drop(served);
}

/// Every sample under `config/examples/events/` explained against the configs it is for
/// (each with `config/examples/demo.env`, or the main example with `config/demo.env`): the
/// rules it is meant for fire and every action renders, nothing empty.
#[test]
fn every_sample_event_explains_against_its_recipe() {
    const MAIN: &str = "config/hookgate.example.toml";
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "wecom-contact-create-user.xml",
            MAIN,
            "hr",
            &["log contact changes"],
        ),
        ("dingtalk-approval-start.json", MAIN, "ding", &[]),
        ("feishu-message.json", MAIN, "lark", &[]),
        ("dingtalk-robot-text.json", MAIN, "bot", &[]),
        (
            "wecom-contact-create-user.xml",
            "wecom-contact-email",
            "contacts",
            &["mail the department on contact changes"],
        ),
        (
            "wecom-contact-delete-user.xml",
            "wecom-contact-email",
            "contacts",
            &["mail the department on contact changes"],
        ),
        (
            "wecom-contact-update-user.xml",
            "wecom-contact-email-directory",
            "contacts",
            &["mail the department's members on contact changes"],
        ),
        (
            "dingtalk-approval-start.json",
            "dingtalk-approval-group",
            "approvals",
            &["item group when an approval starts"],
        ),
        (
            "dingtalk-approval-finish.json",
            "dingtalk-approval-group",
            "approvals",
            &["close the item group when the approval finishes"],
        ),
        (
            "dingtalk-task-start.json",
            "e10-escalation",
            "approvals",
            &[
                "remind the handler after a day",
                "item group after two days",
            ],
        ),
        (
            "dingtalk-task-finish.json",
            "e10-escalation",
            "approvals",
            &["settled: call the timers off"],
        ),
        (
            "dingtalk-robot-status.json",
            "dingtalk-robot-group-messages",
            "robot",
            &["status: markdown"],
        ),
        (
            "dingtalk-robot-text.json",
            "dingtalk-robot-group-messages",
            "robot",
            &["help"],
        ),
        (
            "dingtalk-stream-user-add-org.json",
            "dingtalk-stream",
            "ding",
            &["new employee to HR"],
        ),
        (
            "dingtalk-stream-robot-text.json",
            "dingtalk-stream",
            "ding",
            &["robot acknowledges"],
        ),
        (
            "feishu-message.json",
            "feishu-ws",
            "lark",
            &["messages to tickets"],
        ),
        (
            "wecom-aibot-text.json",
            "wecom-aibot",
            "bot",
            &["answer questions"],
        ),
        (
            "wecom-aibot-enter-chat.json",
            "wecom-aibot",
            "bot",
            &["welcome", "log other events"],
        ),
        (
            "yida-create-group.json",
            "yida-group",
            "yida",
            &["创建会话群"],
        ),
        (
            "yida-update-group.json",
            "yida-group",
            "yida",
            &["更新会话群"],
        ),
        (
            "yida-group-message.json",
            "yida-group",
            "yida",
            &["发送群消息"],
        ),
        (
            "e10-item-pending.json",
            "e10-risk-group",
            "e10",
            &[
                "remind the handler a day after it was found",
                "item group two days after it was found",
            ],
        ),
        (
            "e10-item-done.json",
            "e10-risk-group",
            "e10",
            &["moved on: call the timers off"],
        ),
        (
            "jiandaoyun-data-create.json",
            "jiandaoyun-wecom-robot",
            "jdy",
            &["announce new entries"],
        ),
        (
            "alertmanager-firing.json",
            "alertmanager-dingtalk-robot",
            "alertmanager",
            &["alerts to the ops group"],
        ),
        (
            "alertmanager-resolved.json",
            "alertmanager-dingtalk-robot",
            "alertmanager",
            &["alerts to the ops group"],
        ),
    ];
    let mut unused: std::collections::BTreeSet<String> =
        std::fs::read_dir("config/examples/events")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "README.md")
            .collect();
    for (file, config, receiver, fires) in cases {
        unused.remove(*file);
        let (config, env) = if *config == MAIN {
            (MAIN.to_owned(), common::DEMO_ENV.to_owned())
        } else {
            (
                format!("config/examples/{config}.toml"),
                "config/examples/demo.env".to_owned(),
            )
        };
        let out = Command::new(BIN)
            .args([
                "explain",
                "--config",
                &config,
                "--env-file",
                &env,
                "--receiver",
                receiver,
            ])
            .arg(format!("config/examples/events/{file}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file} on {config}: {text}");
        assert!(
            text.contains(&format!("event: receiver {receiver}")),
            "{text}"
        );
        for rule in *fires {
            assert!(
                text.contains(&format!("rule \"{rule}\": FIRES")),
                "{file} on {config}: {text}"
            );
        }
        assert!(
            !text.contains("render error") && !text.contains("rendered empty"),
            "{file} on {config}: {text}"
        );
    }
    assert!(unused.is_empty(), "samples no case explains: {unused:?}");
}

/// Secrets from files (#18): `VAR_FILE` as container images take them, and systemd's
/// credentials directory; a named file that cannot be read is an error that names it.
#[test]
fn secrets_come_from_var_file_and_systemd_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"var/h.db\"\n\
         [[receivers]]\nname = \"alerts\"\nvendor = \"webhook\"\npath = \"/a\"\nauth = \"token\"\n\
         auth_header = \"Authorization\"\nprefix = \"Bearer \"\nsecret = \"${ALERTS_TOKEN}\"\n",
    )
    .unwrap();
    let secret = dir.path().join("alerts_token");
    std::fs::write(&secret, "a-long-alerts-token-0123\n").unwrap();
    let check = |envs: &[(&str, &std::ffi::OsStr)]| {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config)
            .env_remove("ALERTS_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check(&[]);
    assert!(!ok && text.contains("ALERTS_TOKEN is not set"), "{text}");
    let (ok, text) = check(&[("ALERTS_TOKEN_FILE", secret.as_os_str())]);
    assert!(ok, "{text}");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::copy(&secret, creds.join("ALERTS_TOKEN")).unwrap();
    let (ok, text) = check(&[("CREDENTIALS_DIRECTORY", creds.as_os_str())]);
    assert!(ok, "{text}");
    let missing = dir.path().join("nowhere");
    let (ok, text) = check(&[("ALERTS_TOKEN_FILE", missing.as_os_str())]);
    assert!(
        !ok && text.contains("ALERTS_TOKEN_FILE: cannot read"),
        "{text}"
    );
    assert!(text.contains("nowhere"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_in_the_background_and_on_demand_and_redaction_happens_before_storage() {
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:0"

[store]
path = "var/hookgate.db"
keep_events = "30d"
keep_deliveries = "7d"
prune_every = "1s"

[[receivers]]
name = "forms"
vendor = "webhook"
path = "/hooks/forms"
auth = "token"
auth_header = "Authorization"
prefix = "Bearer "
secret = "a-long-forms-token-01234"
dedupe_key = "{{ id }}"
redact = ["mobile", "email"]

[[rules]]
name = "note"
receiver = "forms"
[[rules.actions]]
kind = "log"
message = "form {{ id }} from {{ mobile }}"
"#,
    )
    .unwrap();
    let served = common::Served::start(&config, &[]);
    for id in ["a-1", "a-2"] {
        let body = format!(
            r#"{{"id":"{id}","name":"Ann","mobile":"13800000000","contact":{{"email":"ann@example.com"}}}}"#
        );
        let req = format!(
            "POST /hooks/forms HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer a-long-forms-token-01234\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(common::raw(served.addr, req.as_bytes()).await.status, 200);
    }
    let db = dir.path().join("var/hookgate.db");
    let sql = rusqlite::Connection::open(&db).unwrap();
    let raw: String = sql
        .query_row("SELECT raw FROM events WHERE dedupe_key = 'a-1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        !raw.contains("13800000000") && !raw.contains("ann@example.com"),
        "{raw}"
    );
    assert!(
        raw.contains(r#""mobile":"[redacted]""#) && raw.contains("Ann"),
        "{raw}"
    );
    let done = |sql: &rusqlite::Connection| -> i64 {
        sql.query_row(
            "SELECT count(*) FROM deliveries WHERE status = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    common::eventually(10, "both deliveries done", || done(&sql) == 2).await;
    // a-1 arrived 40 days ago and its delivery finished then: the background prune takes it.
    let age = |key: &str, days: i64| {
        sql.execute(
            "UPDATE events SET received_at_ms = received_at_ms - ?1 WHERE dedupe_key = ?2",
            rusqlite::params![days * DAY, key],
        )
        .unwrap();
        sql.execute(
            "UPDATE deliveries SET updated_at_ms = updated_at_ms - ?1 \
             WHERE event_id = (SELECT id FROM events WHERE dedupe_key = ?2)",
            rusqlite::params![days * DAY, key],
        )
        .unwrap();
    };
    age("a-1", 40);
    let count = |sql: &rusqlite::Connection, table: &str| -> i64 {
        sql.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    common::eventually(15, "the 40-day-old event pruned", || {
        count(&sql, "events") == 1
    })
    .await;
    assert_eq!(count(&sql, "deliveries"), 1);
    assert_eq!(served.terminate().code(), Some(0));
    // a-2's delivery finished 10 days ago: `prune` takes the delivery, keeps the event.
    age("a-2", 10);
    let out = Command::new(BIN)
        .args(["prune", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "Pruned 0 events and 1 deliveries.");
    assert_eq!((count(&sql, "events"), count(&sql, "deliveries")), (1, 0));
}

/// The newcomer's walk-through: `check` passed a rule whose recipients render empty for
/// every event (a misspelled field), which then died at run time. With sample events it
/// says so, naming the file, rule and action.
#[test]
fn check_with_sample_events_warns_of_recipients_that_render_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    let src = std::fs::read_to_string("config/examples/wecom-contact-email.toml")
        .unwrap()
        .replace("tables.department_mail[d]", "tables.department_mail[dept]");
    assert!(
        src.contains("[dept]"),
        "the example looks the department up"
    );
    std::fs::write(&config, src).unwrap();
    let sample =
        std::fs::canonicalize("config/examples/events/wecom-contact-create-user.xml").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .args(["--env-file", "config/examples/demo.env", "--events"])
        .arg(format!("contacts={}", sample.display()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warnings, not errors: {text}");
    assert!(
        text.contains("wecom-contact-create-user.xml: rule \"mail the department on contact changes\" action 0 (email)")
            && text.contains("the mail would have no recipients"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            "config/examples/wecom-contact-email.toml",
        ])
        .args(["--env-file", "config/examples/demo.env", "--events"])
        .arg(format!("contacts={}", sample.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("The sample events render every firing action."),
        "{text}"
    );
}
