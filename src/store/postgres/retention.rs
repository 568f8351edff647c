//! Retention: one batch of a prune walk in one transaction. The batch's deliveries are
//! locked first, so a retry or a replay of one of its events waits for it (and then finds
//! the delivery gone) rather than racing it; several replicas pruning take turns.

use super::{Postgres, db_error};
use crate::store::sql;
use crate::store::types::{PruneCandidate, prune_plan, prune_window};
use crate::store::{PruneStep, Pruned, StoreError};

impl Postgres {
    pub(in crate::store) async fn prune(&self, step: PruneStep) -> Result<Pruned, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let limit = i64::try_from(step.limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64)> = tx
            .query(sql::PRUNE_EVENTS.postgres(), &[&step.after_id, &limit])
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let (ids, done) = prune_window(&step, &rows);
        let mut pruned = Pruned {
            last_id: ids.last().copied(),
            done,
            ..Pruned::default()
        };
        let (Some(&lo), Some(&hi)) = (ids.first(), ids.last()) else {
            return Ok(pruned);
        };
        tx.execute(
            "SELECT 1 FROM events WHERE id >= $1 AND id <= $2 ORDER BY id FOR UPDATE",
            &[&lo, &hi],
        )
        .await
        .map_err(db_error)?;
        tx.execute(
            "SELECT 1 FROM deliveries WHERE event_id >= $1 AND event_id <= $2 ORDER BY id FOR UPDATE",
            &[&lo, &hi],
        )
        .await
        .map_err(db_error)?;
        let state: Vec<PruneCandidate> = tx
            .query(sql::PRUNE_STATE.postgres(), &[&lo, &hi])
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| PruneCandidate {
                id: r.get(0),
                deliveries: r.get(1),
                unfinished: r.get::<_, i32>(2) != 0,
                last_change_ms: r.get(3),
            })
            .collect();
        let (deliveries_of, events, first_kept) = prune_plan(&step, &ids, &state);
        pruned.first_kept = first_kept;
        if !deliveries_of.is_empty() {
            let n = tx
                .execute(
                    "DELETE FROM deliveries WHERE event_id = ANY($1)",
                    &[&deliveries_of],
                )
                .await
                .map_err(db_error)?;
            pruned.deliveries = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if !events.is_empty() {
            let n = tx
                .execute("DELETE FROM events WHERE id = ANY($1)", &[&events])
                .await
                .map_err(db_error)?;
            pruned.events = usize::try_from(n).unwrap_or(usize::MAX);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(pruned)
    }
}
