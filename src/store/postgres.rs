//! PostgreSQL backend, for several replicas on one database. Accepts are group-committed: a
//! few writer tasks each take every callback queued and store them with one `unnest` insert
//! per table in one transaction (unique (receiver, dedupe_key) makes a retry that lands on
//! another replica a duplicate). Claims use `FOR UPDATE SKIP LOCKED` and a lease that the
//! owner renews; a replica that stops renewing loses its claims to the others. Rate limits and
//! named locks go through the database, so they hold across replicas. A replica that commits
//! new deliveries says so on a NOTIFY channel every replica LISTENs to, so idle workers
//! elsewhere pick the work up at once instead of at their next poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{
    Cancel, ClaimedDelivery, DeliveryFilter, DeliveryRow, DeliveryStatus, GroupRow, ListFilter,
    NewDelivery, Outcome, RequeueTarget, StoreError, Stored, StoredEvent,
};
use crate::config::StoreConfig;
use crate::event::Event;

/// Most callbacks one transaction takes.
const MAX_BATCH: usize = 256;
/// Callbacks waiting for a writer before `accept` itself waits (backpressure).
const QUEUE: usize = 4096;
/// Transactions storing callbacks at once, per process (2 measured best on 2 cores: bigger
/// batches, fewer commits).
const WRITERS: usize = 2;
/// A callback answered 503 rather than waiting longer for the database: vendors give up
/// after about 5 s and retry.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connecting, and waiting for a pooled connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A batch that lost a deadlock or serialization race runs again this many times.
const RETRIES: usize = 3;

/// The schema, one step per version; `hookgate_schema` records the steps applied.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE events (
    id             BIGSERIAL PRIMARY KEY,
    receiver       TEXT   NOT NULL,
    vendor         TEXT   NOT NULL,
    kind           TEXT   NOT NULL,
    dedupe_key     TEXT   NOT NULL,
    received_at_ms BIGINT NOT NULL,
    raw            TEXT   NOT NULL,
    UNIQUE (receiver, dedupe_key)
);
CREATE TABLE deliveries (
    id                 BIGSERIAL PRIMARY KEY,
    event_id           BIGINT  NOT NULL REFERENCES events (id),
    rule               TEXT    NOT NULL,
    action             BIGINT  NOT NULL,
    kind               TEXT    NOT NULL,
    status             TEXT    NOT NULL,   -- waiting | pending | running | done | dead | cancelled
    after_id           BIGINT  REFERENCES deliveries (id),
    skipped            BOOLEAN NOT NULL DEFAULT false,
    correlation        TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT  NOT NULL,
    deadline_ms        BIGINT  NOT NULL,
    created_at_ms      BIGINT  NOT NULL,
    updated_at_ms      BIGINT  NOT NULL,
    last_error         TEXT,
    -- The replica running it, and until when its claim holds without renewal.
    claimed_by         TEXT,
    lease_until_ms     BIGINT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at_ms, id) WHERE status = 'pending';
CREATE INDEX deliveries_lease ON deliveries (lease_until_ms) WHERE status = 'running';
CREATE INDEX deliveries_after ON deliveries (after_id) WHERE after_id IS NOT NULL;
CREATE INDEX deliveries_key ON deliveries (correlation) WHERE correlation IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE TABLE tokens (
    key           TEXT   PRIMARY KEY,
    token         TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE groups (
    connection           TEXT   NOT NULL,
    key                  TEXT   NOT NULL,
    chat_id              TEXT   NOT NULL,
    open_conversation_id TEXT,
    name                 TEXT   NOT NULL,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    PRIMARY KEY (connection, key)
);
CREATE TABLE robot_sends (
    key   TEXT   NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX robot_sends_key ON robot_sends (key, at_ms);
CREATE TABLE robot_pauses (
    key      TEXT   PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
",
    "
-- The fingerprint of the action a delivery was made for (a reload must not swap it).
ALTER TABLE deliveries ADD COLUMN spec TEXT;
-- DingTalk robot (timestamp, sign) pairs accepted, with the body each carried (the sign
-- covers no body): shared by every replica, kept for the timestamp window.
CREATE TABLE robot_signs (
    receiver TEXT   NOT NULL,
    stamp    TEXT   NOT NULL,
    sign     TEXT   NOT NULL,
    digest   BYTEA  NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (receiver, stamp, sign)
);
",
];

const EVENT_COLUMNS: &str = "id, receiver, vendor, kind, dedupe_key, received_at_ms, raw";

struct AcceptOp {
    event: Event,
    deliveries: Vec<NewDelivery>,
    cancels: Vec<Cancel>,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

pub(super) struct Postgres {
    pool: Pool,
    /// host:port/dbname, for logs.
    shown: String,
    /// This process, in `claimed_by`: a claim is renewed and finished only by its owner.
    owner: String,
    lease_ms: i64,
    versions: (i64, i64),
    accepts: mpsc::Sender<AcceptOp>,
    due: Arc<tokio::sync::Notify>,
    announcer: Arc<Announcer>,
    /// Dropped with the store: ends its LISTEN connection.
    _listening: oneshot::Sender<()>,
}

/// Tells the other replicas (NOTIFY) that deliveries are due; one NOTIFY at a time, another
/// after it if more work was committed meanwhile.
struct Announcer {
    pool: Pool,
    channel: String,
    running: std::sync::atomic::AtomicBool,
    dirty: std::sync::atomic::AtomicBool,
}

impl Announcer {
    fn announce(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.dirty.store(true, SeqCst);
        if self.running.swap(true, SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                while this.dirty.swap(false, SeqCst) {
                    let sent = async {
                        let client = this.pool.get().await.map_err(unavailable)?;
                        client
                            .execute("SELECT pg_notify($1, '')", &[&this.channel])
                            .await
                            .map_err(db_error)
                    };
                    if let Err(e) = sent.await {
                        // The others find the work at their next poll.
                        tracing::debug!(error = %e, "NOTIFY failed.");
                    }
                }
                this.running.store(false, SeqCst);
                if !this.dirty.load(SeqCst) || this.running.swap(true, SeqCst) {
                    return;
                }
            }
        });
    }
}

/// The NOTIFY channel of a schema (channels are per database; identifiers at most 63 bytes).
fn due_channel(schema: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(schema.as_bytes());
    let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("hookgate_due_{tag}")
}

/// Keeps a connection LISTENing on `channel` and wakes this process's worker on each NOTIFY;
/// reconnects after a loss, ends when `stop` is dropped.
async fn listen(
    pg: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    channel: String,
    due: Arc<tokio::sync::Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let session = async {
            let (client, mut connection) =
                pg.connect(tls.clone()).await.map_err(|e| e.to_string())?;
            let messages = async {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                            due.notify_one();
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return e.to_string(),
                        None => return "closed".to_owned(),
                    }
                }
            };
            let subscribe = async {
                client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .map_err(|e| e.to_string())?;
                // Work committed while this was not listening.
                due.notify_one();
                std::future::pending::<Result<(), String>>().await
            };
            tokio::select! {
                why = messages => Err(why),
                r = subscribe => r,
            }
        };
        tokio::select! {
            r = session => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "LISTEN connection lost; the worker polls meanwhile.");
                }
            }
            _ = &mut stop => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = &mut stop => return,
        }
    }
}

/// Advisory lock keys are per database; the name is qualified by the schema (the store), so
/// two hookgate installations in one database do not serialise each other's locks.
macro_rules! lock_key {
    ($name:literal) => {
        concat!(
            "hashtextextended(coalesce(current_schema(), '') || ':' || ",
            $name,
            ", 0)"
        )
    };
}

/// A session advisory lock on a pooled connection; released when dropped (or, should that
/// fail, by closing the connection, which releases it on the server).
pub struct AdvisoryLock {
    client: Option<deadpool_postgres::Object>,
    name: String,
}

impl AdvisoryLock {
    /// The session holding the lock answers (so the lock is still ours).
    pub async fn alive(&self) -> bool {
        match &self.client {
            Some(c) => tokio::time::timeout(CONNECT_TIMEOUT, c.simple_query("SELECT 1"))
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(deadpool_postgres::Object::take(client));
            return;
        };
        runtime.spawn(async move {
            let unlocked = client
                .query_one(
                    concat!("SELECT pg_advisory_unlock(", lock_key!("$1"), ")"),
                    &[&name],
                )
                .await;
            if !matches!(unlocked.map(|r| r.get::<_, bool>(0)), Ok(true)) {
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}

/// A statement prepared once per connection.
async fn cached(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(db_error)
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Arc::new(e))
}

/// A driver error: the connection's (retryable) or the query's.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    if is_connection(&e) {
        unavailable(e)
    } else {
        StoreError::Query(Arc::new(e))
    }
}

/// The connection failed (closed, I/O), as opposed to the server refusing a statement.
fn is_connection(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

impl Postgres {
    pub(super) async fn open(
        url: &str,
        config: &StoreConfig,
        health: Arc<super::Health>,
    ) -> Result<Self, StoreError> {
        let (mut pg, verify) = crate::config::parse_postgres_url(url, config.ca_file.is_some())
            .map_err(|e| StoreError::Open {
                path: "store.url".into(),
                source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(e)),
            })?;
        let shown = describe(&pg);
        // With the causes: "TLS handshake" alone does not say the certificate was refused.
        let open_error = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: shown.clone(),
            source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(causes(
                &*e,
            ))),
        };
        if pg.get_application_name().is_none() {
            pg.application_name("hookgate");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.keepalives_idle(Duration::from_secs(30));
        let tls = crate::tls::client(verify, config.ca_file.as_deref())
            .map(tokio_postgres_rustls::MakeRustlsConnect::new)
            .map_err(|e| open_error(e.into()))?;
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| open_error(e.into()))?;
        let (versions, schema) = {
            let mut client = pool.get().await.map_err(|e| open_error(e.into()))?;
            let versions = migrate(&mut client).await.map_err(|e| match e {
                e @ StoreError::TooNew { .. } => e,
                other => open_error(other.into()),
            })?;
            let schema: String = client
                .query_one("SELECT coalesce(current_schema(), '')", &[])
                .await
                .map_err(|e| open_error(e.into()))?
                .get(0);
            (versions, schema)
        };
        let (accepts, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let due = Arc::new(tokio::sync::Notify::new());
        let channel = due_channel(&schema);
        let announcer = Arc::new(Announcer {
            pool: pool.clone(),
            channel: channel.clone(),
            running: false.into(),
            dirty: false.into(),
        });
        for _ in 0..WRITERS {
            tokio::spawn(write_loop(
                pool.clone(),
                rx.clone(),
                due.clone(),
                announcer.clone(),
                health.clone(),
            ));
        }
        let (listening, stop) = oneshot::channel();
        tokio::spawn(listen(pg, tls, channel, due.clone(), stop));
        let owner = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        tracing::info!(database = %shown, replica = %owner, schema = versions.1, "PostgreSQL store ready.");
        Ok(Self {
            pool,
            shown,
            owner,
            lease_ms: i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX / 4),
            versions,
            accepts,
            due,
            announcer,
            _listening: listening,
        })
    }

    pub(super) fn schema_versions(&self) -> (i64, i64) {
        self.versions
    }

    pub(super) fn location(&self) -> String {
        self.shown.clone()
    }

    pub(super) fn maintain_every(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.lease_ms / 3).unwrap_or(1000).max(200))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    pub(super) async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Stored, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op = AcceptOp {
            event,
            deliveries,
            cancels,
            reply,
        };
        let queued = async {
            self.accepts
                .send(op)
                .await
                .map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        };
        match tokio::time::timeout(ACCEPT_TIMEOUT, queued).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(Arc::from(Box::<
                dyn std::error::Error + Send + Sync,
            >::from(
                "no commit within 3 s".to_owned(),
            )))),
        }
    }

    pub(super) async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let claim = client
            .prepare_cached(
                "WITH due AS (
                     SELECT id FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at_ms <= $1
                     ORDER BY next_attempt_at_ms, id LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 ), claimed AS (
                     UPDATE deliveries d SET status = 'running', attempts = d.attempts + 1,
                            updated_at_ms = $1, claimed_by = $3, lease_until_ms = $1 + $4
                     FROM due WHERE d.id = due.id
                     RETURNING d.id, d.event_id, d.rule, d.action, d.kind, d.attempts, d.deadline_ms,
                               d.spec
                 )
                 SELECT c.id, c.rule, c.action, c.kind, c.attempts, c.deadline_ms,
                        e.id, e.receiver, e.vendor, e.kind, e.dedupe_key, e.received_at_ms, e.raw,
                        c.spec
                 FROM claimed c JOIN events e ON e.id = c.event_id ORDER BY c.id",
            )
            .await
            .map_err(db_error)?;
        let rows = client
            .query(&claim, &[&now_ms, &limit, &self.owner, &self.lease_ms])
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| ClaimedDelivery {
                id: r.get(0),
                rule: r.get(1),
                action: usize::try_from(r.get::<_, i64>(2)).unwrap_or(usize::MAX),
                kind: r.get(3),
                spec: r.get(13),
                attempts: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                deadline_ms: r.get(5),
                event: StoredEvent::from_row(
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get(12),
                ),
            })
            .collect())
    }

    pub(super) async fn finish(
        &self,
        id: i64,
        outcome: Outcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // Only while the claim is ours: after a lost lease another replica owns the row.
        let mine = "id = $1 AND status = 'running' AND claimed_by = $2";
        let changed = match &outcome {
            Outcome::Done => client
                .execute(
                    &cached(
                        &client,
                        &format!(
                            "WITH done AS (
                             UPDATE deliveries SET status = 'done', updated_at_ms = $3,
                                    lease_until_ms = NULL
                             WHERE {mine} RETURNING id
                         ), next AS (
                             UPDATE deliveries SET status = 'pending', updated_at_ms = $3,
                                    next_attempt_at_ms = greatest(next_attempt_at_ms, $3)
                             WHERE after_id IN (SELECT id FROM done) AND status = 'waiting'
                         )
                         SELECT 1 FROM done"
                        ),
                    )
                    .await?,
                    &[&id, &self.owner, &now_ms],
                )
                .await
                .map_err(db_error)?,
            Outcome::Retry { at_ms, error } => client
                .execute(
                    &format!(
                        "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = $3,
                                last_error = $4, updated_at_ms = $5, lease_until_ms = NULL
                         WHERE {mine}"
                    ),
                    &[&id, &self.owner, at_ms, error, &now_ms],
                )
                .await
                .map_err(db_error)?,
            Outcome::Defer { at_ms } => client
                .execute(
                    &format!(
                        "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = $3,
                                attempts = greatest(attempts - 1, 0), updated_at_ms = $4,
                                lease_until_ms = NULL
                         WHERE {mine}"
                    ),
                    &[&id, &self.owner, at_ms, &now_ms],
                )
                .await
                .map_err(db_error)?,
            Outcome::Dead { error } => {
                let tx = client.transaction().await.map_err(db_error)?;
                let dead = tx
                    .query_opt(
                        &format!(
                            "UPDATE deliveries SET status = 'dead', last_error = $3,
                                    updated_at_ms = $4, lease_until_ms = NULL
                             WHERE {mine} RETURNING action"
                        ),
                        &[&id, &self.owner, error, &now_ms],
                    )
                    .await
                    .map_err(db_error)?;
                if let Some(row) = &dead {
                    let action: i64 = row.get(0);
                    // The rule's later actions will not run: dead too, marked as skipped.
                    tx.execute(
                        "WITH RECURSIVE chain (id) AS (
                             SELECT id FROM deliveries WHERE after_id = $1 AND status = 'waiting'
                             UNION ALL
                             SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
                             WHERE d.status = 'waiting'
                         )
                         UPDATE deliveries SET status = 'dead', skipped = true, updated_at_ms = $2,
                                last_error = 'skipped: action ' || $3 || ' of the rule is dead'
                         WHERE id IN (SELECT id FROM chain)",
                        &[&id, &now_ms, &action.to_string()],
                    )
                    .await
                    .map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)?;
                u64::from(dead.is_some())
            }
        };
        if changed == 0 {
            tracing::warn!(
                delivery = id,
                "This replica's claim on the delivery had lapsed; another replica runs it."
            );
        }
        if !matches!(outcome, Outcome::Dead { .. }) {
            self.due.notify_one();
        }
        Ok(())
    }

    pub(super) async fn requeue(
        &self,
        target: RequeueTarget,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let n = match target {
            RequeueTarget::Id(id) => {
                let n = tx
                    .execute(
                        "UPDATE deliveries SET status = CASE WHEN skipped THEN 'waiting' ELSE 'pending' END,
                                skipped = false, next_attempt_at_ms = $2, deadline_ms = $3,
                                updated_at_ms = $2, spec = NULL
                         WHERE id = $1 AND status IN ('dead', 'pending')",
                        &[&id, &now_ms, &deadline_ms],
                    )
                    .await
                    .map_err(db_error)?;
                if n > 0 {
                    // Its skipped successors wait for it again.
                    tx.execute(
                        "WITH RECURSIVE chain (id) AS (
                             SELECT id FROM deliveries WHERE after_id = $1 AND status = 'dead' AND skipped
                             UNION ALL
                             SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
                             WHERE d.status = 'dead' AND d.skipped
                         )
                         UPDATE deliveries SET status = 'waiting', skipped = false, last_error = NULL,
                                updated_at_ms = $2
                         WHERE id IN (SELECT id FROM chain)",
                        &[&id, &now_ms],
                    )
                    .await
                    .map_err(db_error)?;
                }
                n
            }
            // Claims whose owner stopped renewing them: run again (at-least-once). Claims of
            // live replicas are theirs to finish.
            RequeueTarget::Running => tx
                .execute(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = $1,
                            updated_at_ms = $1, claimed_by = NULL, lease_until_ms = NULL
                     WHERE status = 'running' AND lease_until_ms <= $1",
                    &[&now_ms],
                )
                .await
                .map_err(db_error)?,
            RequeueTarget::AllDead => tx
                .execute(
                    "UPDATE deliveries SET status = CASE WHEN skipped THEN 'waiting' ELSE 'pending' END,
                            skipped = false, next_attempt_at_ms = $1, deadline_ms = $2,
                            updated_at_ms = $1, spec = NULL
                     WHERE status = 'dead'",
                    &[&now_ms, &deadline_ms],
                )
                .await
                .map_err(db_error)?,
        };
        if n > 0 {
            // In the transaction (sent on commit): `deliveries retry` is a process that ends
            // right after.
            tx.execute("SELECT pg_notify($1, '')", &[&self.announcer.channel])
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        if n > 0 {
            self.due.notify_one();
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Renews this replica's claims, frees lapsed ones, forgets old rate entries; how many
    /// claims were freed.
    pub(super) async fn maintain(&self, now_ms: i64) -> Result<usize, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE deliveries SET lease_until_ms = $1::bigint + $2::bigint
                 WHERE status = 'running' AND claimed_by = $3",
                &[&now_ms, &self.lease_ms, &self.owner],
            )
            .await
            .map_err(db_error)?;
        client
            .execute(
                "DELETE FROM robot_sends WHERE at_ms <= $1",
                &[&(now_ms - super::RATE_WINDOW_MS)],
            )
            .await
            .map_err(db_error)?;
        client
            .execute("DELETE FROM robot_signs WHERE until_ms <= $1", &[&now_ms])
            .await
            .map_err(db_error)?;
        drop(client);
        let freed = self.requeue(RequeueTarget::Running, now_ms, 0).await?;
        if freed > 0 {
            tracing::warn!(
                deliveries = freed,
                "Claims of a replica that stopped renewing them have lapsed; running them here."
            );
        }
        Ok(freed)
    }

    pub(super) async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*), min(created_at_ms) FROM deliveries
                 WHERE status IN ('pending', 'waiting')",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok((row.get(0), row.get(1)))
    }

    /// The database answers and takes writes (a standby after a failover does not).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(db_error)?;
        if row.get::<_, bool>(0) {
            return Err(StoreError::Unavailable(Arc::from(Box::<
                dyn std::error::Error + Send + Sync,
            >::from(
                "the database is a read-only standby".to_owned(),
            ))));
        }
        Ok(())
    }

    pub(super) async fn token(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT token, expires_at_ms FROM tokens WHERE key = $1",
                &[&key],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(super) async fn put_token(
        &self,
        key: String,
        token: String,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO tokens (key, token, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET token = $2, expires_at_ms = $3",
                &[&key, &token, &expires_at_ms],
            )
            .await
            .map_err(db_error)
            .map(drop)
    }

    pub(super) async fn forget_token(&self, key: String, token: String) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM tokens WHERE key = $1 AND token = $2",
                &[&key, &token],
            )
            .await
            .map_err(db_error)
            .map(drop)
    }

    pub(super) async fn group(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<GroupRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms
                 FROM groups WHERE connection = $1 AND key = $2",
                &[&connection, &key],
            )
            .await
            .map_err(db_error)?;
        Ok(row.as_ref().map(row_to_group))
    }

    pub(super) async fn groups(&self, limit: usize) -> Result<Vec<GroupRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms
                 FROM groups ORDER BY created_at_ms DESC LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(row_to_group).collect())
    }

    /// Records a group (chat id "" = being created); a row that has a chat id keeps it
    /// (first one wins).
    pub(super) async fn put_group(&self, g: GroupRow) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO groups (connection, key, chat_id, open_conversation_id, name, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (connection, key) DO UPDATE SET name = $5, updated_at_ms = $7,
                     chat_id = CASE WHEN groups.chat_id = '' THEN $3 ELSE groups.chat_id END,
                     open_conversation_id = coalesce($4, groups.open_conversation_id)",
                &[&g.connection, &g.key, &g.chat_id, &g.open_conversation_id, &g.name, &g.created_at_ms, &g.updated_at_ms],
            )
            .await
            .map_err(db_error)
            .map(drop)
    }

    /// Removes a key from the registry; whether it was there.
    pub(super) async fn forget_group(
        &self,
        connection: String,
        key: String,
    ) -> Result<bool, StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM groups WHERE connection = $1 AND key = $2",
                &[&connection, &key],
            )
            .await
            .map_err(db_error)
            .map(|n| n > 0)
    }

    /// The shared sliding-minute budget: an advisory lock per key serialises the replicas.
    pub(super) async fn rate_take(
        &self,
        key: String,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(
            concat!(
                "SELECT pg_advisory_xact_lock(",
                lock_key!("'rate:' || $1"),
                ")"
            ),
            &[&key],
        )
        .await
        .map_err(db_error)?;
        let row = tx
            .query_one(
                "SELECT (SELECT max(until_ms) FROM robot_pauses WHERE key = $1 AND until_ms > $2),
                        count(*), min(at_ms)
                 FROM robot_sends WHERE key = $1 AND at_ms > $2 - $3",
                &[&key, &now_ms, &super::RATE_WINDOW_MS],
            )
            .await
            .map_err(db_error)?;
        let wait = match row.get::<_, Option<i64>>(0) {
            Some(until) => Some(until - now_ms),
            None => super::rate_wait(row.get(1), row.get(2), per_minute, now_ms),
        };
        if wait.is_none() {
            tx.execute(
                "INSERT INTO robot_sends (key, at_ms) VALUES ($1, $2)",
                &[&key, &now_ms],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(wait)
    }

    pub(super) async fn sign_once(
        &self,
        s: super::SignUse,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let digest = s.digest.to_vec();
        self.client()
            .await?
            .query_opt(
                "INSERT INTO robot_signs (receiver, stamp, sign, digest, until_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (receiver, stamp, sign) DO UPDATE
                     SET digest = excluded.digest, until_ms = excluded.until_ms
                     WHERE robot_signs.until_ms <= $6 OR robot_signs.digest = excluded.digest
                 RETURNING 1",
                &[&s.receiver, &s.timestamp, &s.sign, &digest, &s.until_ms, &now_ms],
            )
            .await
            .map_err(db_error)
            .map(|row| row.is_some())
    }

    pub(super) async fn rate_pause(&self, key: String, until_ms: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO robot_pauses (key, until_ms) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET until_ms = greatest(robot_pauses.until_ms, $2)",
                &[&key, &until_ms],
            )
            .await
            .map_err(db_error)
            .map(drop)
    }

    /// Waits for the advisory lock `name` (held by another replica, or free).
    pub(super) async fn lock(&self, name: &str) -> Result<AdvisoryLock, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                concat!("SELECT pg_advisory_lock(", lock_key!("$1"), ")"),
                &[&name],
            )
            .await
            .map_err(db_error)?;
        Ok(AdvisoryLock {
            client: Some(client),
            name: name.to_owned(),
        })
    }

    pub(super) async fn cancel_now(
        &self,
        key: Option<String>,
        id: Option<i64>,
        reason: String,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let n = match (key, id) {
            (Some(key), _) => {
                let c = Cancel {
                    key,
                    rules: Vec::new(),
                    reason,
                };
                cancel(&tx, &c, now_ms).await
            }
            (None, Some(id)) => cancel_ids(&tx, "id = $1", &id, &[], &reason, now_ms).await,
            (None, None) => Ok(0),
        }
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(n)
    }

    pub(super) fn due_notify(&self) -> Arc<tokio::sync::Notify> {
        self.due.clone()
    }

    pub(super) async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT min(next_attempt_at_ms) FROM deliveries WHERE status = 'pending'",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(row.get(0))
    }

    pub(super) async fn deliveries(
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
                "SELECT d.id, d.event_id, e.receiver, d.rule, d.action, d.kind, d.status, d.attempts,
                        d.next_attempt_at_ms, d.created_at_ms, d.updated_at_ms, d.last_error, d.correlation
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE ($1::text IS NULL OR d.status = $1) AND (NOT $2 OR d.last_error IS NOT NULL)
                   AND ($3::bigint IS NULL OR d.event_id = $3)
                   AND (NOT $5 OR (d.attempts = 0 AND d.next_attempt_at_ms > $6))
                 ORDER BY d.id DESC LIMIT $4",
                &[&status, &failed, &filter.event_id, &limit, &scheduled, &now],
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
            })
            .collect())
    }

    pub(super) async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE ($1::text IS NULL OR receiver = $1) AND ($2::text IS NULL OR kind = $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&filter.receiver, &filter.kind, &limit],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(row_to_event).collect())
    }

    pub(super) async fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db_error)?;
        Ok(row.as_ref().map(row_to_event))
    }
}

fn row_to_event(r: &Row) -> StoredEvent {
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

fn row_to_group(r: &Row) -> GroupRow {
    GroupRow {
        connection: r.get(0),
        key: r.get(1),
        chat_id: r.get(2),
        open_conversation_id: r.get(3),
        name: r.get(4),
        created_at_ms: r.get(5),
        updated_at_ms: r.get(6),
    }
}

/// An error and its sources, `: `-separated.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        next = s.source();
    }
    text
}

/// host:port/dbname, never the password.
fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{host}:{port}/{}",
        pg.get_dbname().unwrap_or("postgres")
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hookgate".into())
}

/// Applies the missing steps of [`MIGRATIONS`] under an advisory lock (replicas starting
/// together migrate once); returns the version found and the version now.
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(i64, i64), StoreError> {
    const LOCK: &str = concat!(
        "SELECT pg_advisory_lock(",
        lock_key!("'hookgate:migrate'"),
        ")"
    );
    const UNLOCK: &str = concat!(
        "SELECT pg_advisory_unlock(",
        lock_key!("'hookgate:migrate'"),
        ")"
    );
    let known = MIGRATIONS.len() as i64;
    client.execute(LOCK, &[]).await.map_err(db_error)?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS hookgate_schema (
                     version       INTEGER PRIMARY KEY,
                     applied_at_ms BIGINT  NOT NULL
                 )",
            )
            .await
            .map_err(db_error)?;
        let found: i64 = client
            .query_one(
                "SELECT coalesce(max(version), 0)::bigint FROM hookgate_schema",
                &[],
            )
            .await
            .map_err(db_error)?
            .get(0);
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.batch_execute(step).await.map_err(db_error)?;
            tx.execute(
                "INSERT INTO hookgate_schema (version, applied_at_ms) VALUES ($1, $2)",
                &[&(i as i32 + 1), &crate::clock::now_ms()],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
        }
        Ok((found, known))
    }
    .await;
    let _ = client.execute(UNLOCK, &[]).await;
    result
}

/// A writer task: takes one queued callback and every other already queued, stores them in
/// one transaction, answers each after the commit. Ends when the store is dropped.
async fn write_loop(
    pool: Pool,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<AcceptOp>>>,
    due: Arc<tokio::sync::Notify>,
    announcer: Arc<Announcer>,
    health: Arc<super::Health>,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            batch
        };
        // Answered already (timed out): nothing to store for them.
        let batch: Vec<AcceptOp> = batch
            .into_iter()
            .filter(|op| !op.reply.is_closed())
            .collect();
        if batch.is_empty() {
            continue;
        }
        let result = store_batch(&pool, &batch).await;
        match result {
            Ok(stored) => {
                health.committed();
                let wake = batch
                    .iter()
                    .zip(&stored)
                    .any(|(op, s)| !s.duplicate && !op.deliveries.is_empty());
                for (op, s) in batch.into_iter().zip(stored) {
                    let _ = op.reply.send(Ok(s));
                }
                if wake {
                    due.notify_one();
                    announcer.announce();
                }
            }
            Err(e) => {
                let cause = super::health::chain(&e);
                tracing::error!(error = %cause, batch = batch.len(), "Store commit failed; the vendor will retry.");
                health.failed(&e);
                for op in batch {
                    let _ = op.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn store_batch(pool: &Pool, batch: &[AcceptOp]) -> Result<Vec<Stored>, StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = if batch
            .iter()
            .all(|op| op.deliveries.is_empty() && op.cancels.is_empty())
        {
            // Events only: one insert statement commits by itself, no BEGIN/COMMIT trips.
            insert_chunk(&client, batch).await
        } else {
            async {
                let tx = client.transaction().await?;
                let stored = insert_batch(&tx, batch).await?;
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(stored)
            }
            .await
        };
        match result {
            Ok(stored) => return Ok(stored),
            Err(e) if is_race(&e) && attempt <= RETRIES => {
                tracing::debug!(error = %e, "Batch lost a race with another replica; again.");
            }
            Err(e) if is_connection(&e) => return Err(unavailable(e)),
            Err(e) => return Err(StoreError::Commit(Arc::new(e))),
        }
    }
}

/// Stores the batch in order: the callbacks up to each one that cancels go in together,
/// then its cancels apply (so a cancel sees exactly what was stored before it).
async fn insert_batch(
    tx: &Transaction<'_>,
    batch: &[AcceptOp],
) -> Result<Vec<Stored>, tokio_postgres::Error> {
    let mut stored = Vec::with_capacity(batch.len());
    let mut start = 0;
    for (i, op) in batch.iter().enumerate() {
        if op.cancels.is_empty() && i + 1 < batch.len() {
            continue;
        }
        let chunk = &batch[start..=i];
        stored.extend(insert_chunk(tx, chunk).await?);
        start = i + 1;
        if !op.cancels.is_empty() && stored.last().is_some_and(|s: &Stored| !s.duplicate) {
            for c in &op.cancels {
                cancel(tx, c, op.event.received_at_ms()).await?;
            }
        }
    }
    Ok(stored)
}

/// One `unnest` insert for the events (in key order, so concurrent batches lock in the same
/// order), one lookup for duplicates, one for delivery ids and one insert for the deliveries.
async fn insert_chunk(
    tx: &impl GenericClient,
    chunk: &[AcceptOp],
) -> Result<Vec<Stored>, tokio_postgres::Error> {
    // The first of equal keys in the chunk is the one inserted.
    let mut order: Vec<usize> = (0..chunk.len()).collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&chunk[a].event, &chunk[b].event);
        (ea.receiver(), ea.dedupe_key(), a).cmp(&(eb.receiver(), eb.dedupe_key(), b))
    });
    order.dedup_by(|b, a| {
        let (ea, eb) = (&chunk[*a].event, &chunk[*b].event);
        ea.receiver() == eb.receiver() && ea.dedupe_key() == eb.dedupe_key()
    });
    let column = |f: &dyn Fn(&Event) -> String| -> Vec<String> {
        order.iter().map(|&i| f(&chunk[i].event)).collect()
    };
    let receivers = column(&|e| e.receiver().to_owned());
    let keys = column(&|e| e.dedupe_key().to_owned());
    let inserted = tx
        .query(
            &tx.prepare_cached(
            "INSERT INTO events (receiver, vendor, kind, dedupe_key, received_at_ms, raw)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
             ON CONFLICT (receiver, dedupe_key) DO NOTHING
             RETURNING id, receiver, dedupe_key").await?,
            &[
                &receivers,
                &column(&|e| e.vendor().as_str().to_owned()),
                &column(&|e| e.kind().to_owned()),
                &keys,
                &order
                    .iter()
                    .map(|&i| chunk[i].event.received_at_ms())
                    .collect::<Vec<i64>>(),
                &column(&|e| e.raw().to_owned()),
            ],
        )
        .await?;
    let mut new: HashMap<(String, String), i64> = inserted
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect();
    let mut ids = new.clone();
    if new.len() < order.len() {
        let existing = tx
            .query(
                &tx.prepare_cached(
                    "SELECT e.id, e.receiver, e.dedupe_key FROM events e
                 JOIN unnest($1::text[], $2::text[]) AS k (receiver, dedupe_key)
                   ON e.receiver = k.receiver AND e.dedupe_key = k.dedupe_key",
                )
                .await?,
                &[&receivers, &keys],
            )
            .await?;
        for r in &existing {
            ids.entry((r.get(1), r.get(2))).or_insert(r.get(0));
        }
    }
    let mut stored = Vec::with_capacity(chunk.len());
    let mut firsts = Vec::new();
    for op in chunk {
        let k = (
            op.event.receiver().to_owned(),
            op.event.dedupe_key().to_owned(),
        );
        let id = ids.get(&k).copied().unwrap_or_default();
        // Only the first op with a new key owns it; later equal keys are duplicates.
        let duplicate = new.remove(&k).is_none();
        if !duplicate {
            firsts.push((id, op));
        }
        stored.push(Stored { id, duplicate });
    }
    let count: usize = firsts.iter().map(|(_, op)| op.deliveries.len()).sum();
    if count > 0 {
        insert_deliveries(tx, &firsts, count).await?;
    }
    Ok(stored)
}

async fn insert_deliveries(
    tx: &impl GenericClient,
    events: &[(i64, &AcceptOp)],
    count: usize,
) -> Result<(), tokio_postgres::Error> {
    let mut ids: Vec<i64> = tx
        .query(
            &tx.prepare_cached(
                "SELECT nextval('deliveries_id_seq') FROM generate_series(1::bigint, $1::bigint)",
            )
            .await?,
            &[&(count as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort_unstable();
    let mut ids = ids.into_iter();
    let mut cols = DeliveryColumns::default();
    for (event_id, op) in events {
        let received = op.event.received_at_ms();
        // The actions of one rule run in order: each after the previous one is done.
        let mut previous: Option<(&str, i64)> = None;
        for d in &op.deliveries {
            let id = ids.next().unwrap_or_default();
            let after = previous
                .filter(|(rule, _)| *rule == d.rule)
                .map(|(_, id)| id);
            cols.id.push(id);
            cols.event_id.push(*event_id);
            cols.rule.push(d.rule.clone());
            cols.action.push(d.action as i64);
            cols.kind.push(d.kind.clone());
            cols.status.push(if after.is_some() {
                "waiting"
            } else {
                "pending"
            });
            cols.after_id.push(after);
            cols.next.push(d.due_ms.max(received));
            cols.deadline.push(d.deadline_ms);
            cols.created.push(received);
            cols.key.push(d.key.clone());
            cols.spec.push(d.spec.clone());
            previous = Some((d.rule.as_str(), id));
        }
    }
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO deliveries (id, event_id, rule, action, kind, status, after_id,
                                 next_attempt_at_ms, deadline_ms, created_at_ms, updated_at_ms,
                                 correlation, spec)
         SELECT id, event_id, rule, action, kind, status, after_id, next_at, deadline, created,
                created, correlation, spec
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                     $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                     $11::text[], $12::text[])
              AS d (id, event_id, rule, action, kind, status, after_id, next_at, deadline,
                    created, correlation, spec)",
        )
        .await?,
        &[
            &cols.id,
            &cols.event_id,
            &cols.rule,
            &cols.action,
            &cols.kind,
            &cols.status,
            &cols.after_id,
            &cols.next,
            &cols.deadline,
            &cols.created,
            &cols.key,
            &cols.spec,
        ],
    )
    .await?;
    Ok(())
}

#[derive(Default)]
struct DeliveryColumns {
    id: Vec<i64>,
    event_id: Vec<i64>,
    rule: Vec<String>,
    action: Vec<i64>,
    kind: Vec<String>,
    status: Vec<&'static str>,
    after_id: Vec<Option<i64>>,
    next: Vec<i64>,
    deadline: Vec<i64>,
    created: Vec<i64>,
    key: Vec<Option<String>>,
    spec: Vec<Option<String>>,
}

/// Calls off the pending and waiting deliveries with the cancel's key (of its rules, if
/// any), and the later actions of their rules that wait for them.
async fn cancel(
    tx: &Transaction<'_>,
    c: &Cancel,
    now_ms: i64,
) -> Result<usize, tokio_postgres::Error> {
    cancel_ids(
        tx,
        "correlation = $1 AND (cardinality($2::text[]) = 0 OR rule = ANY($2))",
        &c.key,
        &c.rules,
        &c.reason,
        now_ms,
    )
    .await
}

/// Cancels the pending or waiting deliveries `roots` selects (with `$1` = `first`, `$2` =
/// `rules`) and their waiting successors.
async fn cancel_ids(
    tx: &Transaction<'_>,
    roots: &str,
    first: &(dyn tokio_postgres::types::ToSql + Sync),
    rules: &[String],
    reason: &str,
    now_ms: i64,
) -> Result<usize, tokio_postgres::Error> {
    let n = tx
        .execute(
            &format!(
                "WITH RECURSIVE chain (id) AS (
                     SELECT id FROM deliveries
                     WHERE {roots} AND status IN ('pending', 'waiting') AND $2::text[] IS NOT NULL
                     UNION
                     SELECT d.id FROM deliveries d JOIN chain c ON d.after_id = c.id
                     WHERE d.status = 'waiting'
                 )
                 UPDATE deliveries SET status = 'cancelled', last_error = $3, updated_at_ms = $4
                 WHERE id IN (SELECT id FROM chain) AND status IN ('pending', 'waiting')"
            ),
            &[first, &rules, &reason, &now_ms],
        )
        .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Verified;
    use crate::event::Vendor;

    fn op(key: &str, deliveries: Vec<NewDelivery>, cancels: Vec<Cancel>) -> AcceptOp {
        let xml = format!("<xml><MsgType>text</MsgType><MsgId>{key}</MsgId></xml>");
        AcceptOp {
            event: Event::parse("r", Vendor::WeCom, Verified::new(xml), 1).unwrap(),
            deliveries,
            cancels,
            reply: oneshot::channel().0,
        }
    }

    fn timer() -> Vec<NewDelivery> {
        vec![NewDelivery {
            spec: None,
            rule: "r".into(),
            action: 0,
            kind: "log".into(),
            due_ms: 9_000,
            key: Some("k".into()),
            deadline_ms: i64::MAX,
        }]
    }

    /// One batch holding a timer, its cancel, a copy of the first callback and a new timer
    /// with the key: the cancel sees exactly what came before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_keeps_the_order_of_its_cancels() {
        let url = crate::store::tests::pg::fresh_url("batch");
        let store = Postgres::open(&url, &StoreConfig::postgres(&url), Arc::default())
            .await
            .unwrap();
        let cancel = Cancel {
            key: "k".into(),
            rules: vec![],
            reason: "off".into(),
        };
        let batch = vec![
            op("a", timer(), vec![]),
            op("b", vec![], vec![cancel]),
            op("a", timer(), vec![]),
            op("c", timer(), vec![]),
        ];
        let stored = store_batch(&store.pool, &batch).await.unwrap();
        let flags: Vec<bool> = stored.iter().map(|s| s.duplicate).collect();
        assert_eq!(flags, [false, false, true, false]);
        assert_eq!(stored[0].id, stored[2].id);
        let rows = store
            .deliveries(&DeliveryFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let of = |id| rows.iter().find(|d| d.event_id == id).unwrap().status;
        assert_eq!(rows.len(), 2);
        assert_eq!(of(stored[0].id), DeliveryStatus::Cancelled);
        assert_eq!(of(stored[3].id), DeliveryStatus::Pending);
    }
}
