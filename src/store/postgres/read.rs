//! Reads for the CLI, `/metrics` and the tests: pending depth, deliveries and events by
//! filter, one event by id.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Postgres, db_error};
use crate::store::sql;
use crate::store::{
    DeliveryFilter, DeliveryRow, DeliveryStatus, ListFilter, StoreError, StoredEvent,
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
        let (status, failed, scheduled) = match filter.status {
            None => (None, false, false),
            Some(DeliveryStatus::Failed) => (Some("pending"), true, false),
            Some(DeliveryStatus::Scheduled) => (Some("pending"), false, true),
            Some(s) => (Some(s.as_str()), false, false),
        };
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let now = crate::clock::now_ms();
        let rows = self
            .client()
            .await?
            .query(
                sql::DELIVERIES.postgres(),
                &[
                    &status,
                    &failed,
                    &filter.event_id,
                    &limit,
                    &scheduled,
                    &now,
                    &filter.id,
                ],
            )
            .await
            .map_err(db_error)?;
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
            })
            .collect())
    }

    pub(in crate::store) async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                sql::EVENTS.postgres(),
                &[&filter.receiver, &filter.kind, &limit],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(row_to_event).collect())
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
