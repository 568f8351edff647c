//! `sql` lookups against real databases (a scratch MariaDB from `tests/mysql/start.sh`, the
//! scratch PostgreSQL): parameters are bound, never written into the statement (a field full
//! of quotes and a `DROP` comes back as data and drops nothing); the rows are the next
//! action's `steps`; a statement that writes is refused unless the action says `write`.

mod common;

use common::{eventually, start};
use hookgate::store::DeliveryStatus;

const HOSTILE: &str = r#"o'brien"; DROP TABLE people; -- \' "#;

/// A webhook receiver (token auth) and one rule: `actions` after a sink for the result.
fn config(connection: &str, actions: &str) -> String {
    format!(
        r#"
[delivery]
first_retry = 1
max_backoff = 1

[outbound]
allow_hosts = ["127.0.0.1"]

[connections.db]
{connection}

[[receivers]]
name = "in"
vendor = "webhook"
path = "/in"
auth = "token"
auth_header = "X-Token"
secret = "t"

[[rules]]
name = "look up"
receiver = "in"
{actions}
"#
    )
}

async fn post(srv: &common::TestServer, body: serde_json::Value) {
    let r = srv
        .post(
            "/in",
            &[("X-Token", "t"), ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn settled(srv: &common::TestServer, n: usize) -> Vec<hookgate::store::DeliveryRow> {
    eventually(15, "every delivery settled", || {
        let d = srv.deliveries();
        d.len() == n
            && d.iter().all(|d| {
                matches!(
                    d.status,
                    DeliveryStatus::Done | DeliveryStatus::Dead | DeliveryStatus::Skipped
                )
            })
    })
    .await;
    let mut d = srv.deliveries();
    d.sort_by_key(|d| (d.event_id, d.action));
    d
}

#[tokio::test]
async fn a_mariadb_lookup_binds_hostile_text_as_data_and_refuses_an_unannounced_write() {
    let (db, url) = common::mysql::fresh("lookup");
    common::mysql::sql(
        Some(&db),
        "CREATE TABLE people (name VARCHAR(100), email VARCHAR(100), age INT);
         INSERT INTO people VALUES ('lisi', 'lisi@example.com', 30), ('张三', 'zs@example.com', NULL);",
    );
    let sink = common::sink::Sink::start(&[]).await;
    let actions = format!(
        r#"
[[rules.actions]]
kind = "sql"
via = "db"
query = """
select :who as who, email, age from people where name = :who or name = :other
"""
params = {{ who = "{{{{ who }}}}", other = "张三" }}
max_rows = 5
as = "q"
[[rules.actions]]
kind = "http"
url = "{}"
body = "{{{{ steps.q | tojson }}}}"
"#,
        sink.url("/rows")
    );
    let connection = format!("kind = \"mysql\"\nurl = \"{url}\"");
    let srv = start("", &config(&connection, &actions)).await;
    post(&srv, serde_json::json!({ "who": HOSTILE })).await;
    post(&srv, serde_json::json!({ "who": "lisi" })).await;
    let d = settled(&srv, 4).await;
    assert!(d.iter().all(|d| d.status == DeliveryStatus::Done), "{d:#?}");
    let bodies: Vec<serde_json::Value> = sink
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let hostile = bodies
        .iter()
        .find(|b| {
            b["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["who"] == HOSTILE)
        })
        .unwrap_or_else(|| panic!("{bodies:#?}"));
    assert_eq!(hostile["count"], 1, "only 张三 matched: {hostile}");
    assert_eq!(hostile["rows"][0]["email"], "zs@example.com");
    assert_eq!(hostile["rows"][0]["age"], serde_json::Value::Null);
    let lisi = bodies
        .iter()
        .find(|b| b["count"] == 2)
        .unwrap_or_else(|| panic!("{bodies:#?}"));
    assert!(
        lisi["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["email"] == "lisi@example.com" && r["age"] == 30)
    );
    assert_eq!(
        common::mysql::sql(Some(&db), "SELECT count(*) FROM people"),
        "2",
        "nothing dropped"
    );
    srv.stop().await;

    // A write without `write = true` is refused by the read-only transaction.
    let insert = r#"
[[rules.actions]]
kind = "sql"
via = "db"
query = "insert into people (name) values (:who)"
params = { who = "{{ who }}" }
"#;
    let srv = start("", &config(&connection, insert)).await;
    post(&srv, serde_json::json!({ "who": "wangwu" })).await;
    let d = settled(&srv, 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Dead, "{d:#?}");
    assert!(
        d[0].last_error.as_deref().unwrap().contains("READ ONLY"),
        "{d:#?}"
    );
    srv.stop().await;
    let write = insert.replace("params =", "write = true\nas = \"w\"\nparams =");
    let srv = start("", &config(&connection, &write)).await;
    post(&srv, serde_json::json!({ "who": "wangwu" })).await;
    let d = settled(&srv, 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Done, "{d:#?}");
    assert_eq!(
        common::mysql::sql(
            Some(&db),
            "SELECT count(*) FROM people WHERE name = 'wangwu'"
        ),
        "1"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_postgres_lookup_binds_typed_parameters_and_hostile_text() {
    let url = common::pg::fresh_url("lookup");
    common::pg::psql(&format!(
        "SET search_path = {}; CREATE TABLE items (id INT, title TEXT, status TEXT, data JSONB);
         INSERT INTO items VALUES (7, '机房整改', '已处理', '{{\"owner\":\"lisi\"}}');",
        url.rsplit("%3D").next().unwrap()
    ));
    let sink = common::sink::Sink::start(&[]).await;
    let actions = format!(
        r#"
[[rules.actions]]
kind = "sql"
via = "db"
query = "select id, title, status, data, :note::text as note from items where id = :id"
params = {{ id = "{{{{ id }}}}", note = "{{{{ note }}}}" }}
as = "item"
[[rules.actions]]
kind = "http"
if = "steps.item.rows[0].status == '已处理'"
url = "{}"
body = "{{{{ steps.item.rows[0] | tojson }}}}"
"#,
        sink.url("/item")
    );
    let connection = format!("kind = \"postgres\"\nurl = \"{url}\"");
    let srv = start("", &config(&connection, &actions)).await;
    post(&srv, serde_json::json!({ "id": 7, "note": HOSTILE })).await;
    post(&srv, serde_json::json!({ "id": "7 or 1=1", "note": "x" })).await;
    let d = settled(&srv, 4).await;
    let statuses: Vec<_> = d.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [
            DeliveryStatus::Done,
            DeliveryStatus::Done,
            DeliveryStatus::Dead,
            DeliveryStatus::Dead
        ],
        "{d:#?}"
    );
    assert!(
        d[2].last_error
            .as_deref()
            .unwrap()
            .contains(":id = \"7 or 1=1\" is not an integer"),
        "{d:#?}"
    );
    let row: serde_json::Value = serde_json::from_str(&sink.received()[0].body).unwrap();
    assert_eq!(row["id"], 7);
    assert_eq!(row["title"], "机房整改");
    assert_eq!(row["data"]["owner"], "lisi");
    assert_eq!(row["note"], HOSTILE);
    srv.stop().await;
}

/// Seed 004 as written (`config/examples/wecom-contact-email-mysql.toml`): the template row
/// from MariaDB, the department's members from the fake WeCom directory, one mail each
/// through the SMTP server; a change type without a row sends nothing.
#[tokio::test]
async fn seed_004_reads_its_mail_template_from_mariadb_and_mails_the_department() {
    use common::apps::{AppState, Apps};
    use common::smtp::SmtpServer;
    use hookgate::crypto::envelope::{AesKey, Envelope};
    use serde_json::json;
    const TOKEN: &str = "contactToken";
    const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const CORP: &str = "ww8f3c1e2d4b5a6978";
    let (db, db_url) = common::mysql::fresh("seed4");
    common::mysql::sql(
        Some(&db),
        "CREATE TABLE ipaas_email_template (app VARCHAR(64), change_type VARCHAR(64),
                                            subject VARCHAR(255), email_body TEXT);
         INSERT INTO ipaas_email_template VALUES
           ('tencent-wechat', 'create_user', '新增成员：{name}',
            '新增时间：{createtime}\\n 新增成员 ID：{userid}'),
           ('other-app', 'update_user', 'not ours', 'not ours');",
    );
    let apps = Apps::start(AppState {
        corp_id: CORP.into(),
        secret: "contacts-secret".into(),
        departments: [(
            "2".to_owned(),
            vec![
                json!({"userid": "zhangsan", "name": "张三", "email": "zhangsan@example.com"}),
                json!({"userid": "wangwu", "name": "王五", "email": "wangwu@example.com"}),
            ],
        )]
        .into(),
        ..AppState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), &[]);
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let base = apps.base();
    let src = std::fs::read_to_string("config/examples/wecom-contact-email-mysql.toml").unwrap();
    let srv = common::start_file(
        &src,
        &[
            ("WECOM_CONTACT_TOKEN", TOKEN),
            ("WECOM_CONTACT_AES_KEY", KEY),
            ("WECOM_CORP_ID", CORP),
            ("WECOM_APP_SECRET", "contacts-secret"),
            ("WECOM_API_BASE", &base),
            ("IPAAS_DB_URL", &db_url),
            ("SMTP_URL", &smtp_url),
        ],
    )
    .await;
    let env = Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    );
    for (change, user) in [("create_user", "lisi"), ("update_user", "zhaoliu")] {
        let xml = format!(
            "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
             <ChangeType>{change}</ChangeType><UserID><![CDATA[{user}]]></UserID><Name><![CDATA[李四]]></Name>\
             <Department><![CDATA[2]]></Department></xml>"
        );
        let ts = (common::now_ms() / 1000).to_string();
        let (q, body) = common::wecom_post(&env, CORP, &xml, &ts);
        let r = srv
            .post(&format!("/hooks/wecom/contacts?{q}"), &[], body.as_bytes())
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let d = settled(&srv, 4).await;
    let statuses: Vec<_> = d.iter().map(|d| (d.kind.as_str(), d.status)).collect();
    assert_eq!(
        statuses,
        [
            ("sql", DeliveryStatus::Done),
            ("email", DeliveryStatus::Done),
            ("sql", DeliveryStatus::Done),
            ("email", DeliveryStatus::Skipped),
        ],
        "{d:#?}"
    );
    let mut mails = smtp.messages();
    mails.sort_by(|a, b| a.to.cmp(&b.to));
    let to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(to, ["wangwu@example.com", "zhangsan@example.com"]);
    for m in &mails {
        assert_eq!(m.subject, "新增成员：李四");
        let text = m.text.clone().unwrap_or_default();
        assert!(
            text.contains("新增时间：2023-11-15 06:15:00") && text.contains("新增成员 ID：lisi"),
            "{text}"
        );
    }
    srv.stop().await;
}

/// `hookgate explain --live` runs the seed 004 lookup against MariaDB and renders the mail
/// from the row; without `--live` the row is a placeholder. Nothing is sent either way.
#[test]
fn explain_live_runs_the_lookup_and_renders_the_mail_from_its_answer() {
    let (db, db_url) = common::mysql::fresh("explain");
    common::mysql::sql(
        Some(&db),
        "CREATE TABLE ipaas_email_template (app VARCHAR(64), change_type VARCHAR(64), subject VARCHAR(255), email_body TEXT);
         INSERT INTO ipaas_email_template VALUES ('tencent-wechat', 'create_user', '新增成员：{name}', '新增成员 ID：{userid}');",
    );
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.xml");
    std::fs::write(
        &event,
        "<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000100</CreateTime>\
         <MsgType>event</MsgType><Event>change_contact</Event><ChangeType>create_user</ChangeType>\
         <UserID>lisi</UserID><Name>李四</Name><Department>2</Department></xml>",
    )
    .unwrap();
    let run = |live: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
        cmd.args([
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
        .env("IPAAS_DB_URL", &db_url)
        .env("SMTP_URL", "smtp://127.0.0.1:1");
        if live {
            cmd.arg("--live");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(true);
    for want in [
        "answered (live):",
        "\"subject\": \"新增成员：{name}\"",
        "action 1 (email, if \"steps.tpl.count > 0\": true now):",
        "subject: 新增成员：李四",
        "新增成员 ID：lisi",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let text = run(false);
    assert!(
        !text.contains("answered (live)") && text.contains("⟨steps.tpl.rows[0].subject⟩"),
        "{text}"
    );
}
