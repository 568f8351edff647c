//! The [`Store`] handle: opens a backend and hands every call to it (both backends have the
//! same methods), with the process-local named locks and the commit health beside it.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AuditRow, Backlog, Cancel, ClaimedDelivery, DeliveryFilter, DeliveryRow, GroupRow, Health,
    ListFilter, NewDelivery, Outcome, PruneStep, Pruned, Queued, Replayed, RequeueTarget, SignUse,
    StoreConfig, StoreError, StoreLock, Stored, StoredEvent, lock, postgres, sqlite,
};
use crate::event::Event;

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

    /// Whether `accept`s made one after another (each sent before the next, without waiting
    /// for its commit) commit in that order: SQLite's single writer takes them first come,
    /// first served; PostgreSQL runs them on pooled connections side by side.
    pub fn commits_in_order(&self) -> bool {
        matches!(&*self.backend, Backend::Sqlite(_))
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

    /// [`Store::accept`] in two steps: the first returns once the callback is queued for
    /// the store, the future it gives once it is committed. On a store that
    /// [commits in order](Store::commits_in_order), what was queued first commits first, so a
    /// connection can queue its messages one after another and wait for their commits
    /// together. On PostgreSQL the first step does the whole commit.
    pub async fn accept_queued(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Queued<Stored>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(b) => b.accept_queued(event, deliveries, cancels).await,
            Backend::Postgres(b) => {
                let stored = b.accept(event, deliveries, cancels).await;
                Ok(Box::pin(std::future::ready(stored)))
            }
        }
    }

    /// The last slot a scheduled rule handled. A rule seen for the first time, or whose
    /// schedule (`written`) changed, starts at `latest_ms` (the latest slot now): nothing
    /// before it is made up.
    pub async fn schedule_known(
        &self,
        rule: &str,
        written: &str,
        latest_ms: i64,
    ) -> Result<i64, StoreError> {
        backend!(self, b => b.schedule_known(rule, written, latest_ms).await)
    }

    /// Records that a scheduled rule's slot was fired (or skipped).
    pub async fn schedule_handled(&self, rule: &str, slot_ms: i64) -> Result<(), StoreError> {
        backend!(self, b => b.schedule_handled(rule, slot_ms).await)
    }

    /// What the done actions of `rule` for event `event_id` kept (`as = …`): (action index,
    /// result JSON), in action order.
    pub async fn step_results(
        &self,
        event_id: i64,
        rule: &str,
    ) -> Result<Vec<(usize, String)>, StoreError> {
        backend!(self, b => b.step_results(event_id, rule).await)
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
        self.finish_many(vec![(id, outcome)], now_ms).await
    }

    /// Records how several claimed deliveries ended, in one transaction: one store round
    /// trip (and one sync) for the batch. All or none are recorded.
    pub async fn finish_many(
        &self,
        outcomes: impl Into<Arc<[(i64, Outcome)]>>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let outcomes = outcomes.into();
        if outcomes.is_empty() {
            return Ok(());
        }
        backend!(self, b => b.finish_many(outcomes, now_ms).await)
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
            Backend::Sqlite(b) => lock::Remote::Sqlite(b.lock(name).await?),
            Backend::Postgres(b) => lock::Remote::Postgres(Box::new(b.lock(name).await?)),
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

    /// Dead deliveries and timers (not due yet) by rule.
    pub async fn backlog(&self, now_ms: i64) -> Result<Backlog, StoreError> {
        backend!(self, b => b.backlog(now_ms).await)
    }

    /// Records an operator's action.
    pub async fn audit(&self, row: AuditRow) -> Result<(), StoreError> {
        backend!(self, b => b.audit(row).await)
    }

    /// The audit trail, newest first.
    pub async fn audit_list(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        backend!(self, b => b.audit_list(before, limit).await)
    }

    /// Stores `planned` (the current rules' deliveries for stored event `event_id`) as its
    /// next replay, but for the rules with deliveries of the event still unfinished.
    pub async fn replay(
        &self,
        event_id: i64,
        planned: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<Replayed, StoreError> {
        backend!(self, b => b.replay(event_id, planned, now_ms).await)
    }

    /// One batch of a prune walk: removes what `step` says of up to `step.limit` events
    /// after `step.after_id` received before `step.before_ms`, never an event with a delivery
    /// not finished. One short transaction.
    pub async fn prune(&self, step: PruneStep) -> Result<Pruned, StoreError> {
        backend!(self, b => b.prune(step).await)
    }
}
