//! Storing a callback: the event (unique by receiver and dedupe key), a delivery per planned
//! action (each action of a rule waits for the one before it), and the `cancel`s that call
//! off pending deliveries with the same key, in the writer's transaction.

use rusqlite::{OptionalExtension, params};

use super::{Op, Sqlite};
use crate::event::Event;
use crate::store::{Cancel, NewDelivery, Queued, StoreError, Stored};
impl Sqlite {
    pub(in crate::store) async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Stored, StoreError> {
        self.accept_queued(event, deliveries, cancels).await?.await
    }

    /// Hands the callback to the writer and returns once it is in the writer's queue (first
    /// queued, first committed); the future it gives waits for the commit.
    pub(in crate::store) async fn accept_queued(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Queued<Stored>, StoreError> {
        self.queue(|reply| Op::Accept {
            event,
            deliveries,
            cancels,
            reply,
        })
        .await
    }
}

pub(super) fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    e: &Event,
    deliveries: &[NewDelivery],
) -> rusqlite::Result<Stored> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (receiver, vendor, kind, dedupe_key, received_at_ms, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (receiver, dedupe_key) DO NOTHING RETURNING id",
    )?;
    let inserted: Option<i64> = insert
        .query_row(
            params![
                e.receiver(),
                e.vendor().as_str(),
                e.kind(),
                e.dedupe_key(),
                e.received_at_ms(),
                e.raw()
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = inserted else {
        let mut existing =
            tx.prepare_cached("SELECT id FROM events WHERE receiver = ?1 AND dedupe_key = ?2")?;
        return Ok(Stored {
            id: existing.query_row(params![e.receiver(), e.dedupe_key()], |r| r.get(0))?,
            duplicate: true,
        });
    };
    if !deliveries.is_empty() {
        // The actions of one rule run in order: each after the previous one is done.
        let mut add = tx.prepare_cached(
            "INSERT INTO deliveries (event_id, rule, action, kind, status, after_id,
                                     next_attempt_at_ms, deadline_ms, created_at_ms, updated_at_ms,
                                     correlation, spec)
             VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 IS NULL THEN 'pending' ELSE 'waiting' END, ?5,
                     max(?6, ?8), ?7, ?6, ?6, ?9, ?10)",
        )?;
        let mut previous: Option<(&str, i64)> = None;
        for d in deliveries {
            let after = previous
                .filter(|(rule, _)| *rule == d.rule)
                .map(|(_, id)| id);
            add.execute(params![
                id,
                d.rule,
                d.action as i64,
                d.kind,
                after,
                e.received_at_ms(),
                d.deadline_ms,
                d.due_ms,
                d.key,
                d.spec
            ])?;
            previous = Some((d.rule.as_str(), tx.last_insert_rowid()));
        }
    }
    Ok(Stored {
        id,
        duplicate: false,
    })
}
