//! The one way an event becomes durable: the current rules plan a delivery per action that
//! fires (and the `cancel`s to apply), and the store commits the event with them in one
//! transaction. The HTTP server and the stream receivers both hand their verified events
//! here; neither knows the other.

use std::future::Future;
use std::sync::Arc;

use tracing::warn;

use crate::event::Event;
use crate::loaded::{Current, Loaded};
use crate::metrics::Metrics;
use crate::rules::{EventView, Match};
use crate::store::{Cancel, NewDelivery, Store, StoreError, Stored};

/// The loaded config, the store and the metrics: what every way in needs.
pub struct Intake {
    current: Current,
    store: Store,
    metrics: Arc<Metrics>,
    /// Each committed event, for the admin API's live tail (nothing is built without a
    /// listener).
    tail: tokio::sync::broadcast::Sender<Arc<Tailed>>,
}

/// A committed event as the live tail shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tailed {
    pub id: i64,
    pub receiver: String,
    pub vendor: &'static str,
    pub kind: String,
    pub dedupe_key: String,
    pub received_at_ms: i64,
    /// A vendor's retry of an event already stored.
    pub duplicate: bool,
    /// Deliveries its rules planned.
    pub actions: usize,
}

/// Tail entries a slow listener may fall behind by before it skips some.
const TAIL_BUFFER: usize = 256;

/// A committed event and how many actions its rules planned.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub stored: Stored,
    /// Deliveries planned with it (none are stored for a duplicate).
    pub actions: usize,
}

impl Intake {
    pub fn new(current: Current, store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            current,
            store,
            metrics,
            tail: tokio::sync::broadcast::channel(TAIL_BUFFER).0,
        }
    }

    /// Committed events from now on.
    pub fn tail(&self) -> tokio::sync::broadcast::Receiver<Arc<Tailed>> {
        self.tail.subscribe()
    }

    /// The config state now; a caller keeps the one it took for the whole request.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stores `event` with the deliveries `loaded`'s rules plan for it (and their cancels),
    /// in one commit; returns once it is durable.
    pub async fn commit(&self, loaded: &Loaded, event: Event) -> Result<Committed, StoreError> {
        self.commit_queued(loaded, event).await?.await
    }

    /// [`Intake::commit`] in two steps ([`Store::accept_queued`]): returns once the event is
    /// queued for the store; the future it gives resolves once it is durable.
    pub async fn commit_queued(
        &self,
        loaded: &Loaded,
        event: Event,
    ) -> Result<impl Future<Output = Result<Committed, StoreError>> + Send + use<>, StoreError>
    {
        let event = redact(loaded, event);
        let (deliveries, cancels) = plan(loaded, &event);
        let actions = deliveries.len();
        let watched = (self.tail.receiver_count() > 0).then(|| {
            (
                event.receiver().to_owned(),
                event.vendor().as_str(),
                event.kind().to_owned(),
                event.dedupe_key().to_owned(),
                event.received_at_ms(),
            )
        });
        let queued = self.store.accept_queued(event, deliveries, cancels).await?;
        let tail = self.tail.clone();
        Ok(async move {
            let stored = queued.await?;
            if let Some((receiver, vendor, kind, dedupe_key, received_at_ms)) = watched {
                let _ = tail.send(Arc::new(Tailed {
                    id: stored.id,
                    receiver,
                    vendor,
                    kind,
                    dedupe_key,
                    received_at_ms,
                    duplicate: stored.duplicate,
                    actions: if stored.duplicate { 0 } else { actions },
                }));
            }
            Ok(Committed { stored, actions })
        })
    }

    /// [`Intake::commit_queued`] with the config state now.
    pub async fn commit_now_queued(
        &self,
        event: Event,
    ) -> Result<impl Future<Output = Result<Committed, StoreError>> + Send + use<>, StoreError>
    {
        self.commit_queued(&self.loaded(), event).await
    }
}

/// `event` with its receiver's `redact` fields blanked: rules see what is stored.
fn redact(loaded: &Loaded, event: Event) -> Event {
    match loaded.redact.get(event.receiver()) {
        Some(names) => event.redact(names),
        None => event,
    }
}

/// One delivery per action of every rule that matches, to commit with the event, and the
/// `cancel`s to apply in the same transaction. Conditions and keys see `event.id` as 0: the
/// id exists only once the event is stored.
pub fn plan(loaded: &Loaded, event: &Event) -> (Vec<NewDelivery>, Vec<Cancel>) {
    if loaded.rules.rules().is_empty() {
        return (Vec::new(), Vec::new());
    }
    plan_view(loaded, &EventView::unstored(event), event.received_at_ms())
}

/// [`plan`] for an event as templates see it, its timers counted from `from_ms` (when it
/// arrived; now, for a replay).
pub fn plan_view(
    loaded: &Loaded,
    view: &EventView<'_>,
    from_ms: i64,
) -> (Vec<NewDelivery>, Vec<Cancel>) {
    let mut deliveries = Vec::new();
    let mut cancels = Vec::new();
    for m in loaded.rules.matching(view) {
        match m.cancel {
            Some(rules) => cancels.extend(m.key.map(|key| Cancel {
                key,
                rules,
                reason: format!(
                    "cancelled by rule {:?} ({} {})",
                    m.rule, view.kind, view.dedupe_key
                ),
            })),
            None => deliveries.push(delivery(loaded, from_ms, m)),
        }
    }
    (deliveries, cancels)
}

/// The delivery for one matched action: due after its `delay` or at its `at`, with a retry
/// window that starts when it is due.
fn delivery(loaded: &Loaded, received: i64, m: Match) -> NewDelivery {
    let mut delay_ms = m
        .delay
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4));
    if let Some(at) = &m.at {
        match crate::time::parse_time(at, &loaded.server.timezone) {
            // A time already past runs at once.
            Some(t) => delay_ms = (t.as_millisecond() - received).max(0),
            None => warn!(rule = %m.rule, at = %at, "`at` is not a time; the action runs at once."),
        }
    }
    NewDelivery {
        rule: m.rule,
        action: m.action,
        kind: m.kind.to_owned(),
        spec: Some(m.spec),
        due_ms: received.saturating_add(delay_ms),
        key: m.key,
        deadline_ms: received
            .saturating_add(loaded.give_up_after_ms)
            .saturating_add(delay_ms),
    }
}
