//! Reads for the CLI, the admin API, `/metrics` and the tests: pending depth, deliveries and
//! events by filter, one event by id, the backlog by rule, the audit trail.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use tokio_postgres::types::ToSql;

use super::{Postgres, cached, db_error};
use crate::store::sql::{self, Arg, Dialect};
use crate::store::{
    AuditRow, Backlog, DeliveryFilter, DeliveryRow, DeliveryStatus, ListFilter, StoreError,
    StoredEvent,
};
impl Postgres {
    pub(in crate::store) async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(sql::PENDING_STATS.postgres(), &[])
            .await
            .map_err(db_error)?;
        Ok((row.get(0), row.get(1)))
    }

    pub(in crate::store) async fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let (text, args) = sql::deliveries_query(Dialect::Postgres, filter, crate::clock::now_ms());
        let client = self.client().await?;
        let stmt = cached(&client, &text).await?;
        let rows = client.query(&stmt, &bound(&args)).await.map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRow {
                id: r.get(0),
                event_id: r.get(1),
                receiver: r.get(2),
                rule: r.get(3),
                action: r.get(4),
                kind: r.get(5),
                status: DeliveryStatus::parse(r.get(6)).unwrap_or(DeliveryStatus::Pending),
                attempts: u32::try_from(r.get::<_, i32>(7)).unwrap_or(0),
                next_attempt_at_ms: r.get(8),
                created_at_ms: r.get(9),
                updated_at_ms: r.get(10),
                last_error: r.get(11),
                key: r.get(12),
                result: r.get(13),
                history: r.get(14),
                replay: i64::from(r.get::<_, i32>(15)),
            })
            .collect())
    }

    pub(in crate::store) async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (text, args) = sql::events_query(Dialect::Postgres, filter);
        let client = self.client().await?;
        let stmt = cached(&client, &text).await?;
        let rows = client.query(&stmt, &bound(&args)).await.map_err(db_error)?;
        Ok(rows.iter().map(row_to_event).collect())
    }

    /// Dead deliveries and timers by rule.
    pub(in crate::store) async fn backlog(&self, now_ms: i64) -> Result<Backlog, StoreError> {
        let rows = self
            .client()
            .await?
            .query(sql::BACKLOG_BY_RULE.postgres(), &[&now_ms])
            .await
            .map_err(db_error)?;
        let mut backlog = Backlog::default();
        for r in rows {
            let entry = (r.get::<_, String>(0), r.get::<_, i64>(2));
            match r.get::<_, &str>(1) {
                "dead" => backlog.dead.push(entry),
                _ => backlog.scheduled.push(entry),
            }
        }
        Ok(backlog)
    }

    pub(in crate::store) async fn audit_list(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(sql::AUDIT_LIST.postgres(), &[&before, &limit])
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get(0),
                at_ms: r.get(1),
                who: r.get(2),
                action: r.get(3),
                target: r.get(4),
                detail: r.get(5),
            })
            .collect())
    }

    pub(in crate::store) async fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(sql::EVENT.postgres(), &[&id])
            .await
            .map_err(db_error)?;
        Ok(row.as_ref().map(row_to_event))
    }
}

/// A built query's arguments as the driver takes them.
fn bound(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| match a {
            Arg::Text(t) => t as &(dyn ToSql + Sync),
            Arg::Int(i) => i as &(dyn ToSql + Sync),
        })
        .collect()
}

pub(super) fn row_to_event(r: &Row) -> StoredEvent {
    StoredEvent::from_row(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
    )
}
