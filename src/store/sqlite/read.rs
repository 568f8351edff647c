//! Reads for the CLI, `/metrics` and the tests: pending depth, deliveries and events by
//! filter, one event by id. They run on the reader connection off the runtime's threads.

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::sql;
use crate::store::{
    DeliveryFilter, DeliveryRow, DeliveryStatus, ListFilter, StoreError, StoredEvent,
};
impl Sqlite {
    /// Deliveries not yet run (pending or waiting) and when the oldest was created.
    pub(in crate::store) async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        self.read(move |conn| {
            conn.query_row(sql::PENDING_STATS.sqlite(), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .await
    }

    pub(in crate::store) async fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let (status, failed, scheduled) = match filter.status {
                None => (None, false, false),
                Some(DeliveryStatus::Failed) => (Some("pending"), true, false),
                Some(DeliveryStatus::Scheduled) => (Some("pending"), false, true),
                Some(s) => (Some(s.as_str()), false, false),
            };
            let now = crate::clock::now_ms();
            let mut stmt = conn.prepare_cached(sql::DELIVERIES.sqlite())?;
            let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(
                params![
                    status,
                    failed,
                    filter.event_id,
                    limit,
                    scheduled,
                    now,
                    filter.id
                ],
                |r| {
                    let status: String = r.get(6)?;
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        receiver: r.get(2)?,
                        rule: r.get(3)?,
                        action: r.get(4)?,
                        kind: r.get(5)?,
                        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
                        attempts: r.get(7)?,
                        next_attempt_at_ms: r.get(8)?,
                        created_at_ms: r.get(9)?,
                        updated_at_ms: r.get(10)?,
                        last_error: r.get(11)?,
                        key: r.get(12)?,
                        result: r.get(13)?,
                    })
                },
            )?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    pub(in crate::store) async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql::EVENTS.sqlite())?;
            let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
            let rows =
                stmt.query_map(params![filter.receiver, filter.kind, limit], row_to_event)?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    pub(in crate::store) async fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |conn| {
            conn.query_row(sql::EVENT.sqlite(), [id], row_to_event)
                .optional()
        })
        .await
    }
}

pub(super) fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent::from_row(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}
