//! The durable store behind one boundary: the callback path calls [`Store::accept`] and
//! answers the vendor only after it returned `Ok`. SQLite (embedded, WAL) today; a PostgreSQL
//! backend is one more [`Backend`] arm, invisible to the server.

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

    /// Durably stores `event` unless an event with its receiver and dedupe key exists.
    /// Returns only after the commit is on disk (per the configured `synchronous`).
    pub async fn accept(&self, event: Event) -> Result<Stored, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.accept(event).await,
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
