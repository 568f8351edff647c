//! The delivery state machine: claim what is due, finish with done (keeping its result for
//! `steps`) / skipped (an `if` false when due) / retry / defer / dead (a dead or skipped
//! action takes the later actions of its rule with it), requeue by hand or after a restart,
//! cancel by key or id (the chain after it too), and the upkeep of old rate entries.

use crate::store::sql;
use rusqlite::params;

use super::read::row_to_event;
use super::{Op, Sqlite};
use crate::store::{Cancel, ClaimedDelivery, Outcome, RequeueTarget, StoreError};
impl Sqlite {
    pub(in crate::store) async fn step_results(
        &self,
        event_id: i64,
        rule: &str,
    ) -> Result<Vec<(usize, String)>, StoreError> {
        let rule = rule.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql::STEP_RESULTS.sqlite())?;
            let rows = stmt.query_map(params![event_id, rule], |r| {
                let action: i64 = r.get(0)?;
                Ok((usize::try_from(action).unwrap_or(usize::MAX), r.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }

    pub(in crate::store) async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.call(|reply| Op::Claim {
            now_ms,
            limit,
            reply,
        })
        .await
    }

    /// Records the outcomes in one transaction (the writer may add other ops to it).
    pub(in crate::store) async fn finish_many(
        &self,
        outcomes: std::sync::Arc<[(i64, Outcome)]>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Finish {
            outcomes,
            now_ms,
            reply,
        })
        .await
    }

    pub(in crate::store) async fn requeue(
        &self,
        target: RequeueTarget,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<usize, StoreError> {
        self.call(|reply| Op::Requeue {
            target,
            now_ms,
            deadline_ms,
            reply,
        })
        .await
    }

    /// Cancels by key (like a `cancel` action) or one delivery by id; how many.
    pub(in crate::store) async fn cancel_now(
        &self,
        key: Option<String>,
        id: Option<i64>,
        reason: String,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.write(Box::new(move |tx| match (key, id) {
            (Some(key), _) => cancel(
                tx,
                &Cancel {
                    key,
                    rules: Vec::new(),
                    reason,
                },
                now_ms,
            ),
            (None, Some(id)) => cancel_chain(tx, id, &reason, now_ms),
            (None, None) => Ok(0),
        }))
        .await
    }

    /// One process owns the file, so no claim needs renewing: only old rate entries go.
    pub(in crate::store) async fn maintain(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "DELETE FROM robot_sends WHERE at_ms <= ?1",
                [now_ms - crate::store::types::RATE_WINDOW_MS],
            )?;
            tx.execute("DELETE FROM robot_signs WHERE until_ms <= ?1", [now_ms])?;
            tx.execute("DELETE FROM robot_pauses WHERE until_ms <= ?1", [now_ms])
        }))
        .await
    }
}

pub(super) fn claim(
    tx: &rusqlite::Transaction<'_>,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE deliveries SET status = 'running', attempts = attempts + 1, updated_at_ms = ?1
         WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at_ms <= ?1
                      ORDER BY next_attempt_at_ms, id LIMIT ?2)
         RETURNING id, event_id, rule, action, kind, attempts, deadline_ms, spec",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    type Row = (i64, i64, String, i64, String, u32, i64, Option<String>);
    let rows: Vec<Row> = stmt
        .query_map(params![now_ms, limit], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut event = tx.prepare_cached(
        "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events WHERE id = ?1",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, event_id, rule, action, kind, attempts, deadline_ms, spec) in rows {
        out.push(ClaimedDelivery {
            id,
            event: event.query_row([event_id], row_to_event)?,
            rule,
            action: usize::try_from(action).unwrap_or(usize::MAX),
            kind,
            spec,
            attempts,
            deadline_ms,
        });
    }
    out.sort_by_key(|d| d.id);
    Ok(out)
}

pub(super) fn finish(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    outcome: &Outcome,
    now_ms: i64,
) -> rusqlite::Result<()> {
    match outcome {
        Outcome::Done { result } => {
            tx.prepare_cached(concat!(
                "UPDATE deliveries SET status = 'done', updated_at_ms = ?2, result = ?3, ",
                sql::history!("json_object", "done", "?2", "NULL"),
                " WHERE id = ?1"
            ))?
            .execute(params![id, now_ms, result])?;
            // The rule's next action may run now (or when its own delay is over).
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = max(next_attempt_at_ms, ?2),
                                       updated_at_ms = ?2
                 WHERE after_id = ?1 AND status = 'waiting'",
            )?
            .execute(params![id, now_ms])
        }
        Outcome::Retry { at_ms, error } => tx
            .prepare_cached(concat!(
                "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = ?2, last_error = ?3,
                                   updated_at_ms = ?4, ",
                sql::history!("json_object", "retry", "?4", "?3"),
                " WHERE id = ?1"
            ))?
            .execute(params![id, at_ms, error, now_ms]),
        // Not an attempt: the sink was never called (rate limit, back-off of the target).
        Outcome::Defer { at_ms } => tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = ?2,
                                   attempts = max(attempts - 1, 0), updated_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, at_ms, now_ms]),
        Outcome::Skipped { reason } => {
            tx.prepare_cached(concat!(
                "UPDATE deliveries SET status = 'skipped', last_error = ?2, updated_at_ms = ?3, ",
                sql::history!("json_object", "skipped", "?3", "?2"),
                " WHERE id = ?1"
            ))?
            .execute(params![id, reason, now_ms])?;
            let action = action_of(tx, id)?;
            let why = format!("skipped: action {action} of the rule was skipped ({reason})");
            tx.prepare_cached(sql::SKIP_AFTER_FALSE.sqlite())?
                .execute(params![id, now_ms, why])
        }
        Outcome::Dead { error } => {
            tx.prepare_cached(concat!(
                "UPDATE deliveries SET status = 'dead', last_error = ?2, updated_at_ms = ?3, ",
                sql::history!("json_object", "dead", "?3", "?2"),
                " WHERE id = ?1"
            ))?
            .execute(params![id, error, now_ms])?;
            // The rule's later actions will not run: dead too, marked as skipped.
            let action = action_of(tx, id)?.to_string();
            tx.prepare_cached(sql::SKIP_AFTER_DEAD.sqlite())?
                .execute(params![id, now_ms, action])
        }
    }
    .map(drop)
}

/// Cancels a pending or waiting delivery and the later actions of its rule waiting for it.
pub(super) fn cancel_chain(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    static BY_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let statement = BY_ID.get_or_init(|| sql::cancel_chain(sql::Dialect::Sqlite, "id = $1"));
    tx.prepare_cached(statement)?
        .execute(params![id, reason, now_ms])
}

pub(super) fn action_of(tx: &rusqlite::Transaction<'_>, id: i64) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT action FROM deliveries WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
}

/// Sends the skipped successors of `id` back to waiting (their predecessor runs again).
pub(super) fn unskip(tx: &rusqlite::Transaction<'_>, id: i64, now_ms: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(sql::UNSKIP.sqlite())?
        .execute(params![id, now_ms])
        .map(drop)
}

pub(super) fn requeue(
    tx: &rusqlite::Transaction<'_>,
    target: &RequeueTarget,
    now_ms: i64,
    deadline_ms: i64,
) -> rusqlite::Result<usize> {
    // A retried delivery runs the action now in its place (`spec` forgotten): the operator
    // chose to run it after a change.
    match target {
        RequeueTarget::Id(id) => {
            // A skipped one waits for its predecessor again; any other runs now.
            let n = tx.execute(sql::REQUEUE_ONE.sqlite(), params![id, now_ms, deadline_ms])?;
            if n > 0 {
                unskip(tx, *id, now_ms)?;
            }
            Ok(n)
        }
        // Left running by a process that died: run again (at-least-once), same deadline.
        RequeueTarget::Running => tx.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = ?1, updated_at_ms = ?1
             WHERE status = 'running'",
            params![now_ms],
        ),
        RequeueTarget::AllDead => {
            tx.execute(sql::REQUEUE_DEAD.sqlite(), params![now_ms, deadline_ms])
        }
    }
}

/// Calls off the pending and waiting deliveries with the cancel's key, and the later actions
/// of their rules that wait for them.
pub(super) fn cancel(
    tx: &rusqlite::Transaction<'_>,
    c: &Cancel,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, rule FROM deliveries WHERE correlation = ?1 AND status IN ('pending', 'waiting')",
        )?;
        let rows = stmt.query_map([&c.key], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, rule)| c.rules.is_empty() || c.rules.contains(rule))
            .map(|(id, _)| id)
            .collect()
    };
    let mut n = 0;
    for id in ids {
        n += cancel_chain(tx, id, &c.reason, now_ms)?;
    }
    Ok(n)
}
