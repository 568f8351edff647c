//! The statements both backends run, written once. They are written in PostgreSQL's form
//! (`$1` placeholders, `true`/`false`, which SQLite reads as 1/0, `CAST(… AS …)` for typed
//! NULL checks) with `{max}` for the two-argument maximum; [`Dialect`] renders them for each
//! backend once and keeps the text. What only one backend does (claim leases and fencing,
//! `SKIP LOCKED`, `unnest` batches, SQLite's writer thread) stays in its own files.

use std::sync::OnceLock;

use super::{DeliveryFilter, DeliveryStatus, ListFilter};

/// Which backend a statement is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql` in this dialect: `$N` becomes `?N` for SQLite; `{max}` becomes `max` or
    /// `greatest`.
    pub(super) fn render(self, sql: &str) -> String {
        match self {
            Dialect::Postgres => sql.replace("{max}", "greatest"),
            Dialect::Sqlite => sql.replace("{max}", "max").replace('$', "?"),
        }
    }
}

/// A shared statement, rendered for each dialect on first use.
pub(super) struct Statement {
    text: &'static str,
    sqlite: OnceLock<String>,
    postgres: OnceLock<String>,
}

impl Statement {
    const fn new(text: &'static str) -> Self {
        Self {
            text,
            sqlite: OnceLock::new(),
            postgres: OnceLock::new(),
        }
    }

    pub(super) fn sqlite(&self) -> &str {
        self.sqlite
            .get_or_init(|| Dialect::Sqlite.render(self.text))
    }

    pub(super) fn postgres(&self) -> &str {
        self.postgres
            .get_or_init(|| Dialect::Postgres.render(self.text))
    }
}

// === attempts: what each one did, for the console's timeline ===

/// The `SET` item that appends the attempt ending now to `history`: one JSON line with the
/// attempt's number, when it started (the claim set `updated_at_ms`), how long it took, its
/// outcome and its error. `$json` is the dialect's JSON object function; `$now` and `$error`
/// are the statement's placeholders (or `NULL`). Every right-hand side reads the row as it
/// was, so `updated_at_ms` is still the claim's time even where the statement sets it.
macro_rules! history {
    ($json:literal, $outcome:literal, $now:literal, $error:literal) => {
        concat!(
            "history = coalesce(history, '') || CAST(",
            $json,
            "('attempt', attempts, 'started_at_ms', updated_at_ms, 'duration_ms', ",
            $now,
            " - updated_at_ms, 'outcome', '",
            $outcome,
            "', 'error', CAST(",
            $error,
            " AS TEXT)) AS TEXT) || '\n'"
        )
    };
}
pub(super) use history;

// === delivery chains: the later actions of a rule wait, each for the one before it ===

/// The rule's later actions will not run after `$1` went dead: dead too, marked as skipped
/// (`$2` now, `$3` the dead action's index as text).
pub(super) static SKIP_AFTER_DEAD: Statement = Statement::new(
    "WITH RECURSIVE chain (id) AS (
         SELECT id FROM deliveries WHERE after_id = $1 AND status = 'waiting'
         UNION ALL
         SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
         WHERE d.status = 'waiting'
     )
     UPDATE deliveries SET status = 'dead', skipped = true, updated_at_ms = $2,
            last_error = 'skipped: action ' || $3 || ' of the rule is dead'
     WHERE id IN (SELECT id FROM chain)",
);

/// The rule's later actions will not run because `$1`'s `if` was false: skipped too (`$2`
/// now, `$3` the reason).
pub(super) static SKIP_AFTER_FALSE: Statement = Statement::new(
    "WITH RECURSIVE chain (id) AS (
         SELECT id FROM deliveries WHERE after_id = $1 AND status = 'waiting'
         UNION ALL
         SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
         WHERE d.status = 'waiting'
     )
     UPDATE deliveries SET status = 'skipped', updated_at_ms = $2, last_error = $3
     WHERE id IN (SELECT id FROM chain)",
);

/// What the done actions of one event's rule kept: (action, result JSON).
pub(super) static STEP_RESULTS: Statement = Statement::new(
    "SELECT action, result FROM deliveries
     WHERE event_id = $1 AND rule = $2 AND status = 'done' AND result IS NOT NULL
     ORDER BY action",
);

/// `$1` runs again: its skipped successors wait for it again (`$2` now).
pub(super) static UNSKIP: Statement = Statement::new(
    "WITH RECURSIVE chain (id) AS (
         SELECT id FROM deliveries WHERE after_id = $1 AND status = 'dead' AND skipped
         UNION ALL
         SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
         WHERE d.status = 'dead' AND d.skipped
     )
     UPDATE deliveries SET status = 'waiting', skipped = false, last_error = NULL,
            updated_at_ms = $2
     WHERE id IN (SELECT id FROM chain)",
);

/// Cancels the pending or waiting deliveries `roots` selects (a condition on `deliveries`
/// that may use `$1` and, on PostgreSQL, `$4`) and their waiting successors: `$2` the reason,
/// `$3` now.
pub(super) fn cancel_chain(dialect: Dialect, roots: &str) -> String {
    dialect.render(&format!(
        "WITH RECURSIVE chain (id) AS (
             SELECT id FROM deliveries WHERE ({roots}) AND status IN ('pending', 'waiting')
             UNION
             SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
             WHERE d.status = 'waiting'
         )
         UPDATE deliveries SET status = 'cancelled', last_error = $2, updated_at_ms = $3
         WHERE id IN (SELECT id FROM chain) AND status IN ('pending', 'waiting')"
    ))
}

// === requeue (`hookgate deliveries retry`): the action runs now in its place ===

/// `$1` (dead or pending) runs again: a skipped one waits for its predecessor again, any
/// other runs now (`$2` now, `$3` the new deadline); its fingerprint is forgotten.
pub(super) static REQUEUE_ONE: Statement = Statement::new(
    "UPDATE deliveries SET status = CASE WHEN skipped THEN 'waiting' ELSE 'pending' END,
            skipped = false, next_attempt_at_ms = $2, deadline_ms = $3,
            updated_at_ms = $2, spec = NULL
     WHERE id = $1 AND status IN ('dead', 'pending')",
);

/// Every dead delivery runs again (`$1` now, `$2` the new deadline).
pub(super) static REQUEUE_DEAD: Statement = Statement::new(
    "UPDATE deliveries SET status = CASE WHEN skipped THEN 'waiting' ELSE 'pending' END,
            skipped = false, next_attempt_at_ms = $1, deadline_ms = $2,
            updated_at_ms = $1, spec = NULL
     WHERE status = 'dead'",
);

// === when the worker looks next, and the pending depth ===

pub(super) static NEXT_DUE: Statement =
    Statement::new("SELECT min(next_attempt_at_ms) FROM deliveries WHERE status = 'pending'");

pub(super) static PENDING_STATS: Statement = Statement::new(
    "SELECT count(*), min(created_at_ms) FROM deliveries WHERE status IN ('pending', 'waiting')",
);

// === reads ===

/// A value bound to a query built from a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    Text(String),
    Int(i64),
}

/// A query assembled from fixed fragments for the filters given, so each combination uses
/// its index; every value is bound, never written into the text.
struct Query {
    text: String,
    args: Vec<Arg>,
}

impl Query {
    fn new(head: &str) -> Self {
        Self {
            text: head.to_owned(),
            args: Vec::new(),
        }
    }

    /// ` AND (cond)`, each `$?` in `cond` taking the next argument of `args`.
    fn and(&mut self, cond: &str, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        let mut args = args.into_iter();
        self.text.push_str(" AND (");
        let mut parts = cond.split("$?");
        self.text.push_str(parts.next().unwrap_or_default());
        for part in parts {
            self.args.extend(args.next());
            self.text.push_str(&format!("${}", self.args.len()));
            self.text.push_str(part);
        }
        self.text.push(')');
        self
    }

    fn finish(mut self, dialect: Dialect, tail: &str, limit: usize) -> (String, Vec<Arg>) {
        self.args
            .push(Arg::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        self.text
            .push_str(&format!(" {tail} LIMIT ${}", self.args.len()));
        (dialect.render(&self.text), self.args)
    }
}

/// Events newest first for `f`. A time window becomes an id range (the first event at or
/// after `since`, the last before `until`, both found by the time index) besides the exact
/// test, so the walk stays on the id order; text is looked for in the stored body only
/// between `floor` and `before`, which the caller bounds.
pub(super) fn events_query(dialect: Dialect, f: &ListFilter) -> (String, Vec<Arg>) {
    let mut q = Query::new(
        "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events WHERE true",
    );
    if let Some(r) = &f.receiver {
        q.and("receiver = $?", [Arg::Text(r.clone())]);
    }
    if let Some(k) = &f.kind {
        q.and("kind = $?", [Arg::Text(k.clone())]);
    }
    if let Some(b) = f.before {
        q.and("id < $?", [Arg::Int(b)]);
    }
    if let Some(b) = f.floor {
        q.and("id >= $?", [Arg::Int(b)]);
    }
    if let Some(t) = f.since_ms {
        q.and(
            "received_at_ms >= $? AND id >= (SELECT id FROM events WHERE received_at_ms >= $?
                ORDER BY received_at_ms, id LIMIT 1)",
            [Arg::Int(t), Arg::Int(t)],
        );
    }
    if let Some(t) = f.until_ms {
        q.and(
            "received_at_ms < $? AND id <= (SELECT id FROM events WHERE received_at_ms < $?
                ORDER BY received_at_ms DESC, id DESC LIMIT 1)",
            [Arg::Int(t), Arg::Int(t)],
        );
    }
    if let Some(text) = &f.text {
        let find = match dialect {
            Dialect::Sqlite => "instr(raw, $?) > 0",
            Dialect::Postgres => "strpos(raw, $?) > 0",
        };
        q.and(find, [Arg::Text(text.clone())]);
    }
    q.finish(dialect, "ORDER BY id DESC", f.limit)
}

/// Deliveries newest first (timers soonest first) for `f`; `now` tells timers from
/// deliveries due.
pub(super) fn deliveries_query(
    dialect: Dialect,
    f: &DeliveryFilter,
    now: i64,
) -> (String, Vec<Arg>) {
    let mut q = Query::new(
        "SELECT d.id, d.event_id, e.receiver, d.rule, d.action, d.kind, d.status, d.attempts,
                d.next_attempt_at_ms, d.created_at_ms, d.updated_at_ms, d.last_error, d.correlation,
                d.result, d.history, d.replay
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE true",
    );
    let mut order = "ORDER BY d.id DESC";
    match f.status {
        None => {}
        Some(DeliveryStatus::Failed) => {
            q.and("d.status = 'pending' AND d.last_error IS NOT NULL", []);
        }
        Some(DeliveryStatus::Scheduled) => {
            q.and(
                "d.status = 'pending' AND d.attempts = 0 AND d.next_attempt_at_ms > $?",
                [Arg::Int(now)],
            );
            order = "ORDER BY d.next_attempt_at_ms, d.id";
        }
        Some(s) => {
            q.and("d.status = $?", [Arg::Text(s.as_str().to_owned())]);
        }
    }
    if let Some(id) = f.id {
        q.and("d.id = $?", [Arg::Int(id)]);
    }
    if let Some(e) = f.event_id {
        q.and("d.event_id = $?", [Arg::Int(e)]);
    }
    if let Some(r) = &f.rule {
        q.and("d.rule = $?", [Arg::Text(r.clone())]);
    }
    if let Some(r) = &f.receiver {
        q.and("e.receiver = $?", [Arg::Text(r.clone())]);
    }
    if let Some(k) = &f.key {
        q.and("d.correlation = $?", [Arg::Text(k.clone())]);
    }
    if let Some(b) = f.before {
        q.and("d.id < $?", [Arg::Int(b)]);
    }
    q.finish(dialect, order, f.limit)
}

/// Dead deliveries and timers (pending, never tried, due after `$1`) by rule, for /metrics.
pub(super) static BACKLOG_BY_RULE: Statement = Statement::new(
    "SELECT rule, 'dead', count(*) FROM deliveries WHERE status = 'dead' GROUP BY rule
     UNION ALL
     SELECT rule, 'scheduled', count(*) FROM deliveries
     WHERE status = 'pending' AND attempts = 0 AND next_attempt_at_ms > $1 GROUP BY rule",
);

/// An operator's action, for the audit trail: `$1` when, `$2` who, `$3` what, `$4` on
/// what, `$5` details.
pub(super) static AUDIT: Statement = Statement::new(
    "INSERT INTO audit (at_ms, who, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
);

/// The audit trail, newest first: `$1` before this id (or NULL), `$2` limit.
pub(super) static AUDIT_LIST: Statement = Statement::new(
    "SELECT id, at_ms, who, action, target, detail FROM audit
     WHERE (CAST($1 AS BIGINT) IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
);

/// A delivery of a replay: `$1` event, `$2` rule, `$3` action, `$4` kind, `$5` the
/// delivery it waits for (or NULL), `$6` due, `$7` deadline, `$8` now, `$9` key, `$10`
/// fingerprint, `$11` which replay.
pub(super) static REPLAY_DELIVERY: Statement = Statement::new(
    "INSERT INTO deliveries (event_id, rule, action, kind, status, after_id, next_attempt_at_ms,
                             deadline_ms, created_at_ms, updated_at_ms, correlation, spec, replay)
     VALUES ($1, $2, $3, $4, CASE WHEN CAST($5 AS BIGINT) IS NULL THEN 'pending' ELSE 'waiting' END,
             $5, {max}(CAST($6 AS BIGINT), CAST($8 AS BIGINT)), $7, $8, $8, $9, $10, $11)
     RETURNING id",
);

/// The (rule, action) pairs of an event that have not finished yet, and its last replay.
pub(super) static REPLAY_STATE: Statement =
    Statement::new("SELECT rule, action, status, replay FROM deliveries WHERE event_id = $1");

pub(super) static EVENT: Statement = Statement::new(
    "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events WHERE id = $1",
);

// === the registry: access tokens and groups ===

pub(super) static TOKEN: Statement =
    Statement::new("SELECT token, expires_at_ms FROM tokens WHERE key = $1");

pub(super) static PUT_TOKEN: Statement = Statement::new(
    "INSERT INTO tokens (key, token, expires_at_ms) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET token = $2, expires_at_ms = $3",
);

/// Forgets a token only if it is still the one that failed (another may have replaced it).
pub(super) static FORGET_TOKEN: Statement =
    Statement::new("DELETE FROM tokens WHERE key = $1 AND token = $2");

// === scheduled rules: the last slot each handled ===

/// Starts keeping a rule's slots at `$3` (the latest slot now), or afresh when its schedule
/// `$2` changed; a rule already known with the same schedule keeps its last slot.
pub(super) static SCHEDULE_KNOWN: Statement = Statement::new(
    "INSERT INTO schedules (rule, written, last_slot_ms) VALUES ($1, $2, $3)
     ON CONFLICT (rule) DO UPDATE SET written = $2, last_slot_ms = $3
     WHERE schedules.written <> $2",
);

pub(super) static SCHEDULE_LAST: Statement =
    Statement::new("SELECT last_slot_ms FROM schedules WHERE rule = $1");

/// A slot handled; the last slot never goes back (replicas may finish out of order).
pub(super) static SCHEDULE_HANDLED: Statement =
    Statement::new("UPDATE schedules SET last_slot_ms = {max}(last_slot_ms, $2) WHERE rule = $1");

pub(super) static GROUP: Statement = Statement::new(
    "SELECT connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms
     FROM groups WHERE connection = $1 AND key = $2",
);

pub(super) static GROUPS: Statement = Statement::new(
    "SELECT connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms
     FROM groups ORDER BY created_at_ms DESC LIMIT $1",
);

/// Records a group (chat id "" = being created); a row that has a chat id keeps it (first
/// one wins).
pub(super) static PUT_GROUP: Statement = Statement::new(
    "INSERT INTO groups (connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (connection, key) DO UPDATE SET name = $5, updated_at_ms = $7,
         chat_id = CASE WHEN groups.chat_id = '' THEN $3 ELSE groups.chat_id END,
         open_conversation_id = coalesce($4, groups.open_conversation_id)",
);

pub(super) static FORGET_GROUP: Statement =
    Statement::new("DELETE FROM groups WHERE connection = $1 AND key = $2");

// === robot budgets ===

/// A vendor-imposed pause of a webhook until `$2`; a longer one already there stays.
pub(super) static RATE_PAUSE: Statement = Statement::new(
    "INSERT INTO robot_pauses (key, until_ms) VALUES ($1, $2)
     ON CONFLICT (key) DO UPDATE SET until_ms = {max}(robot_pauses.until_ms, $2)",
);

/// A robot's (timestamp, sign) pair carries one body: a row comes back when this use is
/// admitted (new, expired, or the same body again).
pub(super) static SIGN_ONCE: Statement = Statement::new(
    "INSERT INTO robot_signs (receiver, stamp, sign, digest, until_ms) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (receiver, stamp, sign) DO UPDATE
         SET digest = excluded.digest, until_ms = excluded.until_ms
         WHERE robot_signs.until_ms <= $6 OR robot_signs.digest = excluded.digest
     RETURNING 1",
);

// === retention ===

/// The next events of a prune walk, oldest first: (id, received at).
pub(super) static PRUNE_EVENTS: Statement =
    Statement::new("SELECT id, received_at_ms FROM events WHERE id > $1 ORDER BY id LIMIT $2");

/// Per event of an id range: its deliveries, whether one is unfinished, the last change.
pub(super) static PRUNE_STATE: Statement = Statement::new(
    "SELECT event_id, count(*), \
            max(CASE WHEN status IN ('waiting', 'pending', 'running') THEN 1 ELSE 0 END), \
            max(updated_at_ms) \
     FROM deliveries WHERE event_id >= $1 AND event_id <= $2 GROUP BY event_id",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_render_for_each_dialect() {
        assert_eq!(
            RATE_PAUSE.sqlite(),
            "INSERT INTO robot_pauses (key, until_ms) VALUES (?1, ?2)
     ON CONFLICT (key) DO UPDATE SET until_ms = max(robot_pauses.until_ms, ?2)"
        );
        assert!(
            RATE_PAUSE
                .postgres()
                .contains("greatest(robot_pauses.until_ms, $2)")
        );
        assert!(cancel_chain(Dialect::Sqlite, "id = $1").contains("WHERE (id = ?1)"));
    }
}
