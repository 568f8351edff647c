//! What only PostgreSQL can show, with several replicas on one database: leases, wake-ups
//! across replicas, disjoint claims, shared budgets and locks, migrations, TLS; and a
//! failed SQLite commit answering every op with its cause.

use super::*;

fn replica_config(url: &str, lease: Duration) -> StoreConfig {
    StoreConfig {
        pool_size: 4,
        lease,
        ..StoreConfig::postgres(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_renewing_loses_its_claims_to_another() {
    let url = pg::fresh_url("lease");
    let a = Store::open(&replica_config(&url, Duration::from_secs(10)))
        .await
        .unwrap();
    let b = Store::open(&replica_config(&url, Duration::from_secs(10)))
        .await
        .unwrap();
    a.accept(event("1", 0), vec![delivery("r", 0, 0, None)], vec![])
        .await
        .unwrap();
    let claimed = a.claim(0, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // Nobody else gets it while the claim holds, and renewing moves the lease on.
    assert!(b.claim(0, 10).await.unwrap().is_empty());
    a.maintain(9_000).await.unwrap();
    assert_eq!(b.maintain(15_000).await.unwrap(), 0, "renewed at 9 s");
    // A stops renewing (it died): after its lease B frees the claim and runs it.
    assert_eq!(b.maintain(19_001).await.unwrap(), 1);
    let again = b.claim(19_001, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 2));
    // A's late outcome must not overwrite B's claim.
    a.finish(claimed[0].id, Outcome::Done { result: None }, 19_002)
        .await
        .unwrap();
    assert_eq!(
        statuses(&b).await[0].1,
        DeliveryStatus::Running,
        "a lapsed claim finished the delivery"
    );
    b.finish(claimed[0].id, Outcome::Done { result: None }, 19_003)
        .await
        .unwrap();
    assert_eq!(statuses(&b).await[0].1, DeliveryStatus::Done);
    // Starting a replica frees only lapsed claims, not those of live replicas.
    b.accept(event("2", 0), vec![delivery("r", 0, 0, None)], vec![])
        .await
        .unwrap();
    b.claim(20_000, 10).await.unwrap();
    assert_eq!(
        a.requeue(RequeueTarget::Running, 20_001, 0).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_woken_by_deliveries_committed_on_another() {
    let url = pg::fresh_url("wake");
    let config = replica_config(&url, Duration::from_secs(30));
    let a = Store::open(&config).await.unwrap();
    let b = Store::open(&config).await.unwrap();
    // Another installation in the same database is not woken.
    let other = Store::open(&replica_config(
        &pg::fresh_url("wake_other"),
        Duration::from_secs(30),
    ))
    .await
    .unwrap();
    let (woken, elsewhere) = (b.due_notify(), other.due_notify());
    // Each LISTEN connection wakes its worker once when it starts listening.
    for n in [&woken, &elsewhere] {
        tokio::time::timeout(Duration::from_secs(5), n.notified())
            .await
            .expect("listening");
    }
    let waiting = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(5), woken.notified()).await
    });
    let idle = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_millis(1500), elsewhere.notified()).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.accept(event("1", 0), vec![delivery("r", 0, 0, None)], vec![])
        .await
        .unwrap();
    assert!(waiting.await.unwrap().is_ok(), "b was not woken");
    assert!(idle.await.unwrap().is_err(), "another schema was woken");
    // A `deliveries retry` (its own short-lived process) wakes the replicas too.
    let claimed = b.claim(0, 10).await.unwrap();
    b.finish(claimed[0].id, Outcome::Dead { error: "x".into() }, 1)
        .await
        .unwrap();
    let woken = a.due_notify();
    // A's own accept left a wake-up (local, and the echo of its NOTIFY): use it up first.
    while tokio::time::timeout(Duration::from_millis(300), woken.notified())
        .await
        .is_ok()
    {}
    let waiting = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(5), woken.notified()).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.requeue(RequeueTarget::AllDead, 2, i64::MAX / 4)
        .await
        .unwrap();
    assert!(
        waiting.await.unwrap().is_ok(),
        "a was not woken by the retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_claim_disjoint_deliveries() {
    let url = pg::fresh_url("claims");
    let config = replica_config(&url, Duration::from_secs(30));
    let stores = [
        Store::open(&config).await.unwrap(),
        Store::open(&config).await.unwrap(),
        Store::open(&config).await.unwrap(),
    ];
    for i in 0..300 {
        stores[i % 3]
            .accept(
                event(&i.to_string(), 0),
                vec![delivery("r", 0, 0, None)],
                vec![],
            )
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for s in &stores {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim(1, 7).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|d| d.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (300, 300), "a delivery was claimed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_robot_budgets_and_locks() {
    let url = pg::fresh_url("shared");
    let config = replica_config(&url, Duration::from_secs(30));
    let a = Store::open(&config).await.unwrap();
    let b = Store::open(&config).await.unwrap();
    let mut granted = 0;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.rate_take("robot", 20, 1_000).await
        }));
    }
    for t in tasks {
        granted += usize::from(t.await.unwrap().unwrap().is_none());
    }
    assert_eq!(granted, 20);
    b.rate_pause("robot", 600_000).await.unwrap();
    assert_eq!(
        a.rate_take("robot", 20, 100_000).await.unwrap(),
        Some(500_000)
    );

    let held = a.lock("token:x").await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock("token:x").await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "two replicas held one lock");
    // Another installation in the same database (its own schema) has its own locks.
    let elsewhere = Store::open(&replica_config(
        &pg::fresh_url("shared_other"),
        Duration::from_secs(30),
    ))
    .await
    .unwrap();
    let own = tokio::time::timeout(Duration::from_secs(5), elsewhere.lock("token:x")).await;
    assert!(
        own.is_ok_and(|l| l.is_ok()),
        "a lock in another schema waited"
    );
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let schema = pg::fresh_schema("newer");
    let url = pg::schema_url(&schema);
    drop(Store::open(&StoreConfig::postgres(&url)).await.unwrap());
    pg::psql(&format!(
        "INSERT INTO {schema}.hookgate_schema VALUES (99, 0)"
    ));
    match Store::open(&StoreConfig::postgres(&url)).await {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a store from the future"),
    }
}

/// Before the steps were paired, a PostgreSQL store had two: the rate-limit tables came in
/// the first, the fingerprints and signs in the second. Such a store at either version takes
/// the paired steps in place and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_from_the_two_step_history_upgrades_in_place() {
    use crate::store::migrations::STEPS;
    for old_version in [1, 2] {
        let schema = pg::fresh_schema("unpaired");
        let mut sql = format!(
            "SET search_path TO {schema};
             CREATE TABLE hookgate_schema (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL);
             {}{}INSERT INTO hookgate_schema VALUES (1, 0);",
            STEPS[0].postgres, STEPS[1].postgres
        );
        if old_version == 2 {
            sql += &format!(
                "{}INSERT INTO hookgate_schema VALUES (2, 0);",
                STEPS[2].postgres
            );
        }
        pg::psql(&sql);
        let store = Store::open(&StoreConfig::postgres(pg::schema_url(&schema)))
            .await
            .unwrap();
        assert_eq!(store.schema_versions(), (old_version, STEPS.len() as i64));
        let stored = store
            .accept(event("1", 0), vec![delivery("r", 0, 0, Some("k"))], vec![])
            .await
            .unwrap();
        assert!(!stored.duplicate);
        assert_eq!(store.claim(1, 8).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_with_the_servers_ca() {
    crate::tls::install_provider();
    let url = format!("{}&sslmode=require", pg::fresh_url("tls"));
    let config = StoreConfig {
        ca_file: Some(pg::server_cert()),
        ..StoreConfig::postgres(&url)
    };
    let store = Store::open(&config).await.unwrap();
    store.accept(event("1", 0), vec![], vec![]).await.unwrap();
    let app = format!("hookgate-tls-{}", std::process::id());
    drop(store);
    // Every connection of that store went over TLS: prove one does.
    let config = StoreConfig {
        ca_file: Some(pg::server_cert()),
        ..StoreConfig::postgres(format!("{url}&application_name={app}"))
    };
    let store = Arc::new(Store::open(&config).await.unwrap());
    store.ping().await.unwrap();
    let ssl = pg::psql(&format!(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = '{app}'"
    ));
    assert_eq!(ssl, "t");
    // Verified against the system's roots instead, the self-signed certificate is refused.
    let untrusted = StoreConfig::postgres(url.replace("sslmode=require", "sslmode=verify-full"));
    let e = Store::open(&untrusted)
        .await
        .err()
        .expect("an unknown issuer was trusted");
    assert!(e.to_string().contains("certificate"), "{e}");
}

/// Security review, defect 8: a failed commit dropped the batch's answers, so callers heard
/// "the store is shut down" instead of the cause; `/readyz` now reads the same cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_every_op_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let config = Backend::Sqlite.config(dir.path(), "failed_commit");
    let store = Store::open(&config).await.unwrap();
    rusqlite::Connection::open(&config.path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let results = futures_util::future::join_all(
        (0..5).map(|i| store.accept(event(&i.to_string(), 10), vec![], vec![])),
    )
    .await;
    for r in results {
        match r {
            Err(e @ StoreError::Commit(_)) => assert!(e.to_string().contains("disk full"), "{e}"),
            other => panic!("want the commit's cause, got {other:?}"),
        }
    }
    let cause = store.health().failing(crate::clock::now_ms()).unwrap();
    assert!(cause.contains("disk full"), "{cause}");
    assert!(store.health().failures() >= 1);
}
