//! Stream ingress throughput: DingTalk Stream events pushed by the fake gateway from
//! `tests/common/streams.rs` as fast as the gateway takes them, each stored (SQLite, fully
//! durable) and acknowledged after its commit. `cargo bench --bench stream`;
//! `HOOKGATE_STREAM_EVENTS` sets how many (default 20,000).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use common::streams::DingFake;
use serde_json::json;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("stream: skipped; run it with `cargo bench --bench stream`");
        return;
    }
    let n: usize = std::env::var("HOOKGATE_STREAM_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let fake = DingFake::start("bench", "bench-secret").await;
        // No redelivery during the run: every event is pushed once.
        fake.hub.lock().unwrap().redeliver_after = Duration::from_secs(3600);
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"${{HOOKGATE_DB}}\"\n\
             [[receivers]]\nname = \"ding\"\nvendor = \"dingtalk_stream\"\nclient_id = \"bench\"\n\
             client_secret = \"bench-secret\"\napi_base = \"{}\"\n",
            fake.api_base()
        );
        let srv = common::start_file(&config, &[]).await;
        while fake.connections().1 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        for i in 0..n {
            fake.push_event(
                &format!("m-{i}"),
                "user_add_org",
                &format!("e-{i}"),
                json!({"timeStamp": "1685501863357", "userId": [format!("u{i}")], "deptId": [1, 2]}),
            );
        }
        let acked = || fake.state.lock().unwrap().acks.len();
        while acked() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        println!(
            "DingTalk stream, one connection, SQLite synchronous=full: {n} events stored and acked in {:.2?}: {:.0} events/s",
            elapsed,
            n as f64 / elapsed.as_secs_f64()
        );
        // Every ack said SUCCESS: each event was committed before it was acknowledged.
        let acks = fake.state.lock().unwrap().acks.clone();
        assert!(acks.iter().all(|(_, a)| a["data"].as_str().is_some_and(|d| d.contains("SUCCESS"))));
        srv.stop().await;
    });
}
