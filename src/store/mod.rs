//! The durable store behind one boundary: the callback path calls [`Store::accept`] and
//! answers the vendor only after it returned `Ok`. Two backends with one behaviour: SQLite
//! (embedded, WAL, one process) and PostgreSQL (shared by replicas: claims with leases, rate
//! limits, token refreshes and group creation serialised through the database).

mod health;
mod lock;
#[cfg(test)]
mod model;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use health::Health;
pub use lock::StoreLock;

pub use crate::crypto::robot::SignUse;

use crate::config::StoreConfig;
use crate::event::Event;

/// Where an accepted event lives, and whether it was already there (a vendor retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub duplicate: bool,
}

/// An event as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub receiver: String,
    pub vendor: String,
    pub kind: String,
    pub dedupe_key: String,
    pub received_at_ms: i64,
    pub fields: serde_json::Value,
    pub raw: String,
}

/// A delivery to insert with a new event: one action of one matched rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub rule: String,
    pub action: usize,
    pub kind: String,
    /// The fingerprint of the action it is made for; `None` where none is known.
    pub spec: Option<String>,
    /// Not before this (the event's time, or later for `after = …`).
    pub due_ms: i64,
    /// The rendered `key`, which a later `cancel` names.
    pub key: Option<String>,
    /// After this, a failing delivery goes dead instead of retrying.
    pub deadline_ms: i64,
}

/// Calls off pending deliveries with `key` (of `rules` only, if any), in the transaction that
/// stores the event whose `cancel` action matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub key: String,
    pub rules: Vec<String>,
    /// Why, kept on each cancelled delivery.
    pub reason: String,
}

/// A delivery the worker claimed (now `running`), with its event.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub event: StoredEvent,
    pub rule: String,
    pub action: usize,
    pub kind: String,
    /// The fingerprint of the action it was made for (none for deliveries stored before
    /// hookgate recorded them).
    pub spec: Option<String>,
    /// Attempts started, this one included.
    pub attempts: u32,
    pub deadline_ms: i64,
}

/// How a claimed delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed; run again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Not attempted (the target's rate limit or back-off); run at `at_ms`, attempt not counted.
    Defer {
        at_ms: i64,
    },
    /// Failed for good.
    Dead {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// After an earlier action of the same rule, which is not done yet.
    Waiting,
    /// Called off by a `cancel` (or `deliveries cancel`) before it ran.
    Cancelled,
    /// A filter only: pending, not tried yet, due later (a timer).
    Scheduled,
    Pending,
    Running,
    Done,
    Dead,
    /// A filter only: pending after at least one failure.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Cancelled => "cancelled",
            Self::Scheduled => "scheduled",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Waiting,
            Self::Cancelled,
            Self::Scheduled,
            Self::Pending,
            Self::Running,
            Self::Done,
            Self::Dead,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A delivery as `hookgate deliveries list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: i64,
    pub receiver: String,
    pub rule: String,
    pub action: i64,
    pub kind: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_error: Option<String>,
    /// The action's `key`, if it has one.
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_id: Option<i64>,
    pub limit: usize,
}

/// A group chat in the registry: the vendor's chat id for a `group_create` key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRow {
    pub connection: String,
    pub key: String,
    pub chat_id: String,
    /// DingTalk's `cid…` id, which the v1.0 robot API takes.
    pub open_conversation_id: Option<String>,
    pub name: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Which deliveries `requeue` sends back to pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueTarget {
    Id(i64),
    AllDead,
    /// Deliveries a dead process left `running`; only `serve` may do this, at start.
    Running,
}

/// Which events `list` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub receiver: Option<String>,
    pub kind: Option<String>,
    pub limit: usize,
}

type Source = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Source,
    },
    #[error(
        "the store's schema is at version {found}, newer than this hookgate knows ({known}); run a newer hookgate"
    )]
    TooNew { found: i64, known: i64 },
    #[error("commit failed: {0}")]
    Commit(#[source] Source),
    #[error("query failed: {0}")]
    Query(#[source] Source),
    #[error("the database is unreachable: {0}")]
    Unavailable(#[source] Source),
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// Whether the caller may try again later (the vendor does, after our 503).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Commit(_) | Self::Unavailable(_) | Self::Closed)
    }
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Dispatches a call to the backend; both have the same methods.
macro_rules! backend {
    ($self:ident, $b:ident => $call:expr) => {
        match &*$self.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    locks: Arc<lock::Local>,
    health: Arc<Health>,
}

impl Store {
    /// Opens the store (SQLite at `path`, or PostgreSQL at `url`), brings its schema up to
    /// date, and starts its writers.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let health = Arc::new(Health::default());
        let backend = match &config.url {
            Some(url) => Backend::Postgres(
                postgres::Postgres::open(url.expose(), config, health.clone()).await?,
            ),
            None => Backend::Sqlite(sqlite::Sqlite::open(config, health.clone())?),
        };
        Ok(Self {
            backend: Arc::new(backend),
            locks: Arc::default(),
            health,
        })
    }

    /// The schema version before and after bringing it up to date (`hookgate migrate`).
    pub fn schema_versions(&self) -> (i64, i64) {
        backend!(self, b => b.schema_versions())
    }

    /// Where the store is, for logs: the SQLite file, or the database without credentials.
    pub fn location(&self) -> String {
        backend!(self, b => b.location())
    }

    /// Durably stores `event` and its deliveries unless an event with its receiver and dedupe
    /// key exists (then nothing is added). Returns only after the commit is durable (per the
    /// configured `synchronous`, or PostgreSQL's `synchronous_commit`).
    pub async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Stored, StoreError> {
        backend!(self, b => b.accept(event, deliveries, cancels).await)
    }

    /// Marks up to `limit` due deliveries running (one more attempt each) and returns them.
    pub async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        backend!(self, b => b.claim(now_ms, limit).await)
    }

    /// Records how a claimed delivery ended.
    pub async fn finish(&self, id: i64, outcome: Outcome, now_ms: i64) -> Result<(), StoreError> {
        backend!(self, b => b.finish(id, outcome, now_ms).await)
    }

    /// Sends dead (or pending) deliveries back to run now, with a fresh deadline; how many.
    pub async fn requeue(
        &self,
        target: RequeueTarget,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<usize, StoreError> {
        backend!(self, b => b.requeue(target, now_ms, deadline_ms).await)
    }

    /// Periodic upkeep by the worker: renews this process's claims, frees the claims of
    /// processes that stopped renewing them (PostgreSQL), forgets old rate-limit entries.
    pub async fn maintain(&self, now_ms: i64) -> Result<usize, StoreError> {
        backend!(self, b => b.maintain(now_ms).await)
    }

    /// How often [`Store::maintain`] should run.
    pub fn maintain_every(&self) -> Duration {
        match &*self.backend {
            Backend::Sqlite(_) => Duration::from_secs(30),
            Backend::Postgres(p) => p.maintain_every(),
        }
    }

    /// Deliveries not yet run and the creation time of the oldest.
    pub async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        backend!(self, b => b.pending_stats().await)
    }

    /// Whether the latest commits failed (disk full, read-only, database gone), and how often
    /// commits failed since start.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether the store takes writes now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        backend!(self, b => b.ping().await)
    }

    /// A cached vendor access token and when it expires.
    pub async fn token(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        backend!(self, b => b.token(key).await)
    }

    pub async fn put_token(
        &self,
        key: &str,
        token: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        backend!(self, b => b.put_token(key.to_owned(), token.to_owned(), expires_at_ms).await)
    }

    /// Drops the cached token if it is still `token` (another process may have refreshed it).
    pub async fn forget_token(&self, key: &str, token: &str) -> Result<(), StoreError> {
        backend!(self, b => b.forget_token(key.to_owned(), token.to_owned()).await)
    }

    pub async fn group(&self, connection: &str, key: &str) -> Result<Option<GroupRow>, StoreError> {
        backend!(self, b => b.group(connection, key).await)
    }

    pub async fn groups(&self, limit: usize) -> Result<Vec<GroupRow>, StoreError> {
        backend!(self, b => b.groups(limit).await)
    }

    pub async fn put_group(&self, group: GroupRow) -> Result<(), StoreError> {
        backend!(self, b => b.put_group(group).await)
    }

    /// Removes `key` from the registry (a creation that did not happen, or `groups forget`).
    pub async fn forget_group(&self, connection: &str, key: &str) -> Result<bool, StoreError> {
        let (connection, key) = (connection.to_owned(), key.to_owned());
        backend!(self, b => b.forget_group(connection, key).await)
    }

    /// Takes one send from `key`'s sliding-minute budget of `per_minute`, shared by every
    /// process on this store; `Some(ms)` to wait when it is used up or the key is paused.
    pub async fn rate_take(
        &self,
        key: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        backend!(self, b => b.rate_take(key.to_owned(), per_minute, now_ms).await)
    }

    /// Records that a DingTalk robot's (timestamp, sign) pair carried the body with `digest`;
    /// `false` when the pair already carried another body within its window (a replay),
    /// whichever process on this store saw it first.
    pub async fn sign_once(&self, sign: SignUse, now_ms: i64) -> Result<bool, StoreError> {
        backend!(self, b => b.sign_once(sign, now_ms).await)
    }

    /// Nothing is sent to `key` before `until_ms` (the vendor said "too fast").
    pub async fn rate_pause(&self, key: &str, until_ms: i64) -> Result<(), StoreError> {
        backend!(self, b => b.rate_pause(key.to_owned(), until_ms).await)
    }

    /// Holds `name` against every other holder in this process and, on PostgreSQL, in every
    /// replica (an advisory lock), until the returned guard is dropped.
    pub async fn lock(&self, name: &str) -> Result<StoreLock, StoreError> {
        let local = self.locks.acquire(name).await;
        let remote = match &*self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.lock(name).await?),
        };
        Ok(StoreLock::new(local, remote))
    }

    /// Cancels the pending deliveries with `key` (or the one with `id`) and the later actions
    /// waiting for them; how many.
    pub async fn cancel(
        &self,
        key: Option<String>,
        id: Option<i64>,
        reason: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        backend!(self, b => b.cancel_now(key, id, reason.to_owned(), now_ms).await)
    }

    /// Woken when deliveries were added or re-queued by this process.
    pub fn due_notify(&self) -> Arc<tokio::sync::Notify> {
        backend!(self, b => b.due_notify())
    }

    /// When the earliest pending delivery is due, if any is.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        backend!(self, b => b.next_due().await)
    }

    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        backend!(self, b => b.deliveries(filter).await)
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredEvent>, StoreError> {
        backend!(self, b => b.list(filter).await)
    }

    pub async fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        backend!(self, b => b.get(id).await)
    }
}

impl StoredEvent {
    /// An event row; the fields are parsed again from the body (it parsed when accepted; if
    /// that ever fails, the raw text is still there to read).
    fn from_row(
        id: i64,
        receiver: String,
        vendor: String,
        kind: String,
        dedupe_key: String,
        received_at_ms: i64,
        raw: String,
    ) -> Self {
        let fields = crate::event::parse_fields(&raw)
            .map(serde_json::Value::Object)
            .unwrap_or(serde_json::Value::Null);
        Self {
            id,
            receiver,
            vendor,
            kind,
            dedupe_key,
            received_at_ms,
            fields,
            raw,
        }
    }
}

/// The wait before the oldest of `count` sends in the last minute leaves the window, or
/// `None` when another send fits.
fn rate_wait(count: i64, oldest_ms: Option<i64>, per_minute: u32, now_ms: i64) -> Option<i64> {
    (count >= i64::from(per_minute))
        .then(|| (oldest_ms.unwrap_or(now_ms) + RATE_WINDOW_MS - now_ms).max(1))
}

/// The rate limits' window: vendors count robot messages per minute.
const RATE_WINDOW_MS: i64 = 60_000;
