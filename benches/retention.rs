//! Retention on a grown SQLite store: 300,000 events over 100 days (one delivery each, one
//! in 1,000 a timer still waiting) pruned to 30 days by the batched walk the background task
//! runs. Reports events removed per second, each batch's time in the writer (its write lock:
//! callbacks wait at most that long), and the latency of callbacks committed one after
//! another meanwhile against the same before the prune, in one run.
//! `cargo bench --bench retention`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hookgate::event::Event;
use hookgate::retention::{Cursors, pass};
use hookgate::store::{PruneStep, PruneWhat, Retention, Store, StoreConfig};

const EVENTS: i64 = 300_000;
const DAY: i64 = 86_400_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("retention: skipped; run it with `cargo bench --bench retention`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&db));
}

async fn run(db: &std::path::Path) {
    let store = Store::open(&StoreConfig::sqlite(db)).await.unwrap();
    fill(db);
    let now = hookgate::clock::now_ms();
    let keep = Retention {
        keep_events: Some(Duration::from_secs(30 * 86_400)),
        ..Retention::default()
    };
    let baseline = accepts_while(&store, Duration::from_secs(3), None).await;

    // The walk batch by batch, each timed: what one batch holds the writer for.
    let mut batches = Vec::new();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move { accepts_while(&store, Duration::from_secs(3600), Some(stop)).await }
    });
    let mut step = PruneStep {
        what: PruneWhat::Events,
        before_ms: now - 30 * DAY,
        after_id: 0,
        limit: 256,
    };
    let mut removed = 0;
    loop {
        let t = Instant::now();
        let b = store.prune(step).await.unwrap();
        batches.push(t.elapsed());
        removed += b.events;
        step.after_id = b.last_id.unwrap_or(step.after_id);
        if b.done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let walk = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = during.await.unwrap();
    // What the same pass finds left to do: nothing (the kept timers' events only).
    let again = pass(&store, &keep, now, &mut Cursors::default(), Duration::ZERO)
        .await
        .unwrap();
    batches.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!(
        "retention: removed {removed} events (+ their deliveries) of {EVENTS} in {:.1} s with 20 ms pauses: {:.0} events/s; {} batches of 256",
        walk.as_secs_f64(),
        removed as f64 / walk.as_secs_f64(),
        batches.len()
    );
    println!(
        "retention: one batch in the writer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(&batches, 0.5)),
        ms(pct(&batches, 0.99)),
        ms(*batches.last().unwrap())
    );
    for (what, mut l) in [("before the prune", baseline), ("during the prune", during)] {
        l.sort();
        println!(
            "retention: callbacks committed one at a time {what}: {} commits, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            l.len(),
            ms(pct(&l, 0.5)),
            ms(pct(&l, 0.99)),
            ms(*l.last().unwrap())
        );
    }
    println!("retention: a second pass removed {} more", again.events);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Commits fresh events one after another (each awaited) for `secs` or until `stop`; the
/// latency of each.
async fn accepts_while(
    store: &Store,
    secs: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Vec<Duration> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut n = 0u64;
    while started.elapsed() < secs && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
        n += 1;
        // A distinct slot each: a distinct event (`rule@slot`) to store.
        let rule = if stop.is_some() { "during" } else { "before" };
        let slot = jiff::Timestamp::from_second(i64::try_from(n).unwrap()).unwrap();
        let e = Event::scheduled(
            rule,
            slot,
            &jiff::tz::TimeZone::UTC,
            hookgate::clock::now_ms(),
        );
        let t = Instant::now();
        store.accept(e, vec![], vec![]).await.unwrap();
        out.push(t.elapsed());
    }
    out
}

/// [`EVENTS`] events over the last 100 days, each with a finished delivery; one in 1,000
/// with a timer due in a year instead (kept by the prune).
fn fill(db: &std::path::Path) {
    let started = Instant::now();
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let now = hookgate::clock::now_ms();
    let span = 100 * DAY;
    let tx = conn.transaction().unwrap();
    {
        let mut event = tx
            .prepare(
                "INSERT INTO events (id, receiver, vendor, kind, dedupe_key, received_at_ms, raw)
                 VALUES (?1, 'shop', 'webhook', 'order', ?2, ?3, ?4)",
            )
            .unwrap();
        let mut delivery = tx
            .prepare(
                "INSERT INTO deliveries (event_id, rule, action, kind, status, next_attempt_at_ms,
                     deadline_ms, created_at_ms, updated_at_ms, attempts)
                 VALUES (?1, 'notify', 0, 'http', ?2, ?3, ?3, ?4, ?4, 1)",
            )
            .unwrap();
        for i in 1..=EVENTS {
            let at = now - span + span * i / EVENTS;
            let raw = format!(
                r#"{{"id":"order-{i}","amount":{},"note":"an ordinary order"}}"#,
                i % 1000
            );
            event
                .execute(rusqlite::params![i, format!("order-{i}"), at, raw])
                .unwrap();
            let (status, due) = if i % 1000 == 0 {
                ("pending", now + 365 * DAY)
            } else {
                ("done", at)
            };
            delivery
                .execute(rusqlite::params![i, status, due, at])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    println!(
        "retention: built {EVENTS} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
