//! Retention on both backends: finished deliveries and old events go in batches, an event
//! with a delivery not finished (a timer) stays with it until it finishes, and a walk says
//! where it had to stop, for the next to start there.

use super::*;
use crate::store::{PruneStep, PruneWhat};

on_both!(
    a_batch_stops_at_the_cut_and_takes_only_finished_deliveries,
    old_events_go_with_their_deliveries_and_a_timer_keeps_its_event,
);

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

/// e1 done, e2 dead, e3 a timer due on day 10, e4 no deliveries: all on day 0; e5 done on
/// day 5. Their ids.
async fn five(store: &Store) -> Vec<i64> {
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
    store.finish(claimed[0].id, done, 5 * DAY).await.unwrap();
    ids
}

/// Every batch of one walk from `after_id`: (events, deliveries) removed, the first event
/// kept, the last looked at.
async fn walk(
    store: &Store,
    what: PruneWhat,
    before_ms: i64,
    after_id: i64,
) -> (usize, usize, Option<i64>, i64) {
    let mut step = PruneStep {
        what,
        before_ms,
        after_id,
        limit: 2,
    };
    let (mut events, mut deliveries, mut kept) = (0, 0, None);
    loop {
        let b = store.prune(step).await.unwrap();
        events += b.events;
        deliveries += b.deliveries;
        kept = kept.or(b.first_kept);
        step.after_id = b.last_id.unwrap_or(step.after_id);
        if b.done {
            return (events, deliveries, kept, step.after_id);
        }
    }
}

async fn a_batch_stops_at_the_cut_and_takes_only_finished_deliveries(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let ids = five(&store).await;
    let step = PruneStep {
        what: PruneWhat::Deliveries,
        before_ms: 4 * DAY,
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
}

async fn old_events_go_with_their_deliveries_and_a_timer_keeps_its_event(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let ids = five(&store).await;
    // Events older than 3 days go, with their deliveries; e3 waits for its timer.
    let (events, deliveries, kept, _) = walk(&store, PruneWhat::Events, 3 * DAY, 0).await;
    assert_eq!((events, deliveries, kept), (3, 2, Some(ids[2])));
    assert_eq!(ids_of(&store).await, vec![ids[2], ids[4]]);
    // The timer fires; a walk from just before the kept event takes it, and on day 20 e5.
    let claimed = store.claim(10 * DAY, 10).await.unwrap();
    let done = Outcome::Done { result: None };
    store.finish(claimed[0].id, done, 10 * DAY).await.unwrap();
    let (events, deliveries, kept, _) = walk(&store, PruneWhat::Events, 17 * DAY, ids[2] - 1).await;
    assert_eq!((events, deliveries, kept), (2, 2, None));
    assert!(ids_of(&store).await.is_empty());
    assert!(statuses(&store).await.is_empty());
    // A new event is accepted after its dedupe key was forgotten.
    let again = store
        .accept(event("1", 20 * DAY), vec![], vec![])
        .await
        .unwrap();
    assert!(!again.duplicate);
}
