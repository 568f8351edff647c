//! SQLite backend: WAL, one writer thread that group-commits whatever callbacks arrived while
//! the previous transaction was syncing (one fsync for many replies), a checkpointer thread
//! that copies the WAL into the database off the writer's path, and a reader connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{ListFilter, StoreError, Stored, StoredEvent};
use crate::config::{StoreConfig, Synchronous};
use crate::event::Event;

/// Most callbacks one transaction takes; bounds the latency of the first in a batch.
const MAX_BATCH: usize = 512;
/// Callbacks waiting for the writer before `accept` itself waits (backpressure).
const QUEUE: usize = 4096;
/// The writer checkpoints by itself only when the WAL reaches this many pages (64 MiB with
/// 4 KiB pages): a bound for when the checkpointer cannot keep up, not the normal path.
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;
/// Least time between two background checkpoints, so each copies many commits at once.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

const SCHEMA: &str = "
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
PRAGMA user_version = 1;
";

struct Job {
    event: Event,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

pub(super) struct Sqlite {
    jobs: mpsc::Sender<Job>,
    reader: Mutex<Connection>,
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

impl Sqlite {
    pub(super) fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let path = config.path.as_path();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(path, e))?;
        }
        let writer = connect(path, config.synchronous)?;
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| open_error(path, e))?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .and_then(|()| {
                writer.pragma_update(None, "journal_size_limit", WRITER_CHECKPOINT_PAGES * 4096)
            })
            .map_err(|e| open_error(path, e))?;
        let reader = connect(path, config.synchronous)?;
        let checkpointer = connect(path, config.synchronous)?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (committed, commits) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("hookgate-ckpt".into())
            .spawn(move || checkpoint_loop(checkpointer, commits))
            .map_err(|e| open_error(path, e))?;
        std::thread::Builder::new()
            .name("hookgate-store".into())
            .spawn(move || write_loop(writer, rx, committed))
            .map_err(|e| open_error(path, e))?;
        Ok(Self {
            jobs,
            reader: Mutex::new(reader),
        })
    }

    pub(super) async fn accept(&self, event: Event) -> Result<Stored, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { event, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(super) fn list(&self, filter: &ListFilter) -> Result<Vec<StoredEvent>, StoreError> {
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

    pub(super) fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
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

fn query_error(e: rusqlite::Error) -> StoreError {
    StoreError::Query(Arc::new(e))
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let raw: String = row.get(6)?;
    // The body parsed when it was accepted, so it parses again; should that ever fail, the
    // raw text is still there to read.
    let fields = crate::event::parse_fields(&raw)
        .map(serde_json::Value::Object)
        .unwrap_or(serde_json::Value::Null);
    Ok(StoredEvent {
        id: row.get(0)?,
        receiver: row.get(1)?,
        vendor: row.get(2)?,
        kind: row.get(3)?,
        dedupe_key: row.get(4)?,
        received_at_ms: row.get(5)?,
        fields,
        raw,
    })
}

/// The writer thread: take one job, then everything else already queued, commit them in one
/// transaction, answer each, nudge the checkpointer. Ends when every `Store` handle is dropped.
fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    committed: std::sync::mpsc::SyncSender<()>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch) {
            Ok(stored) => {
                for (job, s) in batch.into_iter().zip(stored) {
                    let _ = job.reply.send(Ok(s));
                }
                // Full means a nudge is already pending: nothing to add.
                let _ = committed.try_send(());
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "Store commit failed; the vendor will retry.");
                let e = Arc::new(e);
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Commit(e.clone())));
                }
            }
        }
    }
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

fn commit(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<Stored>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (receiver, vendor, kind, dedupe_key, received_at_ms, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (receiver, dedupe_key) DO NOTHING RETURNING id",
        )?;
        let mut existing =
            tx.prepare_cached("SELECT id FROM events WHERE receiver = ?1 AND dedupe_key = ?2")?;
        for Job { event: e, .. } in batch {
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
            out.push(match inserted {
                Some(id) => Stored {
                    id,
                    duplicate: false,
                },
                None => Stored {
                    id: existing.query_row(params![e.receiver(), e.dedupe_key()], |r| r.get(0))?,
                    duplicate: true,
                },
            });
        }
    }
    tx.commit()?;
    Ok(out)
}
