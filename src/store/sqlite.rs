//! SQLite backend: WAL, one writer thread that group-commits whatever callbacks arrived while
//! the previous transaction was syncing (one fsync for many replies), a checkpointer thread
//! that copies the WAL into the database off the writer's path, and a reader connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    Cancel, ClaimedDelivery, DeliveryFilter, DeliveryRow, DeliveryStatus, GroupRow, ListFilter,
    NewDelivery, Outcome, RequeueTarget, StoreError, Stored, StoredEvent,
};
use crate::config::{StoreConfig, Synchronous};
use crate::event::Event;

/// Most callbacks one transaction takes; bounds the latency of the first in a batch.
const MAX_BATCH: usize = 512;
/// Callbacks waiting for the writer before `accept` itself waits (backpressure).
const QUEUE: usize = 4096;
/// The writer checkpoints by itself only when the WAL reaches this many pages (8 MiB with
/// 4 KiB pages): a bound for when the checkpointer cannot keep up, not the normal path.
const WRITER_CHECKPOINT_PAGES: u32 = 2_048;
/// Least time between two background checkpoints, so each copies many commits at once.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// The schema, one step per version (`PRAGMA user_version` records how far a file is).
/// Step 1 is written with `IF NOT EXISTS` because files made before versioning hold it.
const MIGRATIONS: &[&str] = &["
CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY,
    receiver       TEXT    NOT NULL,
    vendor         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    dedupe_key     TEXT    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    raw            TEXT    NOT NULL,
    UNIQUE (receiver, dedupe_key)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id                 INTEGER PRIMARY KEY,
    event_id           INTEGER NOT NULL REFERENCES events (id),
    rule               TEXT    NOT NULL,
    action             INTEGER NOT NULL,
    kind               TEXT    NOT NULL,
    status             TEXT    NOT NULL,   -- waiting | pending | running | done | dead
    -- The previous action of the same rule and event: this one waits until it is done.
    after_id           INTEGER REFERENCES deliveries (id),
    -- Dead only because an earlier action of its rule is dead.
    skipped            INTEGER NOT NULL DEFAULT 0,
    -- The action's rendered `key`, which a later `cancel` names.
    correlation        TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    deadline_ms        INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    last_error         TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_after ON deliveries (after_id) WHERE after_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (correlation) WHERE correlation IS NOT NULL;
-- Vendor access tokens, so a restart or a second process does not storm gettoken.
CREATE TABLE IF NOT EXISTS tokens (
    key           TEXT    PRIMARY KEY,
    token         TEXT    NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
-- Group chats created by group_create: one per (connection, key), never two.
CREATE TABLE IF NOT EXISTS groups (
    connection           TEXT    NOT NULL,
    key                  TEXT    NOT NULL,
    chat_id              TEXT    NOT NULL,
    open_conversation_id TEXT,
    name                 TEXT    NOT NULL,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    PRIMARY KEY (connection, key)
);
", "
-- Robot sends in the last minute and vendor-imposed pauses: the per-webhook rate limits.
CREATE TABLE robot_sends (
    key   TEXT    NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX robot_sends_key ON robot_sends (key, at_ms);
CREATE TABLE robot_pauses (
    key      TEXT    PRIMARY KEY,
    until_ms INTEGER NOT NULL
);
", "
-- The fingerprint of the action a delivery was made for (a reload must not swap it).
ALTER TABLE deliveries ADD COLUMN spec TEXT;
-- DingTalk robot (timestamp, sign) pairs accepted, with the body each carried (the sign
-- covers no body): shared by every process on the store, kept for the timestamp window.
CREATE TABLE robot_signs (
    receiver TEXT    NOT NULL,
    stamp    TEXT    NOT NULL,
    sign     TEXT    NOT NULL,
    digest   BLOB    NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (receiver, stamp, sign)
);
"];

/// What the writer thread does; each batch of ops shares one transaction.
enum Op {
    Accept {
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
        reply: oneshot::Sender<Result<Stored, StoreError>>,
    },
    Claim {
        now_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<ClaimedDelivery>, StoreError>>,
    },
    Finish {
        id: i64,
        outcome: Outcome,
        now_ms: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Requeue {
        target: RequeueTarget,
        now_ms: i64,
        deadline_ms: i64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// Small writes (tokens, the group registry): run in the batch's transaction.
    Write {
        /// Taken when it runs (ops are run in place, so a failed batch can answer every op).
        f: Option<WriteFn>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

type WriteFn = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize> + Send>;

impl Op {
    fn fail(self, e: &StoreError) {
        match self {
            Op::Accept { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Claim { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Finish { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Requeue { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Write { reply, .. } => drop(reply.send(Err(e.clone()))),
        }
    }
}

/// An op's result, held until the transaction commits.
enum Done {
    Accept(Stored),
    Claim(Vec<ClaimedDelivery>),
    Finish,
    Count(usize),
}

impl Op {
    /// Answers the op with its committed result.
    fn succeed(self, done: Done) {
        match (self, done) {
            (Op::Accept { reply, .. }, Done::Accept(v)) => drop(reply.send(Ok(v))),
            (Op::Claim { reply, .. }, Done::Claim(v)) => drop(reply.send(Ok(v))),
            (Op::Finish { reply, .. }, Done::Finish) => drop(reply.send(Ok(()))),
            (Op::Requeue { reply, .. } | Op::Write { reply, .. }, Done::Count(n)) => {
                drop(reply.send(Ok(n)));
            }
            (op, _) => op.fail(&StoreError::Closed),
        }
    }
}

pub(super) struct Sqlite {
    path: std::path::PathBuf,
    /// Schema version found on opening, and now.
    versions: (i64, i64),
    ops: mpsc::Sender<Op>,
    reader: Mutex<Connection>,
    /// Woken after a commit that added or re-queued deliveries.
    due: Arc<tokio::sync::Notify>,
}

fn open_error(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        source: Arc::new(e),
    }
}

fn connect(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000;"
    ))
    .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// The store holds decrypted callbacks and live access tokens: its directory is created 0700
/// and the database 0600 (SQLite gives `-wal` and `-shm` the database file's mode). An
/// existing store that others can read is kept as it is, with a warning.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "The store (decrypted callbacks, access tokens) is readable by other users; chmod 600 it and its -wal/-shm files, and 700 its directory."
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl Sqlite {
    pub(super) fn open(
        config: &StoreConfig,
        health: Arc<super::Health>,
    ) -> Result<Self, StoreError> {
        let path = config.path.as_path();
        private_files(path).map_err(|e| open_error(path, e))?;
        let mut writer = connect(path, config.synchronous)?;
        let versions = migrate(&mut writer).map_err(|e| match e {
            Migration::TooNew(found) => StoreError::TooNew {
                found,
                known: MIGRATIONS.len() as i64,
            },
            Migration::Sql(e) => open_error(path, e),
        })?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .and_then(|()| {
                writer.pragma_update(None, "journal_size_limit", WRITER_CHECKPOINT_PAGES * 4096)
            })
            .map_err(|e| open_error(path, e))?;
        let reader = connect(path, config.synchronous)?;
        let checkpointer = connect(path, config.synchronous)?;
        let (ops, rx) = mpsc::channel(QUEUE);
        let due = Arc::new(tokio::sync::Notify::new());
        let notify = due.clone();
        let (committed, commits) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("hookgate-ckpt".into())
            .spawn(move || checkpoint_loop(checkpointer, commits))
            .map_err(|e| open_error(path, e))?;
        std::thread::Builder::new()
            .name("hookgate-store".into())
            .spawn(move || write_loop(writer, rx, committed, notify, &health))
            .map_err(|e| open_error(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            versions,
            ops,
            reader: Mutex::new(reader),
            due,
        })
    }

    pub(super) fn schema_versions(&self) -> (i64, i64) {
        self.versions
    }

    pub(super) fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(op(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(super) async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Stored, StoreError> {
        self.call(|reply| Op::Accept {
            event,
            deliveries,
            cancels,
            reply,
        })
        .await
    }

    pub(super) async fn claim(
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

    pub(super) async fn finish(
        &self,
        id: i64,
        outcome: Outcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Finish {
            id,
            outcome,
            now_ms,
            reply,
        })
        .await
    }

    pub(super) async fn requeue(
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

    async fn write(&self, f: WriteFn) -> Result<usize, StoreError> {
        self.call(|reply| Op::Write { f: Some(f), reply }).await
    }

    /// Deliveries not yet run (pending or waiting) and when the oldest was created.
    pub(super) async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT count(*), min(created_at_ms) FROM deliveries WHERE status IN ('pending', 'waiting')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(query_error)
    }

    /// A write transaction that changes nothing: the store takes writes.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.write(Box::new(|_| Ok(0))).await.map(drop)
    }

    pub(super) async fn token(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT token, expires_at_ms FROM tokens WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(query_error)
    }

    pub(super) async fn put_token(
        &self,
        key: String,
        token: String,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "INSERT INTO tokens (key, token, expires_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET token = ?2, expires_at_ms = ?3",
                params![key, token, expires_at_ms],
            )
        }))
        .await
        .map(drop)
    }

    pub(super) async fn forget_token(&self, key: String, token: String) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "DELETE FROM tokens WHERE key = ?1 AND token = ?2",
                params![key, token],
            )
        }))
        .await
        .map(drop)
    }

    pub(super) async fn group(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<GroupRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms
             FROM groups WHERE connection = ?1 AND key = ?2",
            [connection, key],
            row_to_group,
        )
        .optional()
        .map_err(query_error)
    }

    pub(super) async fn groups(&self, limit: usize) -> Result<Vec<GroupRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare(
                "SELECT connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms
                 FROM groups ORDER BY created_at_ms DESC LIMIT ?1",
            )
            .map_err(query_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], row_to_group).map_err(query_error)?;
        rows.collect::<Result<_, _>>().map_err(query_error)
    }

    /// Records a group (chat id "" = being created); a row that has a chat id keeps it
    /// (first one wins).
    pub(super) async fn put_group(&self, g: GroupRow) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "INSERT INTO groups (connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (connection, key) DO UPDATE SET name = ?5, updated_at_ms = ?7,
                     chat_id = CASE WHEN chat_id = '' THEN ?3 ELSE chat_id END,
                     open_conversation_id = coalesce(?4, open_conversation_id)",
                params![g.connection, g.key, g.chat_id, g.open_conversation_id, g.name, g.created_at_ms, g.updated_at_ms],
            )
        }))
        .await
        .map(drop)
    }

    /// Removes a key from the registry; whether it was there.
    pub(super) async fn forget_group(
        &self,
        connection: String,
        key: String,
    ) -> Result<bool, StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "DELETE FROM groups WHERE connection = ?1 AND key = ?2",
                params![connection, key],
            )
        }))
        .await
        .map(|n| n > 0)
    }

    /// Cancels by key (like a `cancel` action) or one delivery by id; how many.
    pub(super) async fn cancel_now(
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

    pub(super) async fn rate_take(
        &self,
        key: String,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(Box::new(move |tx| {
            let wait = rate_take(tx, &key, per_minute, now_ms)?;
            let _ = reply.send(wait);
            Ok(0)
        }))
        .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub(super) async fn sign_once(
        &self,
        s: super::SignUse,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(Box::new(move |tx| {
            let fresh = tx
                .query_row(
                    "INSERT INTO robot_signs (receiver, stamp, sign, digest, until_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (receiver, stamp, sign) DO UPDATE
                     SET digest = excluded.digest, until_ms = excluded.until_ms
                     WHERE robot_signs.until_ms <= ?6 OR robot_signs.digest = excluded.digest
                 RETURNING 1",
                    params![s.receiver, s.timestamp, s.sign, s.digest.as_slice(), s.until_ms, now_ms],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let _ = reply.send(fresh);
            Ok(0)
        }))
        .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub(super) async fn rate_pause(&self, key: String, until_ms: i64) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "INSERT INTO robot_pauses (key, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET until_ms = max(until_ms, ?2)",
                params![key, until_ms],
            )
        }))
        .await
        .map(drop)
    }

    /// One process owns the file, so no claim needs renewing: only old rate entries go.
    pub(super) async fn maintain(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                "DELETE FROM robot_sends WHERE at_ms <= ?1",
                [now_ms - super::RATE_WINDOW_MS],
            )?;
            tx.execute("DELETE FROM robot_signs WHERE until_ms <= ?1", [now_ms])?;
            tx.execute("DELETE FROM robot_pauses WHERE until_ms <= ?1", [now_ms])
        }))
        .await
    }

    pub(super) fn due_notify(&self) -> Arc<tokio::sync::Notify> {
        self.due.clone()
    }

    /// When the earliest pending delivery is due.
    pub(super) async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT min(next_attempt_at_ms) FROM deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .map_err(query_error)
    }

    pub(super) async fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
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
            .map_err(query_error)?;
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
            .map_err(query_error)?;
        rows.collect::<Result<_, _>>().map_err(query_error)
    }

    pub(super) async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events
                 WHERE (?1 IS NULL OR receiver = ?1) AND (?2 IS NULL OR kind = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(query_error)?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![filter.receiver, filter.kind, limit], row_to_event)
            .map_err(query_error)?;
        rows.collect::<Result<_, _>>().map_err(query_error)
    }

    pub(super) async fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT id, receiver, vendor, kind, dedupe_key, received_at_ms, raw FROM events WHERE id = ?1",
            [id],
            row_to_event,
        )
        .optional()
        .map_err(query_error)
    }
}

fn row_to_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupRow> {
    Ok(GroupRow {
        connection: r.get(0)?,
        key: r.get(1)?,
        chat_id: r.get(2)?,
        open_conversation_id: r.get(3)?,
        name: r.get(4)?,
        created_at_ms: r.get(5)?,
        updated_at_ms: r.get(6)?,
    })
}

fn query_error(e: rusqlite::Error) -> StoreError {
    StoreError::Query(Arc::new(e))
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
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

enum Migration {
    TooNew(i64),
    Sql(rusqlite::Error),
}

/// Applies the missing steps of [`MIGRATIONS`], each in its own transaction with the version
/// bump; returns the version found and the version now.
fn migrate(conn: &mut Connection) -> Result<(i64, i64), Migration> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(Migration::Sql)?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(Migration::TooNew(found));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Migration::Sql)?;
        tx.execute_batch(step).map_err(Migration::Sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(Migration::Sql)?;
        tx.commit().map_err(Migration::Sql)?;
    }
    Ok((found, known))
}

/// The sliding-minute budget of a robot webhook (see [`super::Store::rate_take`]).
fn rate_take(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    per_minute: u32,
    now_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    let paused: Option<i64> = tx
        .query_row(
            "SELECT until_ms FROM robot_pauses WHERE key = ?1 AND until_ms > ?2",
            params![key, now_ms],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(until) = paused {
        return Ok(Some(until - now_ms));
    }
    let (count, oldest): (i64, Option<i64>) = tx.query_row(
        "SELECT count(*), min(at_ms) FROM robot_sends WHERE key = ?1 AND at_ms > ?2",
        params![key, now_ms - super::RATE_WINDOW_MS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let wait = super::rate_wait(count, oldest, per_minute, now_ms);
    if wait.is_none() {
        tx.execute(
            "INSERT INTO robot_sends (key, at_ms) VALUES (?1, ?2)",
            params![key, now_ms],
        )?;
    }
    Ok(wait)
}

/// The writer thread: take one op, then everything else already queued, run them in one
/// transaction, answer each after the commit, nudge the checkpointer and, if deliveries
/// became due, the worker. Ends when every `Store` handle is dropped.
fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    committed: std::sync::mpsc::SyncSender<()>,
    due: Arc<tokio::sync::Notify>,
    health: &super::Health,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut wake = false;
        let changes = conn.total_changes();
        match run_batch(&mut conn, &mut batch, &mut wake) {
            Ok(done) => {
                batch
                    .into_iter()
                    .zip(done)
                    .for_each(|(op, d)| op.succeed(d));
                // An empty transaction commits even on a full disk: only writes tell.
                if conn.total_changes() != changes {
                    health.committed();
                }
                // Full means a nudge is already pending: nothing to add.
                let _ = committed.try_send(());
                if wake {
                    due.notify_one();
                }
            }
            Err(e) => {
                // Every op of the batch gets the real cause (not "the store is shut down").
                tracing::error!(error = %e, batch = batch.len(), "Store commit failed; the vendor will retry.");
                health.failed(&e);
                let e = StoreError::Commit(Arc::new(e));
                batch.into_iter().for_each(|op| op.fail(&e));
            }
        }
    }
}

/// Runs every op of `batch` in one transaction; their results once it committed.
fn run_batch(
    conn: &mut Connection,
    batch: &mut [Op],
    wake: &mut bool,
) -> rusqlite::Result<Vec<Done>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut done = Vec::with_capacity(batch.len());
    for op in batch.iter_mut() {
        done.push(match op {
            Op::Accept {
                event,
                deliveries,
                cancels,
                ..
            } => {
                let stored = insert_event(&tx, event, deliveries)?;
                if !stored.duplicate {
                    for c in cancels.iter() {
                        cancel(&tx, c, event.received_at_ms())?;
                    }
                }
                *wake |= !stored.duplicate && !deliveries.is_empty();
                Done::Accept(stored)
            }
            Op::Claim { now_ms, limit, .. } => Done::Claim(claim(&tx, *now_ms, *limit)?),
            Op::Finish {
                id,
                outcome,
                now_ms,
                ..
            } => {
                finish(&tx, *id, outcome, *now_ms)?;
                *wake |= !matches!(outcome, Outcome::Done | Outcome::Dead { .. });
                Done::Finish
            }
            Op::Requeue {
                target,
                now_ms,
                deadline_ms,
                ..
            } => {
                let n = requeue(&tx, target, *now_ms, *deadline_ms)?;
                *wake |= n > 0;
                Done::Count(n)
            }
            Op::Write { f, .. } => match f.take() {
                Some(f) => Done::Count(f(&tx)?),
                None => Done::Count(0),
            },
        });
    }
    tx.commit()?;
    Ok(done)
}

/// The checkpointer thread: after commits, at most every [`CHECKPOINT_EVERY`], copy what the
/// WAL holds into the database (PASSIVE: never blocks the writer). Ends with the writer.
fn checkpoint_loop(conn: Connection, commits: std::sync::mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer will checkpoint instead.");
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

fn insert_event(
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

fn claim(
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

fn finish(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    outcome: &Outcome,
    now_ms: i64,
) -> rusqlite::Result<()> {
    match outcome {
        Outcome::Done => {
            tx.execute(
                "UPDATE deliveries SET status = 'done', updated_at_ms = ?2 WHERE id = ?1",
                params![id, now_ms],
            )?;
            // The rule's next action may run now (or when its own delay is over).
            tx.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = max(next_attempt_at_ms, ?2),
                                       updated_at_ms = ?2
                 WHERE after_id = ?1 AND status = 'waiting'",
                params![id, now_ms],
            )
        }
        Outcome::Retry { at_ms, error } => tx.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = ?2, last_error = ?3,
                                   updated_at_ms = ?4 WHERE id = ?1",
            params![id, at_ms, error, now_ms],
        ),
        // Not an attempt: the sink was never called (rate limit, back-off of the target).
        Outcome::Defer { at_ms } => tx.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = ?2,
                                   attempts = max(attempts - 1, 0), updated_at_ms = ?3 WHERE id = ?1",
            params![id, at_ms, now_ms],
        ),
        Outcome::Dead { error } => {
            tx.execute(
                "UPDATE deliveries SET status = 'dead', last_error = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![id, error, now_ms],
            )?;
            // The rule's later actions will not run: dead too, marked as skipped.
            let mut next = id;
            loop {
                let skipped: Option<(i64, i64)> = tx
                    .query_row(
                        "UPDATE deliveries SET status = 'dead', skipped = 1, updated_at_ms = ?2,
                                last_error = 'skipped: action ' || ?3 || ' of the rule is dead'
                         WHERE after_id = ?1 AND status = 'waiting' RETURNING id, action",
                        params![next, now_ms, action_of(tx, id)?],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match skipped {
                    Some((succ, _)) => next = succ,
                    None => break,
                }
            }
            Ok(0)
        }
    }
    .map(drop)
}

/// Calls off the pending and waiting deliveries with the cancel's key, and the later actions
/// of their rules that wait for them.
fn cancel(tx: &rusqlite::Transaction<'_>, c: &Cancel, now_ms: i64) -> rusqlite::Result<usize> {
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

/// Cancels a pending or waiting delivery and the later actions of its rule waiting for it.
fn cancel_chain(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let mut n = 0;
    let mut next = Some(id);
    while let Some(d) = next {
        let changed = tx.execute(
            "UPDATE deliveries SET status = 'cancelled', last_error = ?2, updated_at_ms = ?3
             WHERE id = ?1 AND status IN ('pending', 'waiting')",
            params![d, reason, now_ms],
        )?;
        if changed == 0 {
            break;
        }
        n += changed;
        next = tx
            .query_row(
                "SELECT id FROM deliveries WHERE after_id = ?1 AND status = 'waiting'",
                [d],
                |r| r.get(0),
            )
            .optional()?;
    }
    Ok(n)
}

fn action_of(tx: &rusqlite::Transaction<'_>, id: i64) -> rusqlite::Result<i64> {
    tx.query_row("SELECT action FROM deliveries WHERE id = ?1", [id], |r| {
        r.get(0)
    })
}

/// Sends the skipped successors of `id` back to waiting (their predecessor runs again).
fn unskip(tx: &rusqlite::Transaction<'_>, id: i64, now_ms: i64) -> rusqlite::Result<()> {
    let mut next = id;
    loop {
        let succ: Option<i64> = tx
            .query_row(
                "UPDATE deliveries SET status = 'waiting', skipped = 0, last_error = NULL, updated_at_ms = ?2
                 WHERE after_id = ?1 AND status = 'dead' AND skipped = 1 RETURNING id",
                params![next, now_ms],
                |r| r.get(0),
            )
            .optional()?;
        match succ {
            Some(s) => next = s,
            None => return Ok(()),
        }
    }
}

fn requeue(
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
            let n = tx.execute(
                "UPDATE deliveries SET status = CASE WHEN skipped = 1 THEN 'waiting' ELSE 'pending' END,
                                       skipped = 0, next_attempt_at_ms = ?2, deadline_ms = ?3,
                                       updated_at_ms = ?2, spec = NULL
                 WHERE id = ?1 AND status IN ('dead', 'pending')",
                params![id, now_ms, deadline_ms],
            )?;
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
        RequeueTarget::AllDead => tx.execute(
            "UPDATE deliveries SET status = CASE WHEN skipped = 1 THEN 'waiting' ELSE 'pending' END,
                                   skipped = 0, next_attempt_at_ms = ?1, deadline_ms = ?2,
                                   updated_at_ms = ?1, spec = NULL
             WHERE status = 'dead'",
            params![now_ms, deadline_ms],
        ),
    }
}
