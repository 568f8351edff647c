//! Robot actions against the local fake vendor APIs (tests/common/vendors.rs): DingTalk
//! 加签 and every message type, WeCom text/news/image/file (upload first), Feishu signed
//! post and card; errcodes in 200 answers classified (wrong secret dead, busy retried),
//! each webhook's 20-a-minute budget kept (the rest wait, none dropped), and a throttle
//! answer pausing the webhook.

mod common;

use common::vendors::{State, Vendors};
use common::{eventually_or, now_ms, start, wecom_post};
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::DeliveryStatus;

const TOKEN: &str = "robotToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const CORP: &str = "ww8f3c1e2d4b5a6978";

fn receiver() -> String {
    receiver_with("")
}

/// The receiver, with the fakes' address allow-listed and more `[outbound]` keys.
fn receiver_with(outbound: &str) -> String {
    format!(
        r#"
[delivery]
first_retry = 1
max_backoff = 1

[outbound]
allow_hosts = ["127.0.0.1"]
{outbound}

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"
"#
    )
}

async fn callback(srv: &common::TestServer, user: &str) {
    callback_named(srv, user, "张三").await;
}

async fn callback_named(srv: &common::TestServer, user: &str, name: &str) {
    let env = Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    );
    let xml = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000100</CreateTime>\
         <MsgType>event</MsgType><Event>change_contact</Event><ChangeType>create_user</ChangeType>\
         <UserID>{user}</UserID><Name>{name}</Name><Mobile>13800000000</Mobile></xml>"
    );
    let (q, body) = wecom_post(&env, CORP, &xml, &(now_ms() / 1000).to_string());
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The fake WeCom group robot (key k1) and its webhook.
async fn wecom_robot() -> (Vendors, String) {
    let vendors = Vendors::start(State {
        wecom: vec!["k1".into()],
        ..State::default()
    })
    .await;
    let webhook = vendors.url("/cgi-bin/webhook/send?key=k1");
    (vendors, webhook)
}

fn statuses(srv: &common::TestServer) -> Vec<DeliveryStatus> {
    srv.deliveries().iter().map(|d| d.status).collect()
}

async fn all_done(srv: &common::TestServer, n: usize) {
    eventually_or(
        15,
        "all deliveries done",
        || {
            let d = srv.deliveries();
            d.len() == n && d.iter().all(|d| d.status == DeliveryStatus::Done)
        },
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
}

#[tokio::test]
async fn dingtalk_signed_messages_of_every_type() {
    let vendors = Vendors::start(State {
        dingtalk: [("tok1".into(), Some("SECabc".into()))].into(),
        ..State::default()
    })
    .await;
    let webhook = vendors.url("/robot/send?access_token=tok1");
    let rules = format!(
        r####"
[[rules]]
name = "ding"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{webhook}"
secret = "SECabc"
message = {{ msgtype = "text", text = {{ content = "新成员 {{{{ Name }}}}" }}, at = {{ atMobiles = ["{{{{ Mobile }}}}"], isAtAll = false }} }}
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{webhook}"
secret = "SECabc"
message = {{ msgtype = "markdown", markdown = {{ title = "成员变更", text = "### {{{{ Name }}}}\n- ID: {{{{ UserID }}}}" }} }}
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{webhook}"
secret = "SECabc"
message = {{ msgtype = "link", link = {{ title = "t", text = "x", messageUrl = "https://example.com/u/{{{{ UserID }}}}", picUrl = "" }} }}
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{webhook}"
secret = "SECabc"
message = {{ msgtype = "actionCard", actionCard = {{ title = "t", text = "x", btnOrientation = "1", btns = [{{ title = "查看", actionURL = "https://example.com/a" }}, {{ title = "忽略", actionURL = "https://example.com/b" }}] }} }}
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{webhook}"
secret = "SECabc"
message = {{ msgtype = "actionCard", actionCard = {{ title = "t", text = "x", singleTitle = "阅读全文", singleURL = "https://example.com" }} }}
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{webhook}"
secret = "SECabc"
message = {{ msgtype = "feedCard", feedCard = {{ links = [{{ title = "a", messageURL = "https://example.com/1", picURL = "https://example.com/1.png" }}] }} }}
"####
    );
    let srv = start("", &format!("{}{rules}", receiver())).await;
    callback(&srv, "zhangsan").await;
    all_done(&srv, 6).await;
    let got = vendors.accepted();
    assert_eq!(got.len(), 6);
    let text = got.iter().find(|(_, _, m)| m["msgtype"] == "text").unwrap();
    assert_eq!(text.2["text"]["content"], "新成员 张三");
    assert_eq!(text.2["at"]["atMobiles"][0], "13800000000");
    assert_eq!(text.2["at"]["isAtAll"], false);
    let md = got
        .iter()
        .find(|(_, _, m)| m["msgtype"] == "markdown")
        .unwrap();
    assert_eq!(md.2["markdown"]["text"], "### 张三\n- ID: zhangsan");
    srv.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_dead_and_busy_is_retried() {
    let vendors = Vendors::start(State {
        dingtalk: [
            ("tok1".into(), Some("SECright".into())),
            ("busy".into(), None),
        ]
        .into(),
        scripted: [("busy".into(), [-1].into())].into(),
        ..State::default()
    })
    .await;
    let rules = format!(
        r#"
[[rules]]
name = "wrong secret"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{}"
secret = "SECwrong"
message = {{ msgtype = "text", text = {{ content = "x" }} }}
[[rules]]
name = "busy"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{}"
message = {{ msgtype = "text", text = {{ content = "y" }} }}
"#,
        vendors.url("/robot/send?access_token=tok1"),
        vendors.url("/robot/send?access_token=busy")
    );
    let srv = start("", &format!("{}{rules}", receiver())).await;
    callback(&srv, "lisi").await;
    eventually_or(
        15,
        "dead and done",
        || {
            let d = srv.deliveries();
            d.len() == 2
                && d.iter()
                    .any(|d| d.rule == "wrong secret" && d.status == DeliveryStatus::Dead)
                && d.iter()
                    .any(|d| d.rule == "busy" && d.status == DeliveryStatus::Done)
        },
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
    let d = srv.deliveries();
    let dead = d.iter().find(|d| d.rule == "wrong secret").unwrap();
    assert!(
        dead.last_error.as_deref().unwrap().contains("310000"),
        "{dead:?}"
    );
    assert!(!dead.last_error.as_deref().unwrap().contains("SECwrong"));
    let busy = d.iter().find(|d| d.rule == "busy").unwrap();
    assert_eq!(busy.attempts, 2, "-1 (busy) is retried");
    srv.stop().await;
}

#[tokio::test]
async fn each_webhook_keeps_to_twenty_a_minute_and_the_rest_wait() {
    let vendors = Vendors::start(State {
        wecom: vec!["k1".into()],
        ..State::default()
    })
    .await;
    let rules = format!(
        r#"
[[rules]]
name = "wecom"
[[rules.actions]]
kind = "wecom_robot"
webhook = "{}"
message = {{ msgtype = "text", text = {{ content = "{{{{ UserID }}}}", mentioned_list = ["{{{{ UserID }}}}"] }} }}
"#,
        vendors.url("/cgi-bin/webhook/send?key=k1")
    );
    let srv = start("", &format!("{}{rules}", receiver())).await;
    for i in 0..25 {
        callback(&srv, &format!("u{i}")).await;
    }
    eventually_or(
        15,
        "20 sent, 5 tried and waiting",
        || {
            let d = srv.deliveries();
            let waiting = d.iter().filter(|d| {
                d.status == DeliveryStatus::Pending && d.next_attempt_at_ms > d.created_at_ms
            });
            d.iter()
                .filter(|d| d.status == DeliveryStatus::Done)
                .count()
                == 20
                && waiting.count() == 5
        },
        || format!("{:?}", statuses(&srv)),
    )
    .await;
    // The vendor never had to refuse: the budget is kept on our side.
    assert_eq!(vendors.accepted().len(), 20);
    assert!(vendors.answers().iter().all(|(_, code)| *code == 0));
    let now = now_ms();
    for d in srv
        .deliveries()
        .iter()
        .filter(|d| d.status == DeliveryStatus::Pending)
    {
        assert_eq!(
            d.attempts, 0,
            "waiting for the budget is not a failed attempt"
        );
        assert!(
            d.next_attempt_at_ms > now && d.next_attempt_at_ms <= now + 61_000,
            "{d:?}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_throttle_answer_pauses_the_webhook() {
    let vendors = Vendors::start(State {
        dingtalk: [("tok1".into(), None)].into(),
        per_minute: 2,
        ..State::default()
    })
    .await;
    let rules = format!(
        r#"
[[rules]]
name = "ding"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{}"
message = {{ msgtype = "text", text = {{ content = "{{{{ UserID }}}}" }} }}
"#,
        vendors.url("/robot/send?access_token=tok1")
    );
    let srv = start("", &format!("{}{rules}", receiver())).await;
    for i in 0..5 {
        callback(&srv, &format!("u{i}")).await;
    }
    eventually_or(
        15,
        "two sent, the rest paused",
        || {
            let s = statuses(&srv);
            s.iter().filter(|s| **s == DeliveryStatus::Done).count() == 2
                && s.iter().filter(|s| **s == DeliveryStatus::Pending).count() == 3
                && vendors.answers().iter().any(|(_, c)| *c == 130101)
        },
        || format!("{:?} {:?}", statuses(&srv), vendors.answers()),
    )
    .await;
    // After 130101 the webhook rests for 10 minutes: nothing more is sent to it (sends
    // already in flight when the vendor began refusing may also get 130101).
    let seen = vendors.answers().len();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(vendors.answers().len(), seen, "{:?}", vendors.answers());
    let now = now_ms();
    for d in srv
        .deliveries()
        .iter()
        .filter(|d| d.status == DeliveryStatus::Pending)
    {
        assert!(d.next_attempt_at_ms > now + 500_000, "{d:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn wecom_images_files_and_news() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("logo.png");
    std::fs::write(&image, b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    let report = dir.path().join("报告.pdf");
    std::fs::write(&report, b"%PDF-1.4 report body").unwrap();
    let (vendors, webhook) = wecom_robot().await;
    let rules = format!(
        r#"
[[rules]]
name = "wecom"
[[rules.actions]]
kind = "wecom_robot"
webhook = "{webhook}"
message = {{ msgtype = "image", image = {{ path = "{}" }} }}
[[rules.actions]]
kind = "wecom_robot"
webhook = "{webhook}"
message = {{ msgtype = "file", file = {{ path = "{}" }} }}
[[rules.actions]]
kind = "wecom_robot"
webhook = "{webhook}"
message = {{ msgtype = "news", news = {{ articles = [{{ title = "{{{{ Name }}}} 入职", url = "https://example.com", picurl = "" }}] }} }}
[[rules.actions]]
kind = "wecom_robot"
webhook = "{webhook}"
message = {{ msgtype = "markdown", markdown = {{ content = "**{{{{ Name }}}}**" }} }}
"#,
        image.display(),
        report.display()
    );
    let media = format!("media_dir = {:?}", dir.path().display().to_string());
    let srv = start("", &format!("{}{rules}", receiver_with(&media))).await;
    callback(&srv, "zhangsan").await;
    all_done(&srv, 4).await;
    let got = vendors.accepted();
    let file = got.iter().find(|(_, _, m)| m["msgtype"] == "file").unwrap();
    let media_id = file.2["file"]["media_id"].as_str().unwrap();
    let uploaded = vendors.state.lock().unwrap().media[media_id].clone();
    assert_eq!(uploaded, b"%PDF-1.4 report body");
    let news = got.iter().find(|(_, _, m)| m["msgtype"] == "news").unwrap();
    assert_eq!(news.2["news"]["articles"][0]["title"], "张三 入职");
    assert!(got.iter().any(|(_, _, m)| m["msgtype"] == "image"));
    srv.stop().await;
}

#[tokio::test]
async fn feishu_signed_post_and_card() {
    let vendors = Vendors::start(State {
        feishu: [("hook1".into(), Some("fs-secret".into()))].into(),
        ..State::default()
    })
    .await;
    let webhook = vendors.url("/open-apis/bot/v2/hook/hook1");
    let rules = format!(
        r#"
[[rules]]
name = "lark"
[[rules.actions]]
kind = "feishu_robot"
webhook = "{webhook}"
secret = "fs-secret"
message = {{ msg_type = "post", content = {{ post = {{ zh_cn = {{ title = "成员变更", content = [[{{ tag = "text", text = "{{{{ Name }}}} 加入" }}]] }} }} }} }}
[[rules.actions]]
kind = "feishu_robot"
webhook = "{webhook}"
secret = "fs-secret"
message = {{ msg_type = "interactive", card = {{ header = {{ title = {{ tag = "plain_text", content = "{{{{ UserID }}}}" }} }}, elements = [] }} }}
"#
    );
    let srv = start("", &format!("{}{rules}", receiver())).await;
    callback(&srv, "zhangsan").await;
    all_done(&srv, 2).await;
    let got = vendors.accepted();
    let post = got
        .iter()
        .find(|(_, _, m)| m["msg_type"] == "post")
        .unwrap();
    assert_eq!(
        post.2["content"]["post"]["zh_cn"]["content"][0][0]["text"],
        "张三 加入"
    );
    srv.stop().await;
}

/// Security review, defect 2: an event field chose the file uploaded (/proc/self/environ went
/// to the robot) and the host a webhook went to (an internal URL).
#[tokio::test]
async fn event_data_chooses_no_file_and_no_host() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logo.png"), b"png").unwrap();
    let (vendors, webhook) = wecom_robot().await;
    let rules = format!(
        r#"
[[rules]]
name = "file"
[[rules.actions]]
kind = "wecom_robot"
webhook = "{webhook}"
message = {{ msgtype = "file", file = {{ path = "{{{{ Name }}}}" }} }}

[[rules]]
name = "host"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{{{{ UserID }}}}"
message = {{ msgtype = "text", text = {{ content = "hi" }} }}
"#
    );
    let media = format!("media_dir = {:?}", dir.path().display().to_string());
    let srv = start("", &format!("{}{rules}", receiver_with(&media))).await;
    let internal = "http://169.254.169.254/latest/meta-data";
    callback_named(&srv, internal, "../../../../../../proc/self/environ").await;
    eventually_or(
        10,
        "both refused",
        || statuses(&srv) == [DeliveryStatus::Dead, DeliveryStatus::Dead],
        || format!("{:?}", srv.deliveries()),
    )
    .await;
    let errors: Vec<String> = srv
        .deliveries()
        .iter()
        .map(|d| d.last_error.clone().unwrap_or_default())
        .collect();
    assert!(errors.iter().any(|e| e.contains("\"..\"")), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not a dingtalk_robot robot host")),
        "{errors:?}"
    );
    assert!(vendors.accepted().is_empty());
    assert!(vendors.state.lock().unwrap().media.is_empty());
    srv.stop().await;
}
