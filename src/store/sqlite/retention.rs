//! Retention: one batch of a prune walk in one write transaction on the writer thread, so
//! callbacks keep committing between batches.

use std::sync::{Arc, Mutex};

use rusqlite::params;

use super::Sqlite;
use crate::store::sql;
use crate::store::types::{PruneCandidate, prune_plan, prune_window};
use crate::store::{PruneStep, Pruned, StoreError};

impl Sqlite {
    pub(in crate::store) async fn prune(&self, step: PruneStep) -> Result<Pruned, StoreError> {
        let out = Arc::new(Mutex::new(Pruned::default()));
        let put = out.clone();
        self.write(Box::new(move |tx| {
            let rows: Vec<(i64, i64)> = tx
                .prepare_cached(sql::PRUNE_EVENTS.sqlite())?
                .query_map(params![step.after_id, step.limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            let (ids, done) = prune_window(&step, &rows);
            let mut pruned = Pruned {
                last_id: ids.last().copied(),
                done,
                ..Pruned::default()
            };
            if let (Some(&lo), Some(&hi)) = (ids.first(), ids.last()) {
                let state: Vec<PruneCandidate> = tx
                    .prepare_cached(sql::PRUNE_STATE.sqlite())?
                    .query_map(params![lo, hi], |r| {
                        Ok(PruneCandidate {
                            id: r.get(0)?,
                            deliveries: r.get(1)?,
                            unfinished: r.get::<_, i64>(2)? != 0,
                            last_change_ms: r.get(3)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                let mut drop_deliveries =
                    tx.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?;
                let mut drop_event = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
                let (deliveries_of, events, first_kept) = prune_plan(&step, &ids, &state);
                pruned.first_kept = first_kept;
                for id in deliveries_of {
                    pruned.deliveries += drop_deliveries.execute([id])?;
                }
                for id in events {
                    pruned.events += drop_event.execute([id])?;
                }
            }
            let changed = pruned.events + pruned.deliveries;
            *put.lock().unwrap_or_else(|p| p.into_inner()) = pruned;
            Ok(changed)
        }))
        .await?;
        let pruned = *out.lock().unwrap_or_else(|p| p.into_inner());
        Ok(pruned)
    }
}
