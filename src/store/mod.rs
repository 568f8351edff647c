//! The durable store behind one boundary: the callback path calls [`Store::accept`] and
//! answers the vendor only after it returned `Ok`. SQLite (embedded, WAL) today; a PostgreSQL
//! backend is one more [`Backend`] arm, invisible to the server.

#[cfg(test)]
mod model;
mod sqlite;

use std::sync::Arc;

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

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    #[error("commit failed: {0}")]
    Commit(#[source] Arc<rusqlite::Error>),
    #[error("query failed: {0}")]
    Query(#[source] Arc<rusqlite::Error>),
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// Whether the caller may try again later (the vendor does, after our 503).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Commit(_) | Self::Closed)
    }
}

enum Backend {
    Sqlite(sqlite::Sqlite),
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

impl Store {
    /// Opens (creating if needed) the store and starts its writer.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Arc::new(Backend::Sqlite(sqlite::Sqlite::open(config)?)),
        })
    }

    /// Durably stores `event` and its deliveries unless an event with its receiver and dedupe
    /// key exists (then nothing is added). Returns only after the commit is on disk (per the
    /// configured `synchronous`).
    pub async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Stored, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.accept(event, deliveries, cancels).await,
        }
    }

    /// Marks up to `limit` due deliveries running (one more attempt each) and returns them.
    pub async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.claim(now_ms, limit).await,
        }
    }

    /// Records how a claimed delivery ended.
    pub async fn finish(&self, id: i64, outcome: Outcome, now_ms: i64) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.finish(id, outcome, now_ms).await,
        }
    }

    /// Sends dead (or pending) deliveries back to run now, with a fresh deadline; how many.
    pub async fn requeue(
        &self,
        target: RequeueTarget,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.requeue(target, now_ms, deadline_ms).await,
        }
    }

    /// Deliveries not yet run and the creation time of the oldest.
    pub fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.pending_stats(),
        }
    }

    /// Commits an empty write transaction: whether the store takes writes now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.ping().await,
        }
    }

    /// A cached vendor access token and when it expires.
    pub fn token(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.token(key),
        }
    }

    pub async fn put_token(
        &self,
        key: &str,
        token: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => {
                s.put_token(key.to_owned(), token.to_owned(), expires_at_ms)
                    .await
            }
        }
    }

    /// Drops the cached token if it is still `token` (another process may have refreshed it).
    pub async fn forget_token(&self, key: &str, token: &str) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.forget_token(key.to_owned(), token.to_owned()).await,
        }
    }

    pub fn group(&self, connection: &str, key: &str) -> Result<Option<GroupRow>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.group(connection, key),
        }
    }

    pub fn groups(&self, limit: usize) -> Result<Vec<GroupRow>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.groups(limit),
        }
    }

    pub async fn put_group(&self, group: GroupRow) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.put_group(group).await,
        }
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
        match &*self.backend {
            Backend::Sqlite(s) => s.cancel_now(key, id, reason.to_owned(), now_ms).await,
        }
    }

    /// Woken when deliveries were added or re-queued by this process.
    pub fn due_notify(&self) -> Arc<tokio::sync::Notify> {
        match &*self.backend {
            Backend::Sqlite(s) => s.due_notify(),
        }
    }

    /// When the earliest pending delivery is due, if any is.
    pub fn next_due(&self) -> Result<Option<i64>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.next_due(),
        }
    }

    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.deliveries(filter),
        }
    }

    pub fn list(&self, filter: &ListFilter) -> Result<Vec<StoredEvent>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.list(filter),
        }
    }

    pub fn get(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.get(id),
        }
    }
}
