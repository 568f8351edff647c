//! What operators do through the admin API and the CLI: the audit trail, and replays (the
//! current rules' deliveries for a stored event, stored beside the ones it already has).

use tokio_postgres::types::ToSql;

use super::{Postgres, db_error};
use crate::store::sql;
use crate::store::types::replay_plan;
use crate::store::{AuditRow, NewDelivery, Replayed, StoreError};

impl Postgres {
    pub(in crate::store) async fn audit(&self, row: AuditRow) -> Result<(), StoreError> {
        let args: [&(dyn ToSql + Sync); 5] =
            [&row.at_ms, &row.who, &row.action, &row.target, &row.detail];
        self.client()
            .await?
            .execute(sql::AUDIT.postgres(), &args)
            .await
            .map_err(db_error)
            .map(drop)
    }

    pub(in crate::store) async fn replay(
        &self,
        event_id: i64,
        planned: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<Replayed, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // Two replays of one event (two operators, two replicas) take turns.
        tx.execute(
            "SELECT 1 FROM events WHERE id = $1 FOR UPDATE",
            &[&event_id],
        )
        .await
        .map_err(db_error)?;
        let state: Vec<(String, String, i64)> = tx
            .query(sql::REPLAY_STATE.postgres(), &[&event_id])
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| (r.get(0), r.get(2), i64::from(r.get::<_, i32>(3))))
            .collect();
        let (kept, unfinished, replay) = replay_plan(&state, planned);
        let generation = i32::try_from(replay).unwrap_or(i32::MAX);
        let mut previous: Option<(&str, i64)> = None;
        for d in &kept {
            let after = previous.filter(|(r, _)| *r == d.rule).map(|(_, id)| id);
            let action = i64::try_from(d.action).unwrap_or(i64::MAX);
            let args: [&(dyn ToSql + Sync); 11] = [
                &event_id,
                &d.rule,
                &action,
                &d.kind,
                &after,
                &d.due_ms,
                &d.deadline_ms,
                &now_ms,
                &d.key,
                &d.spec,
                &generation,
            ];
            let row = tx
                .query_one(sql::REPLAY_DELIVERY.postgres(), &args)
                .await
                .map_err(db_error)?;
            previous = Some((d.rule.as_str(), row.get(0)));
        }
        if !kept.is_empty() {
            tx.execute("SELECT pg_notify($1, '')", &[&self.announcer.channel])
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        if !kept.is_empty() {
            self.due.notify_one();
        }
        Ok(Replayed {
            event_id,
            replay,
            deliveries: kept.len(),
            unfinished,
        })
    }
}
