//! Reads for the CLI, `/metrics` and the tests: pending depth, deliveries and events by
//! filter, one event by id. They run on the reader connection off the runtime's threads.

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::{
    DeliveryFilter, DeliveryRow, DeliveryStatus, ListFilter, StoreError, StoredEvent,
};
impl Sqlite {
    /// Deliveries not yet run (pending or waiting) and when the oldest was created.
    pub(in crate::store) async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT count(*), min(created_at_ms) FROM deliveries WHERE status IN ('pending', 'waiting')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )

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
            let mut stmt = conn
                .prepare_cached(
                    "SELECT d.id, d.event_id, e.receiver, d.rule, d.action, d.kind, d.status, d.attempts,
                            d.next_attempt_at_ms, d.created_at_ms, d.updated_at_ms, d.last_error, d.correlation
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE (?1 IS NULL OR d.status = ?1) AND (NOT ?2 OR d.last_error IS NOT NULL)
                       AND (?3 IS NULL OR d.event_id = ?3)
                       AND (NOT ?5 OR (d.attempts = 0 AND d.next_attempt_at_ms > ?6))
                     ORDER BY d.id DESC LIMIT ?4",
                )
                ?;
            let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(
                    params![status, failed, filter.event_id, limit, scheduled, now],
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
                        })
                    },
                )
                ?;
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
            let mut stmt = conn.prepare_cached(
                "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events
                     WHERE (?1 IS NULL OR receiver = ?1) AND (?2 IS NULL OR kind = ?2)
                     ORDER BY id DESC LIMIT ?3",
            )?;
            let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
            let rows =
                stmt.query_map(params![filter.receiver, filter.kind, limit], row_to_event)?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    pub(in crate::store) async fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events WHERE id = ?1",
                [id],
                row_to_event,
            )
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
