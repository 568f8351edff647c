//! SQLite backend: WAL, one writer thread that group-commits whatever callbacks arrived while
//! the previous transaction was syncing (one fsync for many replies), a checkpointer thread
//! that copies the WAL into the database off the writer's path, and a reader connection whose
//! queries run on tokio's blocking threads, never on the runtime's. The same file set as
//! `postgres/`, by concern: `schema`, `accept`, `deliveries`, `registry`, `rate`, `read`,
//! `notify`, `lock`, `operator`, `retention`.

mod accept;
mod deliveries;
pub(super) mod lock;
mod notify;
mod operator;
mod rate;
mod read;
mod registry;
mod retention;
mod schema;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::event::Event;
use crate::store::{
    Cancel, ClaimedDelivery, NewDelivery, Outcome, Queued, RequeueTarget, StoreError, Stored,
};
use crate::store::{StoreConfig, Synchronous};
use accept::insert_event;
use deliveries::{cancel, claim, finish, requeue};
use schema::{Migration, migrate};

impl Sqlite {
    pub(in crate::store) fn open(
        config: &StoreConfig,
        health: Arc<crate::store::Health>,
    ) -> Result<Self, StoreError> {
        let path = config.path.as_path();
        private_files(path).map_err(|e| open_error(path, e))?;
        let mut writer = connect(path, config.synchronous)?;
        let versions = migrate(&mut writer).map_err(|e| match e {
            Migration::TooNew(found) => StoreError::TooNew {
                found,
                known: crate::store::migrations::STEPS.len() as i64,
            },
            Migration::Sql(e) => open_error(path, e),
        })?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .and_then(|()| {
                writer.pragma_update(None, "journal_size_limit", WRITER_CHECKPOINT_PAGES * 4096)
            })
            .map_err(|e| open_error(path, e))?;
        // Every statement the writer runs stays prepared (rusqlite keeps 16 by default; the
        // writer has about 30, and a re-parse costs more than the statement).
        writer.set_prepared_statement_cache_capacity(STATEMENTS);
        let reader = connect(path, config.synchronous)?;
        reader.set_prepared_statement_cache_capacity(STATEMENTS);
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
            reader: Arc::new(Mutex::new(reader)),
            due,
        })
    }

    pub(in crate::store) fn schema_versions(&self) -> (i64, i64) {
        self.versions
    }

    pub(in crate::store) fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        self.queue(op).await?.await
    }

    /// Puts `op` in the writer's queue (first queued, first committed); the future it gives
    /// waits for its result.
    async fn queue<T: Send + 'static>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<Queued<T>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(op(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Box::pin(async move {
            rx.await.map_err(|_| StoreError::Closed)?
        }))
    }

    /// Runs `f` on the reader connection on one of tokio's blocking threads: a SQLite read
    /// may wait on the disk, which a runtime thread must not.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(query_error)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    async fn write(&self, f: WriteFn) -> Result<usize, StoreError> {
        self.call(|reply| Op::Write { f: Some(f), reply }).await
    }

    /// A write transaction that changes nothing: the store takes writes.
    pub(in crate::store) async fn ping(&self) -> Result<(), StoreError> {
        self.write(Box::new(|_| Ok(0))).await.map(drop)
    }
}

/// Most callbacks one transaction takes; bounds the latency of the first in a batch.
const MAX_BATCH: usize = 512;

/// Prepared statements each connection keeps.
const STATEMENTS: usize = 64;

/// Callbacks waiting for the writer before `accept` itself waits (backpressure).
const QUEUE: usize = 4096;

/// The writer checkpoints by itself only when the WAL reaches this many pages (8 MiB with
/// 4 KiB pages): a bound for when the checkpointer cannot keep up, not the normal path.
const WRITER_CHECKPOINT_PAGES: u32 = 2_048;

/// Least time between two background checkpoints, so each copies many commits at once.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// No write for this long: the store is idle, and the checkpointer restarts the WAL.
const IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// No write for this long: the checkpointer empties the WAL file.
const LONG_IDLE: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_secs(3)
} else {
    std::time::Duration::from_secs(60)
};

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
    /// Outcomes of claimed deliveries, recorded together.
    Finish {
        outcomes: Arc<[(i64, Outcome)]>,
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
    /// Reads run on it on tokio's blocking threads ([`Sqlite::read`]).
    reader: Arc<Mutex<Connection>>,
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

fn query_error(e: rusqlite::Error) -> StoreError {
    StoreError::Query(Arc::new(e))
}

/// The writer thread: take one op, then everything else already queued, run them in one
/// transaction, answer each after the commit, nudge the checkpointer and, if deliveries
/// became due, the worker. Ends when every `Store` handle is dropped.
fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    committed: std::sync::mpsc::SyncSender<()>,
    due: Arc<tokio::sync::Notify>,
    health: &crate::store::Health,
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
                    // Only writes are for the checkpointer (an empty claim every second
                    // must not keep a quiet store from counting as idle). Full means a
                    // nudge is already pending: nothing to add.
                    let _ = committed.try_send(());
                }
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
                outcomes, now_ms, ..
            } => {
                for (id, outcome) in outcomes.iter() {
                    finish(&tx, *id, outcome, *now_ms)?;
                    // A retry or a wait comes due again; a done one may free its successor.
                    *wake |= !matches!(outcome, Outcome::Dead { .. } | Outcome::Skipped { .. });
                }
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
/// WAL holds into the database (PASSIVE: never blocks the writer). After [`IDLE`] without a
/// write, RESTART: the next burst writes the WAL from its start, over the file as it is
/// (no growing it, so no file-size change in each sync). After [`LONG_IDLE`], TRUNCATE: a
/// quiet store is one file. Ends with the writer.
fn checkpoint_loop(conn: Connection, commits: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    /// What the last checkpoint left the WAL as.
    #[derive(Clone, Copy, PartialEq)]
    enum Wal {
        /// Written since (PASSIVE).
        Written,
        /// Restarted: copied, the next write starts it over (RESTART).
        Restarted,
        /// Empty (TRUNCATE).
        Emptied,
    }
    // The idle checkpoints wait for readers at most this long, and block writers meanwhile;
    // a busy store is not idle, and the next quiet moment tries again.
    let _ = conn.busy_timeout(std::time::Duration::from_millis(100));
    let mut wal = Wal::Emptied;
    loop {
        let next = match wal {
            Wal::Written => commits.recv_timeout(IDLE),
            Wal::Restarted => commits.recv_timeout(LONG_IDLE.saturating_sub(IDLE)),
            Wal::Emptied => commits.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let (mode, then) = match next {
            Ok(()) => ("PASSIVE", Wal::Written),
            Err(RecvTimeoutError::Timeout) if wal == Wal::Written => ("RESTART", Wal::Restarted),
            Err(RecvTimeoutError::Timeout) => ("TRUNCATE", Wal::Emptied),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // (busy, WAL frames, frames copied); busy: readers kept an idle one from finishing,
        // and the next quiet spell tries again.
        let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            r.get::<_, i64>(0)
        });
        match done {
            Ok(busy) if busy == 0 || then == Wal::Written => wal = then,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; the writer will checkpoint instead.");
            }
        }
        if then == Wal::Written {
            std::thread::sleep(CHECKPOINT_EVERY);
        }
    }
}
