//! Claiming due deliveries from a store holding a million scheduled ones (timers due later):
//! the partial due-time index must keep a claim well under a millisecond.
//! `cargo bench --bench claim`.

use std::time::{Duration, Instant};

use hookgate::config::{StoreConfig, Synchronous};
use hookgate::store::Store;

const SCHEDULED: i64 = 1_000_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("claim: skipped; run it with `cargo bench --bench claim`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        synchronous: Synchronous::Normal,
        ..StoreConfig::sqlite(dir.path().join("claim.db"))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    drop(rt.block_on(Store::open(&config)).unwrap());
    let now = hookgate::clock::now_ms();
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&config.path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO events (receiver, vendor, kind, dedupe_key, received_at_ms, raw)
             VALUES ('r', 'wecom', 'k', 'k', ?1, '<xml/>')",
            [now],
        )
        .unwrap();
        let mut add = tx
            .prepare(
                "INSERT INTO deliveries (event_id, rule, action, kind, status, next_attempt_at_ms,
                                         deadline_ms, created_at_ms, updated_at_ms, correlation)
                 VALUES (1, 'remind', 0, 'log', 'pending', ?1, ?2, ?3, ?3, ?4)",
            )
            .unwrap();
        for i in 0..SCHEDULED {
            // Due over the next 30 days.
            let due = now + 60_000 + (i * 2_592_000_000 / SCHEDULED);
            add.execute(rusqlite::params![
                due,
                due + 86_400_000,
                now,
                format!("item-{i}")
            ])
            .unwrap();
        }
        drop(add);
        tx.commit().unwrap();
    }
    eprintln!(
        "stored {SCHEDULED} scheduled deliveries in {:.1?}",
        started.elapsed()
    );
    let store = rt.block_on(Store::open(&config)).unwrap();
    let mut samples = Vec::new();
    let mut claimed = 0usize;
    for round in 0..2_000i64 {
        // One delivery falls due each round (as a timer would), among the million.
        let due_now = {
            let conn = rusqlite::Connection::open(&config.path).unwrap();
            conn.execute(
                "UPDATE deliveries SET next_attempt_at_ms = ?1 WHERE id = ?2",
                rusqlite::params![now - 1, 1 + round * 400],
            )
            .unwrap()
        };
        assert_eq!(due_now, 1);
        let t = Instant::now();
        let got = rt
            .block_on(store.claim(hookgate::clock::now_ms(), 32))
            .unwrap();
        samples.push(t.elapsed());
        claimed += got.len();
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    let sum: Duration = samples.iter().sum();
    println!(
        "claim among {SCHEDULED} scheduled (one due each time, synchronous=normal): mean {:.1?}  p50 {:.1?}  p99 {:.1?}  max {:.1?}  ({claimed} claimed)",
        sum / samples.len() as u32,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    let t = Instant::now();
    let empty = rt
        .block_on(store.claim(hookgate::clock::now_ms(), 32))
        .unwrap();
    println!(
        "claim with nothing due: {:.1?} ({} claimed)",
        t.elapsed(),
        empty.len()
    );
}
