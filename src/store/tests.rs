//! The store's behaviour, run on both backends (each test twice: `sqlite::` and `postgres::`,
//! the latter on a scratch PostgreSQL from `tests/pg/start.sh`), plus what only several
//! PostgreSQL replicas can show (`tests/replicas.rs`): leases, shared rate limits and locks,
//! migrations.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Cancel, DeliveryFilter, DeliveryStatus, GroupRow, ListFilter, NewDelivery, Outcome,
    RequeueTarget, Store, StoreError,
};
use crate::crypto::Verified;
use crate::event::{Event, Vendor};
use crate::store::StoreConfig;

#[path = "../../tests/common/pg.rs"]
pub(super) mod pg;

#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A new, empty store's config: a file in `dir`, or a fresh schema.
    pub(super) fn config(self, dir: &Path, tag: &str) -> StoreConfig {
        match self {
            Backend::Sqlite => StoreConfig::sqlite(dir.join(format!("{tag}.db"))),
            Backend::Postgres => StoreConfig {
                pool_size: 8,
                ..StoreConfig::postgres(pg::fresh_url(tag))
            },
        }
    }
}

fn event(key: &str, now: i64) -> Event {
    let xml = format!("<xml><MsgType>text</MsgType><MsgId>{key}</MsgId></xml>");
    Event::parse("r", Vendor::WeCom, Verified::new(xml), now).unwrap()
}

fn delivery(rule: &str, action: usize, due_ms: i64, key: Option<&str>) -> NewDelivery {
    NewDelivery {
        spec: None,
        rule: rule.into(),
        action,
        kind: "log".into(),
        due_ms,
        key: key.map(Into::into),
        deadline_ms: i64::MAX,
    }
}

async fn statuses(store: &Store) -> Vec<(i64, DeliveryStatus)> {
    let mut rows: Vec<_> = store
        .deliveries(&DeliveryFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.status))
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

/// Each test once per backend.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(super::Backend::Sqlite.config(dir.path(), stringify!($name))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(super::Backend::Postgres.config(dir.path(), stringify!($name))).await;
                }
            )*
        }
    };
}

on_both!(
    a_retry_is_a_duplicate_and_adds_nothing,
    concurrent_copies_of_one_callback_store_one_event,
    a_rules_actions_run_in_order_and_a_dead_one_skips_the_rest,
    timers_wait_and_cancels_call_them_off,
    a_cancel_sees_only_what_was_stored_before_it,
    tokens_and_groups_are_kept,
    robot_budgets_slide_over_a_minute_and_pauses_hold,
    a_named_lock_is_held_until_dropped,
    reopening_migrates_nothing_twice,
    events_are_listed_and_read_back,
    a_robot_sign_carries_one_body,
    a_schedule_keeps_its_last_slot_and_each_slot_is_stored_once,
    outcomes_recorded_together_each_do_what_they_do_alone,
);

/// The worker records whatever outcomes are waiting in one `finish_many`: each must have the
/// effect it has alone (a done one frees its successor, a dead one skips the rest of its
/// rule, a retry and a deferral come due again), and an empty batch is nothing.
async fn outcomes_recorded_together_each_do_what_they_do_alone(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    for (key, rule) in [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")] {
        let ds = (0..2).map(|a| delivery(rule, a, 100, None)).collect();
        store.accept(event(key, 100), ds, vec![]).await.unwrap();
    }
    let claimed = store.claim(100, 10).await.unwrap();
    let firsts: Vec<i64> = claimed.iter().map(|d| d.id).collect();
    assert_eq!(firsts.len(), 4);
    store.finish_many(Vec::new(), 110).await.unwrap();
    let outcomes = vec![
        (firsts[0], Outcome::Done { result: None }),
        (firsts[1], Outcome::Dead { error: "no".into() }),
        (
            firsts[2],
            Outcome::Retry {
                at_ms: 500,
                error: "e".into(),
            },
        ),
        (firsts[3], Outcome::Defer { at_ms: 700 }),
    ];
    store.finish_many(outcomes, 110).await.unwrap();
    use DeliveryStatus::{Dead, Done, Pending, Waiting};
    let all = statuses(&store).await;
    let after = |id: i64| all.iter().find(|r| r.0 > id).unwrap().1;
    assert_eq!(all.iter().find(|r| r.0 == firsts[0]).unwrap().1, Done);
    assert_eq!(after(firsts[0]), Pending, "a done one frees its successor");
    assert_eq!(all.iter().find(|r| r.0 == firsts[1]).unwrap().1, Dead);
    assert_eq!(after(firsts[1]), Dead, "a dead one skips the rest");
    assert_eq!(after(firsts[2]), Waiting);
    assert_eq!(after(firsts[3]), Waiting);
    // Due now: the freed successor; then the retry at 500 and the deferral at 700, whose
    // attempt was given back.
    assert_eq!(store.claim(110, 10).await.unwrap().len(), 1);
    let retried = store.claim(500, 10).await.unwrap();
    assert_eq!((retried.len(), retried[0].attempts), (1, 2));
    let deferred = store.claim(700, 10).await.unwrap();
    assert_eq!((deferred.len(), deferred[0].attempts), (1, 1));
}

async fn a_schedule_keeps_its_last_slot_and_each_slot_is_stored_once(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    // First seen: starts at the latest slot now; seen again, it keeps what it handled.
    assert_eq!(
        store.schedule_known("d", "0 9 * * *", 100).await.unwrap(),
        100
    );
    store.schedule_handled("d", 200).await.unwrap();
    // An older slot finished late by another process does not move it back.
    store.schedule_handled("d", 150).await.unwrap();
    assert_eq!(
        store.schedule_known("d", "0 9 * * *", 300).await.unwrap(),
        200
    );
    // A changed schedule starts afresh.
    assert_eq!(
        store.schedule_known("d", "0 10 * * *", 300).await.unwrap(),
        300
    );
    // One slot's event is stored once, however many processes reach it.
    let tz = jiff::tz::TimeZone::UTC;
    let slot = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let first = store
        .accept(
            Event::scheduled("d", slot, &tz, 1),
            vec![delivery("d", 0, 1, None)],
            vec![],
        )
        .await
        .unwrap();
    let again = store
        .accept(
            Event::scheduled("d", slot, &tz, 2),
            vec![delivery("d", 0, 2, None)],
            vec![],
        )
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate, "{first:?} {again:?}");
    assert_eq!(statuses(&store).await.len(), 1);
}

async fn a_robot_sign_carries_one_body(config: StoreConfig) {
    use crate::crypto::robot::SignUse;
    let store = Store::open(&config).await.unwrap();
    // Remembered for 1 s after each use.
    let used = |receiver: &str, body: &[u8], now: i64| {
        SignUse::new(receiver, "1700", "c2lnbg==", body, now + 1_000)
    };
    let once = |u: SignUse, now: i64| {
        let store = &store;
        async move { store.sign_once(u, now).await.unwrap() }
    };
    assert!(once(used("bot", b"a", 0), 0).await);
    assert!(once(used("bot", b"a", 10), 10).await, "a retry");
    assert!(!once(used("bot", b"b", 20), 20).await, "a replay");
    assert!(once(used("other", b"b", 20), 20).await);
    assert!(
        once(used("bot", b"b", 1_010), 1_010).await,
        "past its window"
    );
    assert!(!once(used("bot", b"a", 1_020), 1_020).await);
    store.maintain(5_000).await.unwrap();
}

async fn a_retry_is_a_duplicate_and_adds_nothing(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let first = store
        .accept(event("1", 10), vec![delivery("r", 0, 10, None)], vec![])
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = store
        .accept(event("1", 20), vec![delivery("r", 0, 20, None)], vec![])
        .await
        .unwrap();
    assert_eq!((again.id, again.duplicate), (first.id, true));
    assert_eq!(statuses(&store).await.len(), 1);
}

async fn concurrent_copies_of_one_callback_store_one_event(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        // 20 distinct callbacks, each arriving 10 times at once.
        let key = (i % 20).to_string();
        tasks.push(tokio::spawn(async move {
            store
                .accept(event(&key, 1), vec![delivery("r", 0, 1, None)], vec![])
                .await
                .unwrap()
        }));
    }
    let mut new = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let s = t.await.unwrap();
        new += usize::from(!s.duplicate);
        ids.insert(s.id);
    }
    assert_eq!((new, ids.len()), (20, 20));
    assert_eq!(statuses(&store).await.len(), 20);
}

async fn a_rules_actions_run_in_order_and_a_dead_one_skips_the_rest(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let ds = (0..3).map(|a| delivery("r", a, 100, None)).collect();
    store.accept(event("1", 100), ds, vec![]).await.unwrap();
    use DeliveryStatus::{Dead, Done, Pending, Running, Waiting};
    let ids: Vec<i64> = statuses(&store).await.iter().map(|r| r.0).collect();
    assert_eq!(
        statuses(&store).await,
        vec![(ids[0], Pending), (ids[1], Waiting), (ids[2], Waiting)]
    );
    let claimed = store.claim(100, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].attempts), (ids[0], 1));
    assert_eq!(claimed[0].event.dedupe_key, event("1", 0).dedupe_key());
    store
        .finish(ids[0], Outcome::Done { result: None }, 110)
        .await
        .unwrap();
    assert_eq!(statuses(&store).await[1], (ids[1], Pending));
    let claimed = store.claim(110, 10).await.unwrap();
    assert_eq!(claimed[0].id, ids[1]);
    assert_eq!(statuses(&store).await[1], (ids[1], Running));
    // A retry comes back later; a deferral does not count as an attempt.
    store
        .finish(
            ids[1],
            Outcome::Retry {
                at_ms: 500,
                error: "e".into(),
            },
            120,
        )
        .await
        .unwrap();
    assert!(store.claim(499, 10).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), Some(500));
    let again = store.claim(500, 10).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    store
        .finish(ids[1], Outcome::Defer { at_ms: 600 }, 500)
        .await
        .unwrap();
    let again = store.claim(600, 10).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    store
        .finish(ids[1], Outcome::Dead { error: "no".into() }, 600)
        .await
        .unwrap();
    let rows = store
        .deliveries(&DeliveryFilter {
            status: Some(Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("skipped: action 1 of the rule is dead")
    );
    // Retrying the dead one puts its skipped successor back to waiting for it.
    let n = store
        .requeue(RequeueTarget::Id(ids[1]), 700, i64::MAX)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        statuses(&store).await,
        vec![(ids[0], Done), (ids[1], Pending), (ids[2], Waiting)]
    );
    assert_eq!(store.pending_stats().await.unwrap(), (2, Some(100)));
}

async fn timers_wait_and_cancels_call_them_off(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let ds = vec![
        delivery("remind", 0, 5_000, Some("item-1")),
        delivery("remind", 1, 5_000, Some("item-1")),
        delivery("other", 0, 5_000, Some("item-1")),
    ];
    store.accept(event("1", 0), ds, vec![]).await.unwrap();
    assert!(store.claim(4_999, 10).await.unwrap().is_empty());
    let scheduled = store
        .deliveries(&DeliveryFilter {
            status: Some(DeliveryStatus::Scheduled),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    // "Scheduled" compares with the wall clock: these are due at 5 s after the epoch.
    assert!(scheduled.is_empty());
    // A later event cancels the key, for one rule only.
    let cancel = Cancel {
        key: "item-1".into(),
        rules: vec!["remind".into()],
        reason: "finished".into(),
    };
    store
        .accept(event("2", 1_000), vec![], vec![cancel.clone()])
        .await
        .unwrap();
    let rows = statuses(&store).await;
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        [
            DeliveryStatus::Cancelled,
            DeliveryStatus::Cancelled,
            DeliveryStatus::Pending
        ]
    );
    // The same event again cancels nothing more; the CLI's cancel by key takes the rest.
    store
        .accept(event("2", 1_000), vec![], vec![cancel])
        .await
        .unwrap();
    assert_eq!(
        store
            .cancel(Some("item-1".into()), None, "by hand", 2_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.cancel(None, Some(rows[0].0), "x", 1).await.unwrap(),
        0
    );
}

async fn a_cancel_sees_only_what_was_stored_before_it(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let cancel = || Cancel {
        key: "k".into(),
        rules: vec![],
        reason: "called off".into(),
    };
    // A timer, its cancel, then a new timer with the same key (which must stay).
    let a = store
        .accept(
            event("a", 1),
            vec![delivery("r", 0, 9_000, Some("k"))],
            vec![],
        )
        .await
        .unwrap();
    store
        .accept(event("b", 2), vec![], vec![cancel()])
        .await
        .unwrap();
    let c = store
        .accept(
            event("c", 3),
            vec![delivery("r", 0, 9_000, Some("k"))],
            vec![],
        )
        .await
        .unwrap();
    let rows = store
        .deliveries(&DeliveryFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let of = |id| rows.iter().find(|d| d.event_id == id).unwrap().status;
    assert_eq!(of(a.id), DeliveryStatus::Cancelled);
    assert_eq!(of(c.id), DeliveryStatus::Pending);
}

async fn tokens_and_groups_are_kept(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    assert_eq!(store.token("app").await.unwrap(), None);
    store.put_token("app", "t1", 99).await.unwrap();
    store.put_token("app", "t2", 100).await.unwrap();
    // Forgetting a token another process already replaced does nothing.
    store.forget_token("app", "t1").await.unwrap();
    assert_eq!(store.token("app").await.unwrap(), Some(("t2".into(), 100)));
    store.forget_token("app", "t2").await.unwrap();
    assert_eq!(store.token("app").await.unwrap(), None);

    let group = |chat: &str, name: &str, open: Option<&str>| GroupRow {
        connection: "dt".into(),
        key: "item".into(),
        chat_id: chat.into(),
        open_conversation_id: open.map(Into::into),
        name: name.into(),
        created_at_ms: 1,
        updated_at_ms: 2,
    };
    store.put_group(group("chat1", "A", None)).await.unwrap();
    store
        .put_group(group("chat2", "B", Some("cid1")))
        .await
        .unwrap();
    let g = store.group("dt", "item").await.unwrap().unwrap();
    assert_eq!(
        (g.chat_id.as_str(), g.name.as_str()),
        ("chat1", "B"),
        "the first chat id stays"
    );
    assert_eq!(g.open_conversation_id.as_deref(), Some("cid1"));
    assert_eq!(store.groups(10).await.unwrap().len(), 1);
    assert_eq!(store.group("dt", "other").await.unwrap(), None);

    // A creation noted before the vendor is asked (chat id ""), then its answer; forgetting
    // a key lets it be created anew.
    assert!(store.forget_group("dt", "item").await.unwrap());
    assert!(!store.forget_group("dt", "item").await.unwrap());
    store.put_group(group("", "C", None)).await.unwrap();
    assert_eq!(
        store.group("dt", "item").await.unwrap().unwrap().chat_id,
        ""
    );
    store
        .put_group(group("chat3", "C", Some("cid3")))
        .await
        .unwrap();
    let g = store.group("dt", "item").await.unwrap().unwrap();
    assert_eq!(
        (g.chat_id.as_str(), g.open_conversation_id.as_deref()),
        ("chat3", Some("cid3"))
    );
}

async fn robot_budgets_slide_over_a_minute_and_pauses_hold(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let s = 1_000;
    for i in 0..3 {
        assert_eq!(store.rate_take("w", 3, i * s).await.unwrap(), None);
    }
    assert_eq!(store.rate_take("w", 3, 10 * s).await.unwrap(), Some(50 * s));
    assert_eq!(store.rate_take("other", 3, 10 * s).await.unwrap(), None);
    assert_eq!(store.rate_take("w", 3, 60 * s).await.unwrap(), None);
    store.rate_pause("w", 661 * s).await.unwrap();
    assert_eq!(
        store.rate_take("w", 3, 161 * s).await.unwrap(),
        Some(500 * s)
    );
    store.maintain(700 * s).await.unwrap();
    assert_eq!(store.rate_take("w", 3, 700 * s).await.unwrap(), None);
}

async fn a_named_lock_is_held_until_dropped(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let held = store.lock("group:dt:item").await.unwrap();
    let other = store.clone();
    let waiter = tokio::spawn(async move { other.lock("group:dt:item").await.map(drop) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "a second holder got in");
    // Other names are free.
    drop(store.lock("group:dt:else").await.unwrap());
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the lock was not released")
        .unwrap()
        .unwrap();
}

async fn reopening_migrates_nothing_twice(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let (was, now) = store.schema_versions();
    assert_eq!(was, 0);
    assert!(now >= 1);
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = Store::open(&config).await.unwrap();
    assert_eq!(store.schema_versions(), (now, now));
}

async fn events_are_listed_and_read_back(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    for i in 0..3 {
        store
            .accept(event(&i.to_string(), i), vec![], vec![])
            .await
            .unwrap();
    }
    let all = store
        .list(&ListFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].id > all[1].id, "newest first");
    let one = store.get(all[0].id).await.unwrap().unwrap();
    assert_eq!(one, all[0]);
    assert_eq!(one.fields["MsgId"], "2");
    assert_eq!(store.get(9_999).await.unwrap(), None);
    store.ping().await.unwrap();
}

// What only replicas sharing a PostgreSQL database show.

mod replicas;

// What operators read and do (the admin API, the CLI).

mod operators;

// Retention: what `keep_events` and `keep_deliveries` let go.

mod retention;

/// What `/metrics` reads on every scrape comes from the index of open deliveries alone, never
/// a scan of every delivery the store ever held (a scrape took seconds at 10 M).
#[tokio::test]
async fn the_backlog_a_scrape_reads_is_an_index_of_open_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let config = Backend::Sqlite.config(dir.path(), "plan");
    drop(Store::open(&config).await.unwrap());
    let conn = rusqlite::Connection::open(&config.path).unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::sql::PENDING_STATS.sqlite()
        ))
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        plan,
        ["SCAN deliveries USING COVERING INDEX deliveries_open"],
        "{plan:?}"
    );
}

/// A store with nothing to commit for a while is one file again: the checkpointer empties
/// the WAL once nothing was written for a while (a minute; 3 s in unit tests; empty claims
/// count as nothing), instead of leaving up to 8 MiB behind.
#[tokio::test]
async fn an_idle_store_empties_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let config = Backend::Sqlite.config(dir.path(), "idle");
    let store = Store::open(&config).await.unwrap();
    let wal = format!("{}-wal", config.path.display());
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    for i in 0..50 {
        let key = i.to_string();
        store
            .accept(event(&key, 100), vec![], vec![])
            .await
            .unwrap();
    }
    assert!(size() > 0, "the burst went through the WAL");
    // The worker's poll claims nothing every second: that is not work.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while size() > 0 && std::time::Instant::now() < until {
        assert!(
            store
                .claim(crate::clock::now_ms(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(size(), 0, "the WAL is empty once the store is idle");
    // And the events are in the database file itself.
    let conn = rusqlite::Connection::open(&config.path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 50);
}
