//! Retention on both backends: finished deliveries and old events go in batches, an event
//! with a delivery not finished (a timer) stays with it until it finishes, and a later pass
//! starts before the first event it had to keep.

use super::*;
use crate::retention::{Cursors, pass};
use crate::store::{PruneStep, PruneWhat, Retention};

on_both!(old_events_and_finished_deliveries_go_and_what_is_pending_stays);

const DAY: i64 = 86_400_000;

async fn ids_of(store: &Store) -> Vec<i64> {
    let filter = ListFilter {
        limit: 100,
        ..Default::default()
    };
    let mut ids: Vec<i64> = store
        .list(&filter)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    ids.sort_unstable();
    ids
}

async fn old_events_and_finished_deliveries_go_and_what_is_pending_stays(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    // e1 done, e2 dead, e3 a timer due in 10 days, e4 no deliveries: all at day 0;
    // e5 done on day 5.
    let mut ids = Vec::new();
    for (key, at, ds) in [
        ("1", 0, vec![delivery("r", 0, 0, None)]),
        ("2", 10, vec![delivery("r", 0, 0, None)]),
        ("3", 20, vec![delivery("t", 0, 10 * DAY, Some("timer"))]),
        ("4", 30, vec![]),
        ("5", 5 * DAY, vec![delivery("r", 0, 5 * DAY, None)]),
    ] {
        ids.push(store.accept(event(key, at), ds, vec![]).await.unwrap().id);
    }
    let claimed = store.claim(100, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let done = Outcome::Done { result: None };
    store
        .finish(claimed[0].id, done.clone(), 100)
        .await
        .unwrap();
    let dead = Outcome::Dead { error: "x".into() };
    store.finish(claimed[1].id, dead, 100).await.unwrap();
    let claimed = store.claim(5 * DAY, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .finish(claimed[0].id, done.clone(), 5 * DAY)
        .await
        .unwrap();
    let now = 6 * DAY;

    // One batch of two: the walk is not done, and stops at the cut.
    let step = PruneStep {
        what: PruneWhat::Deliveries,
        before_ms: now - 2 * DAY,
        after_id: 0,
        limit: 2,
    };
    let first = store.prune(step).await.unwrap();
    assert_eq!((first.events, first.deliveries), (0, 2));
    assert_eq!(
        (first.last_id, first.first_kept, first.done),
        (Some(ids[1]), None, false)
    );
    let second = store
        .prune(PruneStep {
            after_id: ids[1],
            ..step
        })
        .await
        .unwrap();
    assert_eq!((second.deliveries, second.first_kept), (0, Some(ids[2])));
    let third = store
        .prune(PruneStep {
            after_id: ids[3],
            ..step
        })
        .await
        .unwrap();
    assert_eq!(
        (third.last_id, third.done),
        (None, true),
        "e5 is after the cut"
    );
    assert_eq!(ids_of(&store).await, ids, "the events stay");
    assert_eq!(
        statuses(&store).await.len(),
        2,
        "the timer and e5's delivery stay"
    );

    // Events older than 3 days go, with what is left of their deliveries; e3 waits.
    let keep = Retention {
        keep_events: Some(Duration::from_secs(3 * 86_400)),
        keep_deliveries: Some(Duration::from_secs(2 * 86_400)),
        ..Retention::default()
    };
    let mut cursors = Cursors::default();
    let report = pass(&store, &keep, now, &mut cursors, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((report.events, report.deliveries), (3, 0));
    assert_eq!(ids_of(&store).await, vec![ids[2], ids[4]]);

    // The timer fires; the next pass (from where the last had to stop) takes e3.
    let claimed = store.claim(10 * DAY, 10).await.unwrap();
    store.finish(claimed[0].id, done, 10 * DAY).await.unwrap();
    let report = pass(&store, &keep, 20 * DAY, &mut cursors, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((report.events, report.deliveries), (2, 2));
    assert!(ids_of(&store).await.is_empty());
    assert!(statuses(&store).await.is_empty());
    // A new event is accepted after its dedupe key was forgotten.
    let again = store
        .accept(event("1", 20 * DAY), vec![], vec![])
        .await
        .unwrap();
    assert!(!again.duplicate);
}
