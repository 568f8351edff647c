//! Email against a real SMTP server (aiosmtpd on 127.0.0.1): the seed recipe's config from
//! `config/examples/` end to end, STARTTLS with AUTH, a refused login going dead, and a mail
//! server outage that delays mail without losing it.

mod common;

use common::smtp::SmtpServer;
use common::{eventually, eventually_or, now_ms, start, start_file, wecom_post};
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::DeliveryStatus;

const TOKEN: &str = "contactToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const CORP: &str = "ww8f3c1e2d4b5a6978";

fn envelope() -> Envelope {
    Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    )
}

fn contact(change: &str, user: &str, departments: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
         <ChangeType>{change}</ChangeType><UserID><![CDATA[{user}]]></UserID><Name><![CDATA[李四]]></Name>\
         <Department><![CDATA[{departments}]]></Department></xml>"
    )
}

async fn callback(srv: &common::TestServer, path: &str, xml: &str) {
    let ts = (now_ms() / 1000).to_string();
    let (q, body) = wecom_post(&envelope(), CORP, xml, &ts);
    let r = srv.post(&format!("{path}?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn seed_recipe_mails_each_member_of_the_departments() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), &[]);
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let src = std::fs::read_to_string("config/examples/wecom-contact-email.toml").unwrap();
    let srv = start_file(
        &src,
        &[
            ("WECOM_CONTACT_TOKEN", TOKEN),
            ("WECOM_CONTACT_AES_KEY", KEY),
            ("WECOM_CORP_ID", CORP),
            ("SMTP_URL", &url),
            ("DEPT_1_MAIL", "boss@example.com"),
            ("DEPT_2_MAIL", "hr-a@example.com, hr-b@example.com"),
        ],
    )
    .await;
    // The vendor's retries change nothing: one event, one delivery, three mails.
    for _ in 0..3 {
        callback(
            &srv,
            "/hooks/wecom/contacts",
            &contact("create_user", "lisi", "1,2"),
        )
        .await;
    }
    eventually(20, "three mails", || smtp.messages().len() == 3).await;
    eventually(10, "delivery done", || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    let d = srv.deliveries();
    assert_eq!(d.len(), 1);
    let mails = smtp.messages();
    let mut to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    to.sort();
    assert_eq!(
        to,
        ["boss@example.com", "hr-a@example.com", "hr-b@example.com"]
    );
    for (n, m) in mails.iter().enumerate() {
        assert_eq!(m.subject, "新增成员：李四");
        assert_eq!(
            m.text.as_deref().map(str::trim_end),
            Some("新增时间：2023-11-15 06:15:00\n新增成员 ID：lisi")
        );
        assert_eq!(m.rcpt_tos.len(), 1, "one message per recipient");
        assert_eq!(m.mail_from, "it-bot@example.com");
        assert_eq!(
            m.message_id.as_deref(),
            Some(format!("<hookgate.{}.{n}@example.com>", d[0].id).as_str())
        );
    }

    // delete_user carries no department: department 1 is told, with the delete template.
    callback(
        &srv,
        "/hooks/wecom/contacts",
        &contact("delete_user", "wangwu", ""),
    )
    .await;
    eventually(20, "the delete mail", || smtp.messages().len() == 4).await;
    let last = smtp.messages().pop().unwrap();
    assert_eq!(
        (last.to.as_str(), last.subject.as_str()),
        ("boss@example.com", "删除成员：李四")
    );
    assert!(last.text.unwrap().contains("删除成员 ID：wangwu"));
    srv.stop().await;
}

fn mail_config(url: &str, extra: &str) -> String {
    format!(
        r#"
[delivery]
first_retry = 1
max_backoff = 1

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[connections.mail]
kind = "smtp"
url = "{url}"
from = "Bot <bot@example.com>"
{extra}

[[rules]]
name = "mail"
[[rules.actions]]
kind = "email"
via = "mail"
to = ["it@example.com"]
cc = "{{{{ UserID }}}}@example.com"
subject = "成员 {{{{ UserID }}}}"
body = "{{{{ Name }}}}"
html = "<b>{{{{ Name }}}}</b>"
"#
    )
}

#[tokio::test]
async fn starttls_and_auth_are_used_and_a_refused_login_goes_dead() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), &["--starttls", "--auth", "bot:s3cret"]);
    let ca = format!(
        "ca_file = {:?}\ntimeout = 5",
        smtp.cert().display().to_string()
    );
    let good = format!("smtp://bot:s3cret@localhost:{}?tls=required", smtp.port);
    let srv = start("", &mail_config(&good, &ca)).await;
    callback(&srv, "/wecom", &contact("create_user", "lisi", "1")).await;
    eventually(20, "the mail", || smtp.messages().len() == 1).await;
    let m = &smtp.messages()[0];
    assert!(m.tls && m.authenticated, "{m:?}");
    assert_eq!(
        (m.to.as_str(), m.cc.as_str()),
        ("it@example.com", "lisi@example.com")
    );
    assert_eq!(m.html.as_deref().map(str::trim_end), Some("<b>李四</b>"));
    assert_eq!(m.text.as_deref().map(str::trim_end), Some("李四"));
    srv.stop().await;

    // A wrong password is a permanent 535: dead at once, the reason kept, no password shown.
    let bad = format!("smtp://bot:wrong-pass@localhost:{}?tls=required", smtp.port);
    let srv = start("", &mail_config(&bad, &ca)).await;
    callback(&srv, "/wecom", &contact("create_user", "lisi", "1")).await;
    eventually_or(
        20,
        "dead",
        || {
            srv.deliveries()
                .first()
                .is_some_and(|d| d.status == DeliveryStatus::Dead)
        },
        || format!("{:?}", srv.deliveries()),
    )
    .await;
    let err = srv.deliveries()[0].last_error.clone().unwrap();
    assert!(
        err.contains("535") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    assert!(!err.contains("wrong-pass"), "{err}");
    assert_eq!(smtp.messages().len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_mail_server_outage_delays_mail_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, start hookgate against it while nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let srv = start("", &mail_config(&format!("smtp://127.0.0.1:{port}"), "")).await;
    for user in ["a", "b", "c"] {
        callback(&srv, "/wecom", &contact("create_user", user, "1")).await;
    }
    eventually(10, "every delivery failed once", || {
        let d = srv.deliveries();
        d.len() == 3 && d.iter().all(|d| d.last_error.is_some())
    })
    .await;
    assert!(
        srv.deliveries()
            .iter()
            .all(|d| d.status != DeliveryStatus::Dead)
    );
    // The reason names the server and the cause (it was "smtp: Connection error").
    let err = srv.deliveries()[0].last_error.clone().unwrap();
    assert!(
        err.starts_with(&format!("smtp 127.0.0.1:{port}: ")) && err.contains("refused"),
        "{err}"
    );
    let smtp = SmtpServer::start(dir.path(), &["--port", &port.to_string()]);
    eventually(20, "all three mails after the outage", || {
        smtp.messages().len() == 3
    })
    .await;
    let mut subjects: Vec<String> = smtp.messages().into_iter().map(|m| m.subject).collect();
    subjects.sort();
    assert_eq!(subjects, ["成员 a", "成员 b", "成员 c"]);
    srv.stop().await;
}

#[tokio::test]
async fn seed_recipe_with_the_wecom_directory_mails_every_member() {
    use common::apps::{AppState, Apps};
    use serde_json::json;
    let apps = Apps::start(AppState {
        corp_id: CORP.into(),
        secret: "contacts-secret".into(),
        departments: [
            (
                "1".to_owned(),
                vec![json!({"userid": "boss", "name": "老板", "email": "boss@example.com"})],
            ),
            (
                "2".to_owned(),
                vec![
                    json!({"userid": "zhangsan", "name": "张三", "email": "zhangsan@example.com"}),
                    json!({"userid": "wangwu", "name": "王五", "biz_mail": "wangwu@corp.example.com"}),
                    // Hidden from apps made after 2022-06-20: logged, not mailed.
                    json!({"userid": "lisi", "name": "李四", "email": ""}),
                ],
            ),
        ]
        .into(),
        ..AppState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), &[]);
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let base = apps.base();
    let src =
        std::fs::read_to_string("config/examples/wecom-contact-email-directory.toml").unwrap();
    let srv = start_file(
        &src,
        &[
            ("WECOM_CONTACT_TOKEN", TOKEN),
            ("WECOM_CONTACT_AES_KEY", KEY),
            ("WECOM_CORP_ID", CORP),
            ("WECOM_APP_SECRET", "contacts-secret"),
            ("WECOM_API_BASE", &base),
            ("SMTP_URL", &url),
        ],
    )
    .await;
    callback(
        &srv,
        "/hooks/wecom/contacts",
        &contact("create_user", "lisi", "1,2"),
    )
    .await;
    eventually(20, "three mails", || smtp.messages().len() == 3).await;
    let mut to: Vec<String> = smtp.messages().into_iter().map(|m| m.to).collect();
    to.sort();
    assert_eq!(
        to,
        [
            "boss@example.com",
            "wangwu@corp.example.com",
            "zhangsan@example.com"
        ]
    );
    assert!(
        smtp.messages()
            .iter()
            .all(|m| m.subject == "新增成员：李四")
    );
    eventually(10, "delivery done", || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    assert_eq!(apps.calls("/cgi-bin/gettoken"), 1);
    srv.stop().await;
}
