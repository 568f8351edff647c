//! Reads for the CLI, the admin API, `/metrics` and the tests: pending depth, deliveries and
//! events by filter, one event by id, the backlog by rule, the audit trail.
//! They run on the reader connection off the runtime's threads.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::Sqlite;
use crate::store::sql::{self, Arg, Dialect};
use crate::store::{
    AuditRow, Backlog, DeliveryFilter, DeliveryRow, DeliveryStatus, ListFilter, StoreError,
    StoredEvent,
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
        let (text, args) = sql::deliveries_query(Dialect::Sqlite, filter, crate::clock::now_ms());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&text)?;
            let rows = stmt.query_map(params_from_iter(args.iter().map(value)), |r| {
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
                    history: r.get(14)?,
                    replay: r.get(15)?,
                })
            })?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    pub(in crate::store) async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (text, args) = sql::events_query(Dialect::Sqlite, filter);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&text)?;
            let rows = stmt.query_map(params_from_iter(args.iter().map(value)), row_to_event)?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    /// Dead deliveries and timers by rule.
    pub(in crate::store) async fn backlog(&self, now_ms: i64) -> Result<Backlog, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql::BACKLOG_BY_RULE.sqlite())?;
            let mut backlog = Backlog::default();
            let rows = stmt.query_map([now_ms], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })?;
            for row in rows {
                let (rule, what, n) = row?;
                match what.as_str() {
                    "dead" => backlog.dead.push((rule, n)),
                    _ => backlog.scheduled.push((rule, n)),
                }
            }
            Ok(backlog)
        })
        .await
    }

    pub(in crate::store) async fn audit_list(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql::AUDIT_LIST.sqlite())?;
            let rows = stmt.query_map(params![before, limit], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    who: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            rows.collect()
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

fn value(arg: &Arg) -> Value {
    match arg {
        Arg::Text(t) => Value::Text(t.clone()),
        Arg::Int(i) => Value::Integer(*i),
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
