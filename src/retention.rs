//! Retention: what `[store] keep_events` and `keep_deliveries` let go, removed in the
//! background in small batches (each its own short transaction, so callbacks commit
//! between them), oldest first, and never an event with a delivery not finished: a timer
//! waiting for a week keeps its event that long. `hookgate prune` runs one pass at once.

use std::time::Duration;

use tracing::{info, warn};

use crate::clock::now_ms;
use crate::loaded::Current;
use crate::store::{PruneStep, PruneWhat, Retention, Store, StoreError};

/// Events one batch looks at.
const BATCH: usize = 256;
/// The pause between two batches of a background pass: the writer serves callbacks.
const PAUSE: Duration = Duration::from_millis(20);

/// What a pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub events: usize,
    pub deliveries: usize,
}

/// Where each walk starts next: just before the first event it had to keep, or after the
/// last it looked at. Events are walked in id order, which is arrival order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursors {
    events: i64,
    deliveries: i64,
}

/// One pass: removes what `keep` lets go as of `now_ms`, batch by batch, pausing `pause`
/// between batches.
pub async fn pass(
    store: &Store,
    keep: &Retention,
    now_ms: i64,
    cursors: &mut Cursors,
    pause: Duration,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let walks = [
        (
            PruneWhat::Deliveries,
            keep.keep_deliveries,
            &mut cursors.deliveries,
        ),
        (PruneWhat::Events, keep.keep_events, &mut cursors.events),
    ];
    for (what, keep, cursor) in walks {
        let Some(keep) = keep else { continue };
        let before_ms = now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let mut step = PruneStep {
            what,
            before_ms,
            after_id: *cursor,
            limit: BATCH,
        };
        let mut first_kept = None;
        loop {
            let batch = store.prune(step).await?;
            report.events += batch.events;
            report.deliveries += batch.deliveries;
            first_kept = first_kept.or(batch.first_kept);
            if let Some(last) = batch.last_id {
                step.after_id = last;
            }
            if batch.done {
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        *cursor = first_kept.map_or(step.after_id, |id| id - 1);
    }
    Ok(report)
}

/// Prunes every `[store] prune_every` while the gateway runs, with the retention of the
/// config running now (a reload changes it). The first pass runs soon after start.
pub async fn run(store: Store, current: Current, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut cursors = Cursors::default();
    let mut wait = current.load().retention.every.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
        let keep = current.load().retention;
        wait = keep.every;
        if keep.keep_events.is_none() && keep.keep_deliveries.is_none() {
            continue;
        }
        match pass(&store, &keep, now_ms(), &mut cursors, PAUSE).await {
            Ok(r) if r.events + r.deliveries > 0 => info!(
                events = r.events,
                deliveries = r.deliveries,
                "Pruned what the retention lets go."
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "Pruning failed; trying again at the next pass."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Verified;
    use crate::event::{Event, Vendor};
    use crate::store::{NewDelivery, Outcome, StoreConfig};

    const DAY: i64 = 86_400_000;

    /// A pass starts where the last one had to stop: an event kept for its timer is looked
    /// at again, those before it not.
    #[tokio::test]
    async fn a_pass_resumes_before_the_first_event_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::sqlite(dir.path().join("r.db")))
            .await
            .unwrap();
        let event = |key: &str, at| {
            let xml = format!("<xml><MsgType>text</MsgType><MsgId>{key}</MsgId></xml>");
            Event::parse("r", Vendor::WeCom, Verified::new(xml), at).unwrap()
        };
        let timer = NewDelivery {
            spec: None,
            rule: "t".into(),
            action: 0,
            kind: "log".into(),
            due_ms: 10 * DAY,
            key: None,
            deadline_ms: i64::MAX,
        };
        let first = store
            .accept(event("1", 0), vec![], vec![])
            .await
            .unwrap()
            .id;
        let kept = store
            .accept(event("2", 1), vec![timer], vec![])
            .await
            .unwrap()
            .id;
        store.accept(event("3", 2), vec![], vec![]).await.unwrap();
        let keep = Retention {
            keep_events: Some(Duration::from_secs(86_400)),
            ..Retention::default()
        };
        let mut cursors = Cursors::default();
        let r = pass(&store, &keep, 5 * DAY, &mut cursors, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            r,
            Report {
                events: 2,
                deliveries: 0
            }
        );
        assert_eq!(cursors.events, kept - 1);
        assert!(first < kept);
        let claimed = store.claim(10 * DAY, 10).await.unwrap();
        let done = Outcome::Done { result: None };
        store.finish(claimed[0].id, done, 10 * DAY).await.unwrap();
        let r = pass(&store, &keep, 12 * DAY, &mut cursors, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            r,
            Report {
                events: 1,
                deliveries: 1
            }
        );
    }
}
