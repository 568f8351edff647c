//! The console's list pages on a store of 1,000,000 events (SQLite, as the app makes it):
//! the admin API over HTTP against the real app, each request timed from send to the last
//! byte, p50 and p99 of 200 requests per page shape: the first page, a page 500,000 events
//! deep, a receiver filter that matches one event in 100, a time window a month back, a text
//! search, and the dead letters. The store is built once under `target/bench-console/` and
//! reused. `cargo bench --bench console`.

use std::time::{Duration, Instant};

use hookgate::app::{App, Listeners};
use hookgate::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENTS: i64 = 1_000_000;
const REQUESTS: usize = 200;
const TOKEN: &str = "bench-console-token-0123";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("console: skipped; run it with `cargo bench --bench console`");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-console");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("hookgate.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&db));
}

/// Fills the store with [`EVENTS`] events over the last 100 days (one in 100 from receiver
/// `rare`, the rest from `busy`), each with a delivery, one delivery in 1,000 dead.
fn fill(db: &std::path::Path) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let have: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    if have == EVENTS {
        return;
    }
    let started = Instant::now();
    conn.execute_batch("DELETE FROM deliveries; DELETE FROM events;")
        .unwrap();
    let now = hookgate::clock::now_ms();
    let span = 100 * 24 * 3600 * 1000_i64;
    let tx = conn.transaction().unwrap();
    {
        let mut event = tx
            .prepare(
                "INSERT INTO events (id, receiver, vendor, kind, dedupe_key, received_at_ms, raw)
                 VALUES (?1, ?2, 'webhook', ?3, ?4, ?5, ?6)",
            )
            .unwrap();
        let mut delivery = tx
            .prepare(
                "INSERT INTO deliveries (event_id, rule, action, kind, status, next_attempt_at_ms,
                     deadline_ms, created_at_ms, updated_at_ms, attempts, last_error)
                 VALUES (?1, 'notify', 0, 'http', ?2, ?3, ?3, ?3, ?3, 1, ?4)",
            )
            .unwrap();
        for i in 1..=EVENTS {
            let at = now - span + span * i / EVENTS;
            let receiver = if i % 100 == 0 { "rare" } else { "busy" };
            let kind = ["created", "updated", "deleted"][usize::try_from(i % 3).unwrap()];
            let raw = format!(
                r#"{{"id":"order-{i}","type":"{kind}","customer":"c-{}","amount":{},"note":"ordinary order number {i} from the shop front"}}"#,
                i % 9973,
                i % 1000
            );
            event
                .execute(rusqlite::params![
                    i,
                    receiver,
                    kind,
                    format!("order-{i}"),
                    at,
                    raw
                ])
                .unwrap();
            let (status, error) = if i % 1000 == 0 {
                ("dead", Some("gave up after 1 attempts: 502"))
            } else {
                ("done", None)
            };
            delivery
                .execute(rusqlite::params![i, status, at, error])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE").unwrap();
    println!(
        "console: built {EVENTS} events in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

async fn run(db: &std::path::Path) {
    let src = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
path = {}
[admin]
tokens = ["bench:{TOKEN}"]
[[receivers]]
name = "busy"
vendor = "webhook"
path = "/busy"
auth = "none"
"#,
        toml::Value::String(db.display().to_string())
    );
    let config = hookgate::config::parse(&src, &|_| None).unwrap();
    // The schema first (migrations), then the rows.
    drop(Store::open(&config.store).await.unwrap());
    let path = db.to_owned();
    tokio::task::spawn_blocking(move || fill(&path))
        .await
        .unwrap();
    let store = Store::open(&config.store).await.unwrap();
    let listeners = Listeners::bind(&config.server).await.unwrap();
    let app = App::start(config, store, listeners).await.unwrap();
    let admin = app.admin_addr().unwrap();
    let month_ago = hookgate::clock::now_ms() - 30 * 24 * 3600 * 1000;
    let shapes = [
        ("first page", "/api/v1/events?limit=50".to_owned()),
        (
            "500,000 deep",
            "/api/v1/events?limit=50&before=500000".to_owned(),
        ),
        (
            "receiver, 1 in 100",
            "/api/v1/events?limit=50&receiver=rare".to_owned(),
        ),
        (
            "a day a month back",
            format!(
                "/api/v1/events?limit=50&since_ms={}&until_ms={}",
                month_ago,
                month_ago + 24 * 3600 * 1000
            ),
        ),
        (
            "text search",
            "/api/v1/events?limit=50&text=c-4242%22".to_owned(),
        ),
        (
            "dead letters",
            "/api/v1/deliveries?status=dead&limit=50".to_owned(),
        ),
    ];
    println!("console: {EVENTS} events, {REQUESTS} requests per page shape, one at a time");
    println!(
        "{:<22} {:>10} {:>10} {:>7}",
        "page", "p50 ms", "p99 ms", "rows"
    );
    for (name, path) in &shapes {
        let mut times = Vec::with_capacity(REQUESTS);
        let mut rows = 0;
        for _ in 0..REQUESTS {
            let started = Instant::now();
            let body = get(admin, path).await;
            times.push(started.elapsed());
            let page: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
            rows = page["items"].as_array().map_or(0, Vec::len);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<22} {:>10.2} {:>10.2} {rows:>7}",
            ms(times[REQUESTS / 2]),
            ms(times[REQUESTS * 99 / 100])
        );
    }
    app.shutdown().await;
}

/// One GET on a new connection; the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    out.split_off(split)
}
