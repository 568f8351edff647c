//! Named locks: an async mutex per name inside the process, plus what the backend holds
//! (`sqlite/lock.rs`: nothing more; `postgres/lock.rs`: a session advisory lock that the
//! other replicas see). Token refreshes and group creation take one, so
//! N processes refresh a token once and create an item's group once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The process-local half: one async mutex per name, dropped when nobody holds or waits.
#[derive(Default)]
pub(super) struct Local {
    names: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub(super) struct LocalGuard {
    guard: Option<OwnedMutexGuard<()>>,
    name: String,
    local: Arc<Local>,
}

impl Local {
    pub(super) async fn acquire(self: &Arc<Self>, name: &str) -> LocalGuard {
        let mutex = {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            names.entry(name.to_owned()).or_default().clone()
        };
        LocalGuard {
            guard: Some(mutex.lock_owned().await),
            name: name.to_owned(),
            local: self.clone(),
        }
    }
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut names = self.local.names.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map still holds it: nobody waits, forget the name.
        if names
            .get(&self.name)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            names.remove(&self.name);
        }
    }
}

/// What the backend holds for a lock.
pub(super) enum Remote {
    Sqlite(super::sqlite::lock::Held),
    Postgres(Box<super::postgres::lock::AdvisoryLock>),
}

/// Held until dropped; the backend's half is released before the local one.
pub struct StoreLock {
    remote: Option<Remote>,
    _local: LocalGuard,
}

impl StoreLock {
    pub(super) fn new(local: LocalGuard, remote: Remote) -> Self {
        Self {
            remote: Some(remote),
            _local: local,
        }
    }

    /// Whether the lock is still held: the database session holding it answers (always, for
    /// a lock within the process).
    pub async fn alive(&self) -> bool {
        match &self.remote {
            Some(Remote::Sqlite(held)) => held.alive().await,
            Some(Remote::Postgres(held)) => held.alive().await,
            None => false,
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        drop(self.remote.take());
    }
}
