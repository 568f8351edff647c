//! What operators do through the admin API and the CLI: the audit trail, and replays (the
//! current rules' deliveries for a stored event, stored beside the ones it already has).

use std::sync::{Arc, Mutex};

use rusqlite::params;

use super::Sqlite;
use crate::store::sql;
use crate::store::types::replay_plan;
use crate::store::{AuditRow, NewDelivery, Replayed, StoreError};

impl Sqlite {
    pub(in crate::store) async fn audit(&self, row: AuditRow) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.prepare_cached(sql::AUDIT.sqlite())?.execute(params![
                row.at_ms, row.who, row.action, row.target, row.detail
            ])
        }))
        .await
        .map(drop)
    }

    pub(in crate::store) async fn replay(
        &self,
        event_id: i64,
        planned: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<Replayed, StoreError> {
        let out = Arc::new(Mutex::new(None));
        let put = out.clone();
        self.write(Box::new(move |tx| {
            let state: Vec<(String, String, i64)> = tx
                .prepare_cached(sql::REPLAY_STATE.sqlite())?
                .query_map([event_id], |r| Ok((r.get(0)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?;
            let (kept, unfinished, replay) = replay_plan(&state, planned);
            let mut add = tx.prepare_cached(sql::REPLAY_DELIVERY.sqlite())?;
            let mut previous: Option<(&str, i64)> = None;
            for d in &kept {
                let after = previous.filter(|(r, _)| *r == d.rule).map(|(_, id)| id);
                let id: i64 = add.query_row(
                    params![
                        event_id,
                        d.rule,
                        d.action as i64,
                        d.kind,
                        after,
                        d.due_ms,
                        d.deadline_ms,
                        now_ms,
                        d.key,
                        d.spec,
                        replay
                    ],
                    |r| r.get(0),
                )?;
                previous = Some((d.rule.as_str(), id));
            }
            *put.lock().unwrap_or_else(|p| p.into_inner()) = Some(Replayed {
                event_id,
                replay,
                deliveries: kept.len(),
                unfinished,
            });
            Ok(kept.len())
        }))
        .await?;
        let replayed = out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(StoreError::Closed)?;
        if replayed.deliveries > 0 {
            self.due.notify_one();
        }
        Ok(replayed)
    }
}
