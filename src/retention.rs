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
