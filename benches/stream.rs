//! Stream ingress throughput: events pushed by the fake vendor gateways from
//! `tests/common/streams.rs` over one connection as fast as the gateway takes them, each
//! stored (SQLite, fully durable) and, where the vendor has acks, acknowledged after its
//! commit. `cargo bench --bench stream`; `HOOKGATE_STREAM_EVENTS` sets how many per vendor
//! (default 20,000), `HOOKGATE_STREAM_VENDORS` which (default `dingtalk,feishu,wecom`).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use common::streams::{DingFake, FeishuFake, WecomFake};
use serde_json::{Value, json};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("stream: skipped; run it with `cargo bench --bench stream`");
        return;
    }
    let n: usize = std::env::var("HOOKGATE_STREAM_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let vendors =
        std::env::var("HOOKGATE_STREAM_VENDORS").unwrap_or("dingtalk,feishu,wecom".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for vendor in vendors.split(',').map(str::trim) {
        let elapsed = rt.block_on(async {
            match vendor {
                "dingtalk" => dingtalk(n).await,
                "feishu" => feishu(n).await,
                "wecom" => wecom(n).await,
                other => panic!("HOOKGATE_STREAM_VENDORS: no vendor {other:?}"),
            }
        });
        println!(
            "{vendor} stream, one connection, SQLite synchronous=full: {n} events stored{} in {elapsed:.2?}: {:.0} events/s",
            if vendor == "wecom" { "" } else { " and acked" },
            n as f64 / elapsed.as_secs_f64()
        );
    }
}

const HEADER: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"${HOOKGATE_DB}\"\n";

/// Waits until `done` holds, polling every 5 ms.
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn dingtalk(n: usize) -> Duration {
    let fake = DingFake::start("bench", "bench-secret").await;
    // No redelivery during the run: every event is pushed once.
    fake.hub.lock().unwrap().redeliver_after = Duration::from_secs(3600);
    let config = format!(
        "{HEADER}[[receivers]]\nname = \"ding\"\nvendor = \"dingtalk_stream\"\nclient_id = \"bench\"\n\
         client_secret = \"bench-secret\"\napi_base = \"{}\"\n",
        fake.api_base()
    );
    let srv = common::start_file(&config, &[]).await;
    until(|| fake.connections().1 > 0).await;
    let started = Instant::now();
    for i in 0..n {
        fake.push_event(
            &format!("m-{i}"),
            "user_add_org",
            &format!("e-{i}"),
            json!({"timeStamp": "1685501863357", "userId": [format!("u{i}")], "deptId": [1, 2]}),
        );
    }
    until(|| fake.state.lock().unwrap().acks.len() >= n).await;
    let elapsed = started.elapsed();
    // Every ack said SUCCESS: each event was committed before it was acknowledged.
    let acks = fake.state.lock().unwrap().acks.clone();
    assert!(
        acks.iter()
            .all(|(_, a)| a["data"].as_str().is_some_and(|d| d.contains("SUCCESS")))
    );
    srv.stop().await;
    elapsed
}

async fn feishu(n: usize) -> Duration {
    let fake = FeishuFake::start("cli_bench", "bench-secret").await;
    fake.hub.lock().unwrap().redeliver_after = Duration::from_secs(3600);
    let config = format!(
        "{HEADER}[[receivers]]\nname = \"lark\"\nvendor = \"feishu_ws\"\napp_id = \"cli_bench\"\n\
         app_secret = \"bench-secret\"\napi_base = \"{}\"\n",
        fake.api_base()
    );
    let srv = common::start_file(&config, &[]).await;
    until(|| fake.connections().1 > 0).await;
    let started = Instant::now();
    for i in 0..n {
        let event = json!({
            "schema": "2.0",
            "header": {"event_id": format!("ev-{i}"), "event_type": "im.message.receive_v1",
                       "create_time": "1700000000000", "token": "", "app_id": "cli_bench", "tenant_key": "t1"},
            "event": {"sender": {"sender_id": {"open_id": "ou_1"}},
                      "message": {"message_id": format!("om_{i}"), "chat_id": "oc_1", "message_type": "text",
                                  "content": json!({"text": format!("hello {i}")}).to_string()}}
        });
        fake.push_event(&format!("m-{i}"), &event, 1);
    }
    until(|| fake.state.lock().unwrap().acks.len() >= n).await;
    let elapsed = started.elapsed();
    let acks = fake.state.lock().unwrap().acks.clone();
    assert!(acks.iter().all(|(_, a)| {
        serde_json::from_slice::<Value>(a.payload.as_deref().unwrap_or(b"")).ok()
            == Some(json!({"code": 200}))
    }));
    srv.stop().await;
    elapsed
}

async fn wecom(n: usize) -> Duration {
    let fake = WecomFake::start("BOT-ID", "BOT-SECRET").await;
    let config = format!(
        "{HEADER}[[receivers]]\nname = \"bot\"\nvendor = \"wecom_aibot\"\nbot_id = \"BOT-ID\"\n\
         secret = \"BOT-SECRET\"\nws_url = \"{}\"\n",
        fake.url()
    );
    let srv = common::start_file(&config, &[]).await;
    until(|| fake.holder().is_some()).await;
    let db = rusqlite::Connection::open(&srv.db).unwrap();
    let stored = || -> i64 {
        db.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    let started = Instant::now();
    for i in 0..n {
        fake.push(
            "aibot_msg_callback",
            json!({"msgid": format!("MSG-{i}"), "aibotid": "AIBOT-1", "chatid": "CHAT-1",
                   "chattype": "group", "from": {"userid": "zhangsan"}, "create_time": 1700000000,
                   "response_url": "https://example.invalid/resp", "msgtype": "text",
                   "text": {"content": format!("hello {i}")}}),
        );
    }
    // No acks in this protocol: done when the store holds them all.
    until(|| stored() >= n as i64).await;
    let elapsed = started.elapsed();
    srv.stop().await;
    elapsed
}
