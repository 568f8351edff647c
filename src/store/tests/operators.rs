//! What the admin API and the CLI read and do, on both backends: filtered pages of events,
//! each attempt of a delivery and the dead letters by rule, replays (never twice for a rule
//! still unfinished), the audit trail.

use super::*;

on_both!(
    events_are_paged_and_filtered,
    attempts_are_kept_and_dead_letters_counted_by_rule,
    a_replay_leaves_out_unfinished_rules_and_the_audit_trail_keeps_who,
);

/// Five events of receiver `r` (at 0, 1000, … ms; two actions of rule `r` each) and one of
/// receiver `other`; their ids.
async fn five_events(store: &Store) -> Vec<i64> {
    let xml = "<xml><MsgType>text</MsgType><MsgId>x</MsgId></xml>".to_owned();
    let other = Event::parse("other", Vendor::WeCom, Verified::new(xml), 5_000).unwrap();
    store.accept(other, vec![], vec![]).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let ds = vec![delivery("r", 0, 0, None), delivery("r", 1, 0, None)];
        let e = event(&format!("k{i}"), i * 1_000);
        ids.push(store.accept(e, ds, vec![]).await.unwrap().id);
    }
    ids
}

async fn events_are_paged_and_filtered(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let ids = five_events(&store).await;
    let page = |f: ListFilter| {
        let store = store.clone();
        async move {
            let rows = store.list(&f).await.unwrap();
            rows.iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let f = |limit| ListFilter {
        receiver: Some("r".into()),
        limit,
        ..Default::default()
    };
    assert_eq!(page(f(2)).await, vec![ids[4], ids[3]]);
    let next = ListFilter {
        before: Some(ids[3]),
        ..f(2)
    };
    assert_eq!(page(next).await, vec![ids[2], ids[1]]);
    let kind = ListFilter {
        kind: Some("click".into()),
        ..f(9)
    };
    assert_eq!(page(kind).await, Vec::<i64>::new());
    let window = ListFilter {
        since_ms: Some(1_000),
        until_ms: Some(3_000),
        ..f(9)
    };
    assert_eq!(page(window).await, vec![ids[2], ids[1]]);
    let text = ListFilter {
        text: Some("<MsgId>k3<".into()),
        ..f(9)
    };
    assert_eq!(page(text).await, vec![ids[3]]);
    // A text search reads no lower than its floor.
    let floored = ListFilter {
        text: Some("MsgId".into()),
        floor: Some(ids[3]),
        ..f(9)
    };
    assert_eq!(page(floored).await, vec![ids[4], ids[3]]);
}

async fn attempts_are_kept_and_dead_letters_counted_by_rule(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    five_events(&store).await;
    // An attempt that failed, then one that went dead: both in its history.
    let first = store.claim(0, 1).await.unwrap()[0].id;
    let error = "boom".to_owned();
    let retry = Outcome::Retry {
        at_ms: 10,
        error: error.clone(),
    };
    store.finish(first, retry, 4).await.unwrap();
    assert_eq!(store.claim(10, 1).await.unwrap()[0].id, first);
    store
        .finish(first, Outcome::Dead { error }, 30)
        .await
        .unwrap();
    let one = DeliveryFilter {
        id: Some(first),
        limit: 1,
        ..Default::default()
    };
    let row = store.deliveries(&one).await.unwrap().remove(0);
    let log = row.attempt_log();
    assert_eq!(log.len(), 2, "{:?}", row.history);
    let at = |i: usize, k: &str| log[i][k].clone();
    assert_eq!(
        (at(0, "attempt"), at(0, "outcome")),
        (1.into(), "retry".into())
    );
    assert_eq!(
        (at(0, "started_at_ms"), at(0, "duration_ms")),
        (0.into(), 4.into())
    );
    assert_eq!(
        (at(1, "started_at_ms"), at(1, "duration_ms")),
        (10.into(), 20.into())
    );
    assert_eq!(
        (at(1, "outcome"), at(1, "error")),
        ("dead".into(), "boom".into())
    );
    let dead = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        rule: Some("r".into()),
        limit: 9,
        ..Default::default()
    };
    let rows = store.deliveries(&dead).await.unwrap();
    assert_eq!(rows.len(), 2, "the dead one and its skipped successor");
    let backlog = store.backlog(0).await.unwrap();
    assert_eq!(backlog.dead, vec![("r".to_owned(), 2)]);
}

async fn a_replay_leaves_out_unfinished_rules_and_the_audit_trail_keeps_who(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let ids = five_events(&store).await;
    let first = store.claim(0, 1).await.unwrap()[0].id;
    let dead = Outcome::Dead { error: "e".into() };
    store.finish(first, dead, 1).await.unwrap();
    let later = crate::clock::now_ms() + 60_000;
    let planned = || {
        vec![
            delivery("r", 0, 50, None),
            delivery("r", 1, 50, None),
            delivery("s", 0, later, None),
        ]
    };
    let replayed = store.replay(ids[0], planned(), 40).await.unwrap();
    let shown = (replayed.replay, replayed.deliveries, replayed.unfinished);
    assert_eq!(shown, (1, 3, 0));
    // Both rules have deliveries of this event waiting now: nothing is stored twice.
    let again = store.replay(ids[0], planned(), 41).await.unwrap();
    assert_eq!(
        (again.replay, again.deliveries, again.unfinished),
        (2, 0, 3)
    );
    let of_event = DeliveryFilter {
        event_id: Some(ids[0]),
        limit: 9,
        ..Default::default()
    };
    let rows = store.deliveries(&of_event).await.unwrap();
    let replays: Vec<(i64, DeliveryStatus)> = rows.iter().map(|d| (d.replay, d.status)).collect();
    use DeliveryStatus::{Dead, Pending, Waiting};
    let want = vec![
        (1, Pending),
        (1, Waiting),
        (1, Pending),
        (0, Dead),
        (0, Dead),
    ];
    assert_eq!(replays, want);
    // Timers come soonest first.
    let timers = DeliveryFilter {
        status: Some(DeliveryStatus::Scheduled),
        limit: 9,
        ..Default::default()
    };
    let timers = store.deliveries(&timers).await.unwrap();
    let first_timer = (timers.len(), timers[0].rule.as_str(), timers[0].replay);
    assert_eq!(first_timer, (1, "s", 1));
    let row = crate::store::AuditRow {
        id: 0,
        at_ms: 7,
        who: "ann".into(),
        action: "replay".into(),
        target: "event 1".into(),
        detail: None,
    };
    store.audit(row).await.unwrap();
    let trail = store.audit_list(None, 10).await.unwrap();
    assert_eq!(
        (trail.len(), trail[0].who.as_str(), trail[0].at_ms),
        (1, "ann", 7)
    );
}
