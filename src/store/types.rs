//! What goes in and out of the store: events, deliveries and their outcomes, the filters
//! the CLI reads with, the registry rows, and [`StoreError`]. Shared by both backends.

use std::sync::Arc;

pub use crate::crypto::robot::SignUse;

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
    /// Succeeded; `result` (JSON) is what it keeps for the rule's later actions.
    Done { result: Option<String> },
    /// Not run: its `if` was false when it was due. The rule's later actions are skipped too.
    Skipped { reason: String },
    /// Failed; run again at `at_ms`.
    Retry { at_ms: i64, error: String },
    /// Not attempted (the target's rate limit or back-off); run at `at_ms`, attempt not counted.
    Defer { at_ms: i64 },
    /// Failed for good.
    Dead { error: String },
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
    /// Not run: an `if` was false when it was due (its own, or an earlier action's).
    Skipped,
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
            Self::Skipped => "skipped",
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
            Self::Skipped,
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
    /// What it kept for the rule's later actions (`as`), as JSON text.
    #[serde(skip)]
    pub result: Option<String>,
    /// Its attempts, one JSON line each ([`DeliveryRow::attempt_log`]).
    #[serde(skip)]
    pub history: Option<String>,
    /// 0 when planned as the event arrived; n for the event's n-th replay.
    pub replay: i64,
}

impl DeliveryRow {
    /// Each attempt: `attempt`, `started_at_ms`, `duration_ms`, `outcome`, `error`.
    pub fn attempt_log(&self) -> Vec<serde_json::Value> {
        self.history
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Which deliveries `deliveries` returns: newest first (timers: soonest first).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_id: Option<i64>,
    /// One delivery by id.
    pub id: Option<i64>,
    pub rule: Option<String>,
    pub receiver: Option<String>,
    /// The action's `key`.
    pub key: Option<String>,
    /// Only ids below this (the next page).
    pub before: Option<i64>,
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
    /// Received at or after this.
    pub since_ms: Option<i64>,
    /// Received before this.
    pub until_ms: Option<i64>,
    /// Text the stored body contains (exactly, case included).
    pub text: Option<String>,
    /// Only ids below this (the next page).
    pub before: Option<i64>,
    /// Only ids from this up: bounds how far a text search reads.
    pub floor: Option<i64>,
    pub limit: usize,
}

/// An operator's action as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    /// The token's or user's name, or `cli:<unix user>`.
    pub who: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

/// Dead deliveries and timers not due yet, by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub dead: Vec<(String, i64)>,
    pub scheduled: Vec<(String, i64)>,
}

/// What a replay of one event stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    pub event_id: i64,
    /// Which replay of the event this is (1 for the first).
    pub replay: i64,
    /// Deliveries stored.
    pub deliveries: usize,
    /// Actions left out because the same rule's action had not finished yet for this event.
    pub unfinished: usize,
}

/// What a prune walk removes (`[store] keep_events`, `keep_deliveries`, `hookgate prune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneWhat {
    /// Events received before the cut whose deliveries have all finished, with those
    /// deliveries.
    Events,
    /// The deliveries of events received before the cut once all of them finished before
    /// it; the events stay.
    Deliveries,
}

/// One batch of a prune walk: up to `limit` events after `after_id`, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneStep {
    pub what: PruneWhat,
    pub before_ms: i64,
    pub after_id: i64,
    pub limit: usize,
}

/// What one batch removed and where the walk stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: usize,
    pub deliveries: usize,
    /// The last event the batch looked at (the next batch starts after it).
    pub last_id: Option<i64>,
    /// The first event the batch had to keep for a delivery not finished (or finished after
    /// the cut): the next walk starts before it.
    pub first_kept: Option<i64>,
    /// No older event is left to look at.
    pub done: bool,
}

/// One event of a prune batch and its deliveries: how many, whether one is unfinished
/// (waiting, pending, running), and the last time one changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PruneCandidate {
    pub id: i64,
    pub deliveries: i64,
    pub unfinished: bool,
    pub last_change_ms: i64,
}

/// What a prune batch does with one event received before the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PruneVerdict {
    /// Nothing to remove.
    Nothing,
    /// Kept for now: a delivery is unfinished, or finished after the cut.
    Kept,
    /// Remove the event and its deliveries.
    Event,
    /// Remove its deliveries.
    Deliveries,
}

fn prune_verdict(step: &PruneStep, c: &PruneCandidate) -> PruneVerdict {
    if c.unfinished {
        return PruneVerdict::Kept;
    }
    match step.what {
        PruneWhat::Events => PruneVerdict::Event,
        PruneWhat::Deliveries if c.deliveries == 0 => PruneVerdict::Nothing,
        PruneWhat::Deliveries if c.last_change_ms >= step.before_ms => PruneVerdict::Kept,
        PruneWhat::Deliveries => PruneVerdict::Deliveries,
    }
}

/// What a prune batch removes of `ids` (in order), given their deliveries' `state`: the
/// events whose deliveries go, the events that go themselves, and the first kept.
pub(super) fn prune_plan(
    step: &PruneStep,
    ids: &[i64],
    state: &[PruneCandidate],
) -> (Vec<i64>, Vec<i64>, Option<i64>) {
    let (mut deliveries_of, mut events, mut first_kept) = (Vec::new(), Vec::new(), None);
    for &id in ids {
        let c = state
            .iter()
            .find(|c| c.id == id)
            .copied()
            .unwrap_or(PruneCandidate {
                id,
                deliveries: 0,
                unfinished: false,
                last_change_ms: 0,
            });
        match prune_verdict(step, &c) {
            PruneVerdict::Nothing => {}
            PruneVerdict::Kept => {
                first_kept.get_or_insert(id);
            }
            PruneVerdict::Deliveries => deliveries_of.push(id),
            PruneVerdict::Event => {
                deliveries_of.push(id);
                events.push(id);
            }
        }
    }
    (deliveries_of, events, first_kept)
}

/// The events of a batch (id, received at) to look at: those before the cut, in id order,
/// and whether the walk is done (an event at or after the cut, or fewer than asked for).
pub(super) fn prune_window(step: &PruneStep, rows: &[(i64, i64)]) -> (Vec<i64>, bool) {
    let ids: Vec<i64> = rows
        .iter()
        .take_while(|(_, at)| *at < step.before_ms)
        .map(|(id, _)| *id)
        .collect();
    let done = ids.len() < rows.len() || rows.len() < step.limit;
    (ids, done)
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

/// A store call that was queued: resolves once it is done (committed).
pub type Queued<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>>;

impl StoredEvent {
    /// An event row; the fields are parsed again from the body (it parsed when accepted; if
    /// that ever fails, the raw text is still there to read).
    pub(super) fn from_row(
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
pub(super) fn rate_wait(
    count: i64,
    oldest_ms: Option<i64>,
    per_minute: u32,
    now_ms: i64,
) -> Option<i64> {
    (count >= i64::from(per_minute))
        .then(|| (oldest_ms.unwrap_or(now_ms) + RATE_WINDOW_MS - now_ms).max(1))
}

/// The rate limits' window: vendors count robot messages per minute.
pub(super) const RATE_WINDOW_MS: i64 = 60_000;

/// What a replay of an event stores, given its deliveries now (rule, status, replay): the
/// planned deliveries of every rule that has none unfinished (pending, waiting, running)
/// for the event, how many actions were left out for that, and the replay's number.
pub(super) fn replay_plan(
    now: &[(String, String, i64)],
    planned: Vec<NewDelivery>,
) -> (Vec<NewDelivery>, usize, i64) {
    let busy = |rule: &str| {
        now.iter().any(|(r, status, _)| {
            r == rule && matches!(status.as_str(), "pending" | "waiting" | "running")
        })
    };
    let replay = now.iter().map(|(_, _, n)| *n).max().unwrap_or(0) + 1;
    let (kept, left): (Vec<_>, Vec<_>) = planned.into_iter().partition(|d| !busy(&d.rule));
    (kept, left.len(), replay)
}
