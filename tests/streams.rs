//! Stream receivers against local fakes of the vendors' gateways (tests/common/streams.rs):
//! events stored and routed by the same rules as callbacks, acknowledged only after the
//! commit, a store outage answered `LATER` so the redelivery is stored once, a silent socket
//! replaced, `disconnect` handled make-before-break without losing a message, refused
//! credentials reported instead of retried; Feishu fragments, pongs and limits; a WeCom bot
//! held by exactly one replica.

mod common;

use std::time::Duration;

use common::sink::Sink;
use common::streams::{DingFake, FeishuFake, SERVICE_ID, WecomFake};
use common::vendors::{State, Vendors};
use common::{TestServer, eventually_or, start_file};
use futures_util::SinkExt;
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::DeliveryStatus;
use hookgate::stream::feishu::Frame;
use serde_json::{Value, json};

const DING_AES: &str = "1234567890123456789012345678901234567890123";

fn ding_config(fake: &DingFake, secret: &str, rules: &str) -> String {
    format!(
        r#"{}
[[receivers]]
name = "ding"
vendor = "dingtalk_stream"
client_id = "ding-client"
client_secret = "{secret}"
topics = ["events", "robot_messages"]
api_base = "{}"
keepalive = "300ms"

[[receivers]]
name = "ding_http"
vendor = "dingtalk"
path = "/ding"
token = "cbtoken"
encoding_aes_key = "{DING_AES}"
receive_id = "ding-client"
{rules}
"#,
        header(SQLITE),
        fake.api_base()
    )
}

/// Server, store and fast retries; `store` is the `[store]` table's body.
fn header(store: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\n{store}\n[delivery]\nfirst_retry = 1\nmax_backoff = 1\n"
    )
}

async fn until(secs: u64, what: &str, check: impl FnMut() -> bool) {
    eventually_or(secs, what, check, String::new).await;
}

fn ack_data(ack: &Value) -> Value {
    serde_json::from_str(ack["data"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

async fn connected(fake: &DingFake, n: usize) {
    eventually_or(
        10,
        "the gateway connected",
        || fake.connections().1 >= 1 && fake.connections().0 >= n,
        || {
            let conns = fake.connections();
            let refused = fake.hub.lock().unwrap().refused_upgrades;
            let opens = fake.state.lock().unwrap().opens.len();
            format!("opens {opens}, refused upgrades {refused}, connections {conns:?}")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_stream_events_and_robot_messages_run_the_same_rules_as_callbacks() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let sink = Sink::start(&[]).await;
    let vendors = Vendors::start(State {
        dingtalk: [("sess".to_owned(), None)].into(),
        ..State::default()
    })
    .await;
    let rules = format!(
        r#"
[outbound]
allow_hosts = ["127.0.0.1"]
[[rules]]
name = "new member, either channel"
receiver = ["ding", "ding_http"]
when = {{ EventType = "user_add_org" }}
[[rules.actions]]
kind = "http"
url = "{}"
body = "{{{{ UserId[0] }}}} via {{{{ event.receiver }}}}"

[[rules]]
name = "answer the robot"
receiver = "ding"
when = {{ msgtype = "text" }}
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{{{{ sessionWebhook }}}}"
message = {{ msgtype = "text", text = {{ content = "收到：{{{{ text.content }}}}" }} }}
"#,
        sink.url("/members")
    );
    let srv = start_file(&ding_config(&fake, "ding-secret", &rules), &[]).await;
    connected(&fake, 1).await;
    let open = fake.state.lock().unwrap().opens[0].clone();
    assert_eq!(
        open["subscriptions"],
        json!([{"type": "EVENT", "topic": "*"}, {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}])
    );

    fake.ping("op-1");
    until(5, "the ping echoed", || {
        !fake.acks_of("ping-op-1").is_empty()
    })
    .await;
    let pong = &fake.acks_of("ping-op-1")[0];
    assert_eq!(
        (pong["code"].as_i64(), ack_data(pong)),
        (Some(200), json!({"opaque": "op-1"}))
    );

    fake.push_event(
        "ev-1",
        "user_add_org",
        "evt-1",
        json!({"timeStamp": "1685501863357", "userId": ["u1"]}),
    );
    until(5, "the event acked", || !fake.acks_of("ev-1").is_empty()).await;
    let ack = &fake.acks_of("ev-1")[0];
    assert_eq!(ack["code"], 200);
    assert_eq!(ack["headers"]["contentType"], "application/json");
    assert_eq!(ack_data(ack)["status"], "SUCCESS");
    // The same event over the HTTP callback channel, as DingTalk pushes it there.
    http_user_add_org(&srv, "u2").await;

    let session = vendors.url("/robot/send?access_token=sess");
    fake.push_robot(
        "cb-1",
        json!({"conversationId": "cid1", "msgId": "msg1", "senderStaffId": "s1", "conversationType": "1",
               "msgtype": "text", "text": {"content": "你好"}, "sessionWebhook": session, "robotCode": "r"}),
    );
    until(5, "the robot message acked", || {
        !fake.acks_of("cb-1").is_empty()
    })
    .await;
    assert_eq!(
        ack_data(&fake.acks_of("cb-1")[0]),
        json!({"response": null})
    );

    // DingTalk may push again even after an ack: the same ids store nothing new.
    fake.push_event(
        "ev-1",
        "user_add_org",
        "evt-1",
        json!({"timeStamp": "1685501863357", "userId": ["u1"]}),
    );
    until(5, "the redelivery acked", || {
        fake.acks_of("ev-1").len() == 2
    })
    .await;

    eventually_or(
        10,
        "both channels' events delivered by one rule, the robot answered",
        || sink.received().len() == 2 && vendors.accepted().len() == 1,
        || format!("{:?} {:?}", sink.received(), vendors.accepted()),
    )
    .await;
    let mut bodies: Vec<String> = sink.received().iter().map(|r| r.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, ["u1 via ding", "u2 via ding_http"]);
    assert_eq!(vendors.accepted()[0].2["text"]["content"], "收到：你好");
    let kinds: Vec<String> = srv.events().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    let metrics = srv.get("/metrics").await.text();
    assert!(
        metrics.contains("hookgate_stream_state{receiver=\"ding\",state=\"connected\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hookgate_callbacks_total{receiver=\"ding\",vendor=\"dingtalk_stream\",outcome=\"duplicate\",reason=\"\"} 1"), "{metrics}");
    let ready = srv.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert!(
        ready.text().contains("stream ding: connected"),
        "{}",
        ready.text()
    );
    srv.stop().await;
}

async fn http_user_add_org(srv: &TestServer, user: &str) {
    let env = Envelope::new(
        "cbtoken".into(),
        vec![AesKey::from_encoding_aes_key(DING_AES).unwrap()],
        "ding-client".into(),
    );
    let plain = json!({"EventType": "user_add_org", "TimeStamp": "1608017258073", "UserId": [user], "CorpId": "dingcorp"}).to_string();
    common::dingtalk_post(srv, &env, "/ding", &plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_answered_later_and_the_redelivery_is_stored_once() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let srv = start_file(&ding_config(&fake, "ding-secret", ""), &[]).await;
    connected(&fake, 1).await;
    srv.fail_inserts(true);
    fake.push_event("ev-9", "user_add_org", "evt-9", json!({"userId": ["u9"]}));
    until(10, "pushed again after LATER", || {
        fake.pushes_of("ev-9") >= 2
    })
    .await;
    for ack in fake.acks_of("ev-9") {
        assert_eq!(ack_data(&ack)["status"], "LATER", "{ack}");
        assert_ne!(ack["code"], 200);
    }
    assert!(srv.events().is_empty());
    srv.fail_inserts(false);
    until(10, "acknowledged once stored", || {
        fake.acks_of("ev-9")
            .iter()
            .any(|a| ack_data(a)["status"] == "SUCCESS")
    })
    .await;
    assert_eq!(srv.events().len(), 1);
    srv.stop().await;
}

/// A burst is stored many frames at a time (one commit for many), yet each frame is stored
/// in the order it arrived (a later one may cancel what an earlier one starts) and
/// acknowledged in that order, only after its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_stored_in_arrival_order_and_acked_in_order() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let srv = start_file(&ding_config(&fake, "ding-secret", ""), &[]).await;
    connected(&fake, 1).await;
    const N: usize = 400;
    for i in 0..N {
        let user = format!("u{i}");
        fake.push_event(
            &format!("b-{i}"),
            "user_add_org",
            &format!("evt-b{i}"),
            json!({"userId": [user]}),
        );
    }
    until(20, "every frame acked", || {
        fake.state.lock().unwrap().acks.len() >= N
    })
    .await;
    let acked: Vec<String> = fake
        .state
        .lock()
        .unwrap()
        .acks
        .iter()
        .map(|(_, ack)| {
            assert_eq!(ack_data(ack)["status"], "SUCCESS", "{ack}");
            ack["headers"]["messageId"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let pushed: Vec<String> = (0..N).map(|i| format!("b-{i}")).collect();
    assert_eq!(acked, pushed);
    let mut events = srv.events();
    events.sort_by_key(|e| e.id);
    let stored: Vec<String> = events
        .iter()
        .map(|e| {
            e.fields["UserId"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let users: Vec<String> = (0..N).map(|i| format!("u{i}")).collect();
    assert_eq!(stored, users);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let srv = start_file(&ding_config(&fake, "ding-secret", ""), &[]).await;
    connected(&fake, 1).await;
    fake.silence(0);
    let silenced = std::time::Instant::now();
    until(10, "a new connection", || fake.connections().0 == 2).await;
    // Two keepalive periods (300 ms) of silence, then a new ticket and socket.
    assert!(
        silenced.elapsed() >= Duration::from_millis(550),
        "{:?}",
        silenced.elapsed()
    );
    assert_eq!(fake.state.lock().unwrap().opens.len(), 2);
    fake.push_event("ev-2", "user_add_org", "evt-2", json!({"userId": ["u2"]}));
    until(5, "the event on the new connection acked", || {
        !fake.acks_of("ev-2").is_empty()
    })
    .await;
    assert_eq!(srv.events().len(), 1);
    let metrics = srv.get("/metrics").await.text();
    assert!(
        metrics.contains("hookgate_stream_reconnects_total{receiver=\"ding\"} 1"),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_opens_the_new_connection_first_and_loses_nothing() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let srv = start_file(&ding_config(&fake, "ding-secret", ""), &[]).await;
    connected(&fake, 1).await;
    fake.disconnect(0, Duration::from_secs(2));
    // Still delivered on the old connection during its last seconds.
    fake.push_event_on(0, "late-1", "evt-late", json!({"userId": ["late"]}));
    until(5, "a second connection while the first is open", || {
        fake.connections() == (2, 2)
    })
    .await;
    fake.push_event(
        "new-1",
        "user_add_org",
        "evt-new",
        json!({"userId": ["new"]}),
    );
    until(5, "both acked", || {
        !fake.acks_of("late-1").is_empty() && !fake.acks_of("new-1").is_empty()
    })
    .await;
    let disc = fake.acks_of("disc-0");
    assert_eq!(disc.len(), 1, "disconnect acknowledged");
    until(5, "the old connection closed", || {
        fake.connections() == (2, 1)
    })
    .await;
    assert_eq!(srv.events().len(), 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_and_show_in_readyz() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let srv = start_file(&ding_config(&fake, "wrong-secret", ""), &[]).await;
    until(5, "one attempt", || {
        !fake.state.lock().unwrap().opens.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.state.lock().unwrap().opens.len(),
        1,
        "retried refused credentials"
    );
    let ready = srv.get("/readyz").await;
    assert_eq!(ready.status, 503);
    let text = ready.text();
    assert!(
        text.contains("stream ding: failed") && text.contains("authFailed"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret"), "{text}");
    srv.stop().await;
}

fn feishu_config(fake: &FeishuFake, secret: &str, keepalive: &str, rules: &str) -> String {
    format!(
        r#"{}
[[receivers]]
name = "lark"
vendor = "feishu_ws"
app_id = "cli_a1b2c3d4e5f60718"
app_secret = "{secret}"
api_base = "{}"
keepalive = "{keepalive}"
{rules}
"#,
        header(SQLITE),
        fake.api_base()
    )
}

fn feishu_message(event_id: &str, text: &str) -> Value {
    json!({
        "schema": "2.0",
        "header": {"event_id": event_id, "event_type": "im.message.receive_v1", "create_time": "1700000000000",
                   "token": "", "app_id": "cli_a1b2c3d4e5f60718", "tenant_key": "t1"},
        "event": {"sender": {"sender_id": {"open_id": "ou_1"}},
                  "message": {"message_id": format!("om_{event_id}"), "chat_id": "oc_1", "message_type": "text",
                              "content": json!({"text": text}).to_string()}}
    })
}

fn payload(frame: &Frame) -> Value {
    serde_json::from_slice(frame.payload.as_deref().unwrap_or(b"")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_events_are_reassembled_stored_and_acknowledged_after_the_commit() {
    let fake = FeishuFake::start("cli_a1b2c3d4e5f60718", "lark-secret").await;
    fake.state.lock().unwrap().pong_config = Some(json!({"PingInterval": 1}));
    let sink = Sink::start(&[]).await;
    let rules = format!(
        r#"
[[rules]]
name = "messages"
receiver = "lark"
when = {{ "header.event_type" = "im.message.receive_v1" }}
[[rules.actions]]
kind = "http"
url = "{}"
body = "{{{{ fields.header.event_id }}}}"
"#,
        sink.url("/lark")
    );
    let srv = start_file(&feishu_config(&fake, "lark-secret", "5s", &rules), &[]).await;
    until(10, "connected", || fake.connections().1 == 1).await;
    let endpoint = fake.state.lock().unwrap().endpoints[0].clone();
    assert_eq!(
        endpoint,
        json!({"AppID": "cli_a1b2c3d4e5f60718", "AppSecret": "lark-secret"})
    );

    // Split in three, the last fragment first.
    fake.push_event("m-1", &feishu_message("ev-1", "你好，世界"), 3);
    until(5, "acked", || !fake.acks_of("m-1").is_empty()).await;
    let ack = &fake.acks_of("m-1")[0];
    assert_eq!((ack.method, ack.service), (1, SERVICE_ID));
    assert_eq!(payload(ack), json!({"code": 200}));
    assert_eq!(ack.header("trace_id"), Some("trace-m-1"));
    assert!(ack.header("biz_rt").is_some());
    // Pushed again (Feishu does that) with the same event id: stored once.
    fake.push_event("m-1", &feishu_message("ev-1", "你好，世界"), 1);
    until(5, "the copy acked", || fake.acks_of("m-1").len() == 2).await;
    until(10, "delivered", || sink.received().len() == 1).await;
    assert_eq!(sink.received()[0].body, "ev-1");
    let events = srv.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "im.message.receive_v1");
    assert_eq!(
        events[0].fields["event"]["message"]["content"],
        "{\"text\":\"你好，世界\"}"
    );
    // The first pong said PingInterval 1 s (the endpoint had said 120 s): pings follow it.
    until(10, "pings every second", || {
        fake.state.lock().unwrap().pings >= 4
    })
    .await;

    // A burst is stored in batches: in arrival order, each acked in that order (on
    // PostgreSQL, one at a time, the fake's compressed 3 s may push some again: those are
    // acked again and stored once).
    const N: usize = 300;
    for i in 0..N {
        fake.push_event(
            &format!("b-{i}"),
            &feishu_message(&format!("evb-{i:03}"), "x"),
            1,
        );
    }
    let firsts = || {
        let mut seen = std::collections::HashSet::new();
        let acks = fake.state.lock().unwrap().acks.clone();
        acks[2..]
            .iter()
            .filter_map(|(_, a)| {
                assert_eq!(payload(a), json!({"code": 200}));
                let id = a.header("message_id").unwrap_or_default().to_owned();
                seen.insert(id.clone()).then_some(id)
            })
            .collect::<Vec<_>>()
    };
    until(20, "the burst acked", || firsts().len() >= N).await;
    assert_eq!(
        firsts(),
        (0..N).map(|i| format!("b-{i}")).collect::<Vec<_>>()
    );
    let mut events = srv.events();
    events.sort_by_key(|e| e.id);
    let stored: Vec<&str> = events[1..]
        .iter()
        .map(|e| e.fields["header"]["event_id"].as_str().unwrap_or_default())
        .collect();
    let pushed: Vec<String> = (0..N).map(|i| format!("evb-{i:03}")).collect();
    assert_eq!(stored, pushed);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_a_connection_whose_pongs_stop_is_replaced() {
    let fake = FeishuFake::start("cli_a1b2c3d4e5f60718", "lark-secret").await;
    let srv = start_file(&feishu_config(&fake, "lark-secret", "300ms", ""), &[]).await;
    until(10, "connected", || fake.connections().1 == 1).await;
    fake.state.lock().unwrap().no_pongs = true;
    until(10, "a second endpoint request and connection", || {
        fake.state.lock().unwrap().endpoints.len() >= 2 && fake.connections().0 >= 2
    })
    .await;
    fake.state.lock().unwrap().no_pongs = false;
    fake.push_event("m-2", &feishu_message("ev-2", "again"), 1);
    until(5, "acked on the new connection", || {
        !fake.acks_of("m-2").is_empty()
    })
    .await;
    assert_eq!(srv.events().len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_refusals_that_retrying_cannot_fix_stop_and_show_why() {
    // The app's 50 connections are taken.
    let fake = FeishuFake::start("cli_a1b2c3d4e5f60718", "lark-secret").await;
    fake.state.lock().unwrap().max_connections = 0;
    let srv = start_file(&feishu_config(&fake, "lark-secret", "1s", ""), &[]).await;
    until(5, "one attempt", || {
        !fake.state.lock().unwrap().endpoints.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.state.lock().unwrap().endpoints.len(), 1);
    let ready = srv.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("exceed connection limit") && ready.text().contains("1000040350"),
        "{}",
        ready.text()
    );
    srv.stop().await;

    // A wrong secret.
    let fake = FeishuFake::start("cli_a1b2c3d4e5f60718", "lark-secret").await;
    let srv = start_file(&feishu_config(&fake, "nope", "1s", ""), &[]).await;
    until(5, "one attempt", || {
        !fake.state.lock().unwrap().endpoints.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.state.lock().unwrap().endpoints.len(), 1);
    let text = srv.get("/readyz").await.text();
    assert!(
        text.contains("stream lark: failed") && text.contains("10014"),
        "{text}"
    );
    srv.stop().await;
}

fn wecom_config(fake: &WecomFake, secret: &str, store: &str, rules: &str) -> String {
    format!(
        r#"{}
[[receivers]]
name = "bot"
vendor = "wecom_aibot"
bot_id = "BOT-ID"
secret = "{secret}"
ws_url = "{}"
keepalive = "300ms"
{rules}
"#,
        header(store),
        fake.url()
    )
}

const SQLITE: &str = "path = \"${HOOKGATE_DB}\"";

fn wecom_text(msgid: &str, text: &str) -> Value {
    json!({"msgid": msgid, "aibotid": "AIBOT-1", "chatid": "CHAT-1", "chattype": "group",
           "from": {"userid": "zhangsan"}, "create_time": 1700000000,
           "response_url": "https://example.invalid/resp", "msgtype": "text", "text": {"content": text}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_bot_messages_are_stored_once_and_routed() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let sink = Sink::start(&[]).await;
    let rules = format!(
        r#"
[[rules]]
name = "bot text"
receiver = "bot"
when = {{ msgtype = "text" }}
[[rules.actions]]
kind = "http"
url = "{}"
body = "{{{{ from.userid }}}}: {{{{ text.content }}}}"
"#,
        sink.url("/bot")
    );
    let srv = start_file(&wecom_config(&fake, "BOT-SECRET", SQLITE, &rules), &[]).await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    let subscribe = fake.state.lock().unwrap().subscribes[0].1.clone();
    assert_eq!(
        subscribe["body"],
        json!({"bot_id": "BOT-ID", "secret": "BOT-SECRET"})
    );
    assert!(
        subscribe["headers"]["req_id"]
            .as_str()
            .unwrap()
            .starts_with("aibot_subscribe_")
    );
    fake.push("aibot_msg_callback", wecom_text("MSG-1", "@bot 你好"));
    fake.push("aibot_msg_callback", wecom_text("MSG-1", "@bot 你好"));
    fake.push(
        "aibot_event_callback",
        json!({"msgid": "EV-1", "create_time": 1700000001, "aibotid": "AIBOT-1",
               "from": {"userid": "lisi"}, "msgtype": "event", "event": {"eventtype": "enter_chat"}}),
    );
    until(10, "both stored", || srv.events().len() == 2).await;
    let mut kinds: Vec<String> = srv.events().iter().map(|e| e.kind.clone()).collect();
    kinds.sort();
    assert_eq!(kinds, ["enter_chat", "text"]);
    until(10, "routed", || sink.received().len() == 1).await;
    assert_eq!(sink.received()[0].body, "zhangsan: @bot 你好");
    until(5, "heartbeats", || fake.state.lock().unwrap().pings >= 2).await;
    assert_eq!(fake.subscribes(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_bot_replies_go_over_the_connection_to_the_push() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let rules = r#"
[[rules]]
name = "answer"
receiver = "bot"
when = { msgtype = "text" }
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "stream", stream = { content = "收到：{{ text.content }}" } }
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "markdown", markdown = { content = "工单 **{{ msgid }}** 已建" } }

[[rules]]
name = "welcome"
receiver = "bot"
when = { "event.eventtype" = "enter_chat" }
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "text", text = { content = "你好 {{ from.userid }}" } }

[[rules]]
name = "late answer"
receiver = "bot"
when = { "text.content" = "later" }
[[rules.actions]]
kind = "wecom_aibot_reply"
after = "2s"
message = { msgtype = "stream", stream = { content = "too late" } }
"#;
    let srv = start_file(&wecom_config(&fake, "BOT-SECRET", SQLITE, rules), &[]).await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    fake.push("aibot_msg_callback", wecom_text("MSG-1", "@bot 打印机坏了"));
    fake.push(
        "aibot_event_callback",
        json!({"msgid": "EV-1", "aibotid": "AIBOT-1", "chattype": "single", "create_time": 1700000000,
               "from": {"userid": "lisi"}, "msgtype": "event", "event": {"eventtype": "enter_chat"}}),
    );
    until(10, "three replies", || {
        fake.state.lock().unwrap().replies.len() == 3
    })
    .await;
    let replies = fake.state.lock().unwrap().replies.clone();
    let to_msg: Vec<&(String, String, Value)> =
        replies.iter().filter(|r| r.1 == "REQ-MSG-1").collect();
    // The actions of a rule run in order, each after WeCom's receipt for the one before.
    assert_eq!(to_msg.len(), 2, "{replies:?}");
    assert_eq!(to_msg[0].0, "aibot_respond_msg");
    let stream = &to_msg[0].2["stream"];
    assert_eq!(stream["content"], "收到：@bot 打印机坏了");
    assert_eq!(stream["finish"], true);
    assert!(stream["id"].as_str().unwrap().starts_with("hookgate-"));
    assert_eq!(
        to_msg[1].2,
        json!({"msgtype": "markdown", "markdown": {"content": "工单 **MSG-1** 已建"}})
    );
    let welcome = replies.iter().find(|r| r.1 == "REQ-EV-1").unwrap();
    assert_eq!(
        (welcome.0.as_str(), &welcome.2),
        (
            "aibot_respond_welcome_msg",
            &json!({"msgtype": "text", "text": {"content": "你好 lisi"}})
        )
    );
    until(5, "delivered", || {
        let d = srv.deliveries();
        d.len() == 3 && d.iter().all(|d| d.status == DeliveryStatus::Done)
    })
    .await;

    // A reply after the connection was replaced: WeCom refuses the old req_id (846605), and
    // retrying cannot help: the delivery fails at once, with the reason.
    fake.push("aibot_msg_callback", wecom_text("MSG-2", "later"));
    until(5, "stored", || srv.events().len() == 3).await;
    fake.close_holder();
    until(10, "subscribed again", || {
        fake.subscribes() == 2 && fake.holder().is_some()
    })
    .await;
    until(10, "the late reply failed", || {
        srv.deliveries()
            .iter()
            .any(|d| d.rule == "late answer" && d.status == DeliveryStatus::Dead)
    })
    .await;
    let late = srv
        .deliveries()
        .into_iter()
        .find(|d| d.rule == "late answer")
        .unwrap();
    assert_eq!(late.attempts, 1);
    assert!(
        late.last_error.as_deref().unwrap().contains("846605"),
        "{late:?}"
    );
    assert!(
        fake.state
            .lock()
            .unwrap()
            .receipts
            .contains(&("REQ-MSG-2".into(), 846605))
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_messages_outlast_a_store_outage() {
    // WeCom never pushes a message again: one the store cannot take is held and retried,
    // and the connection goes on meanwhile (heartbeats, later messages kept in order).
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let srv = start_file(&wecom_config(&fake, "BOT-SECRET", SQLITE, ""), &[]).await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    srv.fail_inserts(true);
    fake.push("aibot_msg_callback", wecom_text("MSG-A", "first"));
    fake.push("aibot_msg_callback", wecom_text("MSG-B", "second"));
    let pings = fake.state.lock().unwrap().pings;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(srv.events().is_empty());
    assert!(
        fake.state.lock().unwrap().pings > pings + 5,
        "the connection stalled"
    );
    assert_eq!(fake.subscribes(), 1);
    srv.fail_inserts(false);
    until(15, "both stored", || srv.events().len() == 2).await;
    let mut events = srv.events();
    events.sort_by_key(|e| e.id);
    let msgids: Vec<&str> = events.iter().map(|e| e.dedupe_key.as_str()).collect();
    assert_eq!(msgids, ["msgid=MSG-A", "msgid=MSG-B"], "kept in order");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_more_messages_than_memory_holds_wait_at_the_connection_and_none_is_lost() {
    // Past the 10,000 messages held in memory for the store, the connection stops reading
    // (TCP holds the rest back) instead of dropping them, and does not take its own silence
    // for a dead line: not reading for 5 s with a 2 s keepalive, it stays.
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let config = wecom_config(&fake, "BOT-SECRET", SQLITE, "")
        .replace("keepalive = \"300ms\"", "keepalive = \"2s\"");
    let srv = start_file(&config, &[]).await;
    if srv.schema.is_some() {
        // PostgreSQL commits them one at a time (a later one must not commit first): 20 s
        // for this many. The connection's side is the same code on either store.
        srv.stop().await;
        return;
    }
    until(10, "subscribed", || fake.holder().is_some()).await;
    srv.fail_inserts(true);
    const N: usize = 10_300;
    for i in 0..N {
        fake.push(
            "aibot_msg_callback",
            wecom_text(&format!("MSG-{i:05}"), "x"),
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    srv.fail_inserts(false);
    let db = rusqlite::Connection::open(&srv.db).unwrap();
    let stored = || -> usize {
        db.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize
    };
    until(60, "every message stored", || stored() >= N).await;
    let keys: Vec<String> = db
        .prepare("SELECT dedupe_key FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let pushed: Vec<String> = (0..N).map(|i| format!("msgid=MSG-{i:05}")).collect();
    assert!(keys == pushed, "stored out of order or twice");
    assert_eq!(fake.subscribes(), 1, "the connection was replaced");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_replies_to_one_push_wait_for_each_receipt() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    fake.state.lock().unwrap().receipt_delay = Some(Duration::from_millis(300));
    // Two rules answer the same message: their deliveries run at once, their replies go out
    // one after the other.
    let rules = r#"
[[rules]]
name = "first"
receiver = "bot"
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "text", text = { content = "one" } }

[[rules]]
name = "second"
receiver = "bot"
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "text", text = { content = "two" } }
"#;
    let srv = start_file(&wecom_config(&fake, "BOT-SECRET", SQLITE, rules), &[]).await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    fake.push("aibot_msg_callback", wecom_text("MSG-9", "hi"));
    until(10, "both answered", || {
        let d = srv.deliveries();
        d.len() == 2 && d.iter().all(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    let (replies, overlaps) = {
        let s = fake.state.lock().unwrap();
        (s.replies.clone(), s.overlaps)
    };
    assert_eq!((replies.len(), overlaps), (2, 0), "{replies:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_a_clean_close_or_unanswered_heartbeats_bring_a_new_connection() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let srv = start_file(&wecom_config(&fake, "BOT-SECRET", SQLITE, ""), &[]).await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    // The Python SDK never comes back after this.
    fake.close_holder();
    until(10, "subscribed again", || {
        fake.subscribes() == 2 && fake.holder().is_some()
    })
    .await;
    fake.state.lock().unwrap().no_pongs = true;
    until(10, "replaced after unanswered heartbeats", || {
        fake.subscribes() == 3
    })
    .await;
    fake.state.lock().unwrap().no_pongs = false;
    until(10, "holding", || fake.holder().is_some()).await;
    fake.push("aibot_msg_callback", wecom_text("MSG-2", "still here"));
    until(10, "stored", || srv.events().len() == 1).await;
    assert_eq!(fake.state.lock().unwrap().kicks, 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_another_client_taking_the_bot_is_not_fought() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let srv = start_file(&wecom_config(&fake, "BOT-SECRET", SQLITE, ""), &[]).await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    // A debugging laptop subscribes the same bot.
    let (mut other, _) = tokio_tungstenite::connect_async(fake.url()).await.unwrap();
    let subscribe = json!({"cmd": "aibot_subscribe", "headers": {"req_id": "laptop"}, "body": {"bot_id": "BOT-ID", "secret": "BOT-SECRET"}});
    other
        .send(tokio_tungstenite::tungstenite::Message::text(
            subscribe.to_string(),
        ))
        .await
        .unwrap();
    until(5, "hookgate kicked", || {
        fake.state.lock().unwrap().kicks == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.subscribes(), 2, "hookgate fought back for the bot");
    let text = srv.get("/readyz").await.text();
    assert!(
        text.contains("stream bot: reconnecting") && text.contains("newer connection"),
        "{text}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_only_one_replica_holds_the_bot_and_another_takes_over() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let store = format!(
        "url = \"{}\"\nlease = \"2s\"",
        common::pg::fresh_url("aibot")
    );
    let answer = r#"
[[rules]]
name = "answer"
receiver = "bot"
[[rules.actions]]
kind = "wecom_aibot_reply"
message = { msgtype = "text", text = { content = "ok {{ msgid }}" } }
"#;
    let config = wecom_config(&fake, "BOT-SECRET", &store, answer);
    let a = start_file(&config, &[]).await;
    let b = start_file(&config, &[]).await;
    until(10, "one replica subscribed", || fake.holder().is_some()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (fake.subscribes(), fake.connections().0),
        (1, 1),
        "both replicas connected"
    );
    let (ra, rb) = (a.get("/readyz").await.text(), b.get("/readyz").await.text());
    let (holder, standby) = if ra.contains("stream bot: connected") {
        (a, b)
    } else {
        (b, a)
    };
    let waiting = standby.get("/readyz").await;
    assert_eq!(waiting.status, 200);
    assert!(waiting.text().contains("stream bot: standby"), "{ra}\n{rb}");
    // Replies go over the holder's connection, whichever replica runs the delivery.
    for i in 0..10 {
        fake.push("aibot_msg_callback", wecom_text(&format!("M{i}"), "?"));
    }
    until(15, "every message answered", || {
        fake.state.lock().unwrap().replies.len() == 10
    })
    .await;
    assert!(
        fake.state
            .lock()
            .unwrap()
            .receipts
            .iter()
            .all(|(_, code)| *code == 0)
    );
    holder.stop().await;
    until(10, "the standby replica took over", || {
        fake.subscribes() == 2 && fake.holder().is_some()
    })
    .await;
    fake.push("aibot_msg_callback", wecom_text("MSG-3", "handover"));
    until(10, "stored by the new holder", || {
        standby.events().len() == 11
    })
    .await;
    assert_eq!(
        fake.state.lock().unwrap().kicks,
        0,
        "two replicas kicked each other"
    );
    assert!(
        standby
            .get("/readyz")
            .await
            .text()
            .contains("stream bot: connected")
    );
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_a_refused_subscribe_stops() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let srv = start_file(&wecom_config(&fake, "wrong", SQLITE, ""), &[]).await;
    until(5, "one subscribe", || fake.subscribes() == 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.subscribes(), 1);
    let ready = srv.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("errcode 40001"), "{}", ready.text());
    srv.stop().await;
}

// The examples in config/examples/, driven against the fakes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dingtalk_stream_example_runs() {
    let fake = DingFake::start("dingexample", "example-secret").await;
    let hr = Sink::start(&[]).await;
    let vendors = Vendors::start(State {
        dingtalk: [("sess".to_owned(), None)].into(),
        ..State::default()
    })
    .await;
    let src = std::fs::read_to_string("config/examples/dingtalk-stream.toml").unwrap();
    // The fake's sessionWebhook stands in for oapi.dingtalk.com, which the example allows.
    let src = format!("{src}\n[outbound]\nallow_hosts = [\"127.0.0.1\"]\n");
    let (base, hr_url) = (fake.api_base(), hr.url("/hooks/dingtalk"));
    let srv = start_file(
        &src,
        &[
            ("DING_CLIENT_ID", "dingexample"),
            ("DING_CLIENT_SECRET", "example-secret"),
            ("DING_STREAM_API_BASE", &base),
            ("HR_WEBHOOK_URL", &hr_url),
        ],
    )
    .await;
    connected(&fake, 1).await;
    fake.push_event(
        "m-1",
        "user_add_org",
        "e-1",
        json!({"timeStamp": "1", "userId": ["u1", "u2"]}),
    );
    fake.push_robot(
        "m-2",
        json!({"msgId": "x-1", "msgtype": "text", "text": {"content": " 打卡 "}, "conversationType": "2",
               "sessionWebhook": vendors.url("/robot/send?access_token=sess")}),
    );
    until(10, "forwarded and answered", || {
        hr.received().len() == 1 && vendors.accepted().len() == 1
    })
    .await;
    let body: Value = serde_json::from_str(&hr.received()[0].body).unwrap();
    assert_eq!(
        body,
        json!({"event": "user_add_org", "users": ["u1", "u2"], "corp": "dingcorp"})
    );
    let reply = vendors.accepted()[0].2["text"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reply.starts_with("收到：打卡（已记录，编号 "), "{reply}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feishu_example_runs() {
    let fake = FeishuFake::start("cli_example00000000", "example-secret").await;
    let tickets = Sink::start(&[]).await;
    let src = std::fs::read_to_string("config/examples/feishu-ws.toml").unwrap();
    let (base, url) = (fake.api_base(), tickets.url("/api/messages"));
    let srv = start_file(
        &src,
        &[
            ("LARK_APP_ID", "cli_example00000000"),
            ("LARK_APP_SECRET", "example-secret"),
            ("LARK_API_BASE", &base),
            ("TICKETS_URL", &url),
        ],
    )
    .await;
    until(10, "connected", || fake.connections().1 == 1).await;
    fake.push_event("m-9", &feishu_message("ev-9", "打印机坏了"), 2);
    until(10, "forwarded", || tickets.received().len() == 1).await;
    let body: Value = serde_json::from_str(&tickets.received()[0].body).unwrap();
    assert_eq!(
        body,
        json!({"id": "ev-9", "chat": "oc_1", "from": "ou_1", "content": "{\"text\":\"打印机坏了\"}"})
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wecom_bot_example_runs() {
    let fake = WecomFake::start("EXAMPLE-BOT", "example-secret").await;
    let src = std::fs::read_to_string("config/examples/wecom-aibot.toml").unwrap();
    let url = fake.url();
    let srv = start_file(
        &src,
        &[
            ("WECOM_BOT_ID", "EXAMPLE-BOT"),
            ("WECOM_BOT_SECRET", "example-secret"),
            ("WECOM_BOT_WS_URL", &url),
        ],
    )
    .await;
    until(10, "subscribed", || fake.holder().is_some()).await;
    fake.push("aibot_msg_callback", wecom_text("MSG-7", "VPN 连不上"));
    fake.push(
        "aibot_event_callback",
        json!({"msgid": "EV-7", "aibotid": "AIBOT-1", "chattype": "single", "create_time": 1700000000,
               "from": {"userid": "lisi"}, "msgtype": "event", "event": {"eventtype": "enter_chat"}}),
    );
    until(10, "answered and welcomed", || {
        fake.state.lock().unwrap().replies.len() == 2
    })
    .await;
    let replies = fake.state.lock().unwrap().replies.clone();
    let answer = replies.iter().find(|r| r.1 == "REQ-MSG-7").unwrap();
    assert_eq!(answer.0, "aibot_respond_msg");
    let content = answer.2["stream"]["content"].as_str().unwrap();
    assert!(content.contains("**zhangsan**"), "{content}");
    let welcome = replies.iter().find(|r| r.1 == "REQ-EV-7").unwrap();
    assert_eq!(welcome.0, "aibot_respond_welcome_msg");
    assert!(
        welcome.2["text"]["content"]
            .as_str()
            .unwrap()
            .starts_with("你好 lisi"),
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_on_every_replica_with_one_shared_dedupe() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let store = format!("url = \"{}\"", common::pg::fresh_url("dingreplicas"));
    let config = ding_config(&fake, "ding-secret", "").replace("path = \"${HOOKGATE_DB}\"", &store);
    let a = start_file(&config, &[]).await;
    let b = start_file(&config, &[]).await;
    until(10, "both replicas connected", || {
        fake.connections() == (2, 2)
    })
    .await;
    // DingTalk pushes an event on one connection and, unacknowledged in time or not, the
    // same event again on the other.
    fake.push_event_on(0, "m-a", "evt-same", json!({"userId": ["u1"]}));
    fake.push_event_on(1, "m-b", "evt-same", json!({"userId": ["u1"]}));
    until(5, "both acked", || {
        !fake.acks_of("m-a").is_empty() && !fake.acks_of("m-b").is_empty()
    })
    .await;
    assert_eq!(a.events().len(), 1);
    assert_eq!(b.events().len(), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_only_the_stream_receivers_that_changed() {
    let ding = DingFake::start("ding-client", "ding-secret").await;
    let bot = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    let write = |ding_secret: &str, with_bot: bool| {
        let mut text = ding_config(&ding, ding_secret, "").replace(
            "${HOOKGATE_DB}",
            &dir.path().join("db").display().to_string(),
        );
        if with_bot {
            text += &format!(
                "\n[[receivers]]\nname = \"bot\"\nvendor = \"wecom_aibot\"\nbot_id = \"BOT-ID\"\nsecret = \"BOT-SECRET\"\nws_url = \"{}\"\nkeepalive = \"300ms\"\n",
                bot.url()
            );
        }
        std::fs::write(&path, text).unwrap();
    };
    write("wrong-secret", true);
    let gw = common::Served::start(&path, &[]);
    until(10, "ding refused, bot subscribed", || {
        !ding.state.lock().unwrap().opens.is_empty() && bot.holder().is_some()
    })
    .await;
    // Fix the DingTalk secret: that receiver restarts and connects; the bot keeps its connection.
    write("ding-secret", true);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    until(10, "ding connected after the reload", || {
        ding.connections().1 == 1
    })
    .await;
    assert_eq!(bot.subscribes(), 1, "an unchanged receiver was restarted");
    // Remove the bot: its connection closes.
    write("ding-secret", false);
    std::process::Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .unwrap();
    until(10, "the bot let go", || bot.connections().1 == 0).await;
    let ready = status_text(gw.addr, "/readyz").await;
    assert!(
        ready.contains("stream ding: connected") && !ready.contains("stream bot"),
        "{ready}"
    );
}

async fn status_text(addr: std::net::SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    common::raw(addr, req.as_bytes()).await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_a_store_outage_is_answered_500_and_the_redelivery_is_stored_once() {
    let fake = FeishuFake::start("cli_a1b2c3d4e5f60718", "lark-secret").await;
    let srv = start_file(&feishu_config(&fake, "lark-secret", "1s", ""), &[]).await;
    until(10, "connected", || fake.connections().1 == 1).await;
    srv.fail_inserts(true);
    fake.push_event("m-5", &feishu_message("ev-5", "x"), 2);
    until(10, "pushed again after a failed ack", || {
        fake.acks_of("m-5").len() >= 2
    })
    .await;
    assert!(
        fake.acks_of("m-5")
            .iter()
            .all(|a| payload(a) == json!({"code": 500}))
    );
    assert!(srv.events().is_empty());
    srv.fail_inserts(false);
    until(10, "acknowledged once stored", || {
        fake.acks_of("m-5")
            .iter()
            .any(|a| payload(a) == json!({"code": 200}))
    })
    .await;
    assert_eq!(srv.events().len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_a_holder_killed_with_sigkill_is_replaced_by_the_standby() {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    let store = format!("url = \"{}\"", common::pg::fresh_url("aibotkill"));
    std::fs::write(&path, wecom_config(&fake, "BOT-SECRET", &store, "")).unwrap();
    let mut a = common::Served::start(&path, &[]);
    until(10, "the first replica holds the bot", || {
        fake.holder().is_some()
    })
    .await;
    let b = common::Served::start(&path, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.subscribes(), 1);
    let ready = status_text(b.addr, "/readyz").await;
    assert!(ready.contains("stream bot: standby"), "{ready}");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    until(15, "the standby took the bot", || {
        fake.subscribes() == 2 && fake.holder().is_some()
    })
    .await;
    // No fight: the new holder keeps the bot. (The fake may still kick A's dead socket if it has
    // not read its EOF before B subscribes, as WeCom would; that reaches no one.)
    let holder = fake.holder();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((fake.subscribes(), fake.holder()), (2, holder));
    assert!(
        status_text(b.addr, "/readyz")
            .await
            .contains("stream bot: connected")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_card_callbacks_are_stored_and_an_outage_is_not_stormed() {
    let fake = DingFake::start("ding-client", "ding-secret").await;
    let config = ding_config(&fake, "ding-secret", "").replace(
        "topics = [\"events\", \"robot_messages\"]",
        "topics = [\"card_callbacks\"]",
    );
    let srv = start_file(&config, &[]).await;
    connected(&fake, 1).await;
    let open = fake.state.lock().unwrap().opens[0].clone();
    assert_eq!(
        open["subscriptions"],
        json!([{"type": "CALLBACK", "topic": "/v1.0/card/instances/callback"}])
    );
    fake.push_callback(
        "/v1.0/card/instances/callback",
        "card-1",
        json!({"outTrackId": "track-1", "type": "actionCallback", "userId": "u1",
               "content": "{\"cardPrivateData\":{\"actionIds\":[\"approve\"],\"params\":{}}}"}),
    );
    until(5, "acked", || !fake.acks_of("card-1").is_empty()).await;
    assert_eq!(
        ack_data(&fake.acks_of("card-1")[0]),
        json!({"response": {}})
    );
    let events = srv.events();
    assert_eq!(
        (events.len(), events[0].kind.as_str()),
        (1, "card_callback")
    );
    assert_eq!(events[0].fields["outTrackId"], "track-1");

    // DingTalk down: the connection drops and discovery answers 503. The retries back off
    // (1 s, 2 s, 4 s… with jitter), they do not hammer.
    fake.state.lock().unwrap().unavailable = true;
    let before = fake.state.lock().unwrap().opens.len();
    fake.silence(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let attempts = fake.state.lock().unwrap().opens.len() - before;
    assert!((1..=4).contains(&attempts), "{attempts} attempts in 4 s");
    let ready = srv.get("/readyz").await.text();
    assert!(
        ready.contains("stream ding: reconnecting") && ready.contains("503"),
        "{ready}"
    );
    fake.state.lock().unwrap().unavailable = false;
    until(15, "back once DingTalk is", || fake.connections().1 == 1).await;
    srv.stop().await;
}
