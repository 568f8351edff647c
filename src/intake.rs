//! The one way an event becomes durable: the current rules plan a delivery per action that
//! fires (and the `cancel`s to apply), and the store commits the event with them in one
//! transaction. The HTTP server and the stream receivers both hand their verified events
//! here; neither knows the other.

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
}

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
        }
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
        let (deliveries, cancels) = plan(loaded, &event);
        let actions = deliveries.len();
        let stored = self.store.accept(event, deliveries, cancels).await?;
        Ok(Committed { stored, actions })
    }

    /// [`Intake::commit`] with the config state now.
    pub async fn commit_now(&self, event: Event) -> Result<Committed, StoreError> {
        self.commit(&self.loaded(), event).await
    }
}

/// One delivery per action of every rule that matches, to commit with the event, and the
/// `cancel`s to apply in the same transaction. Conditions and keys see `event.id` as 0: the
/// id exists only once the event is stored.
pub fn plan(loaded: &Loaded, event: &Event) -> (Vec<NewDelivery>, Vec<Cancel>) {
    if loaded.rules.rules().is_empty() {
        return (Vec::new(), Vec::new());
    }
    let view = EventView::unstored(event);
    let mut deliveries = Vec::new();
    let mut cancels = Vec::new();
    for m in loaded.rules.matching(&view) {
        match m.cancel {
            Some(rules) => cancels.extend(m.key.map(|key| Cancel {
                key,
                rules,
                reason: format!(
                    "cancelled by rule {:?} ({} {})",
                    m.rule,
                    event.kind(),
                    event.dedupe_key()
                ),
            })),
            None => deliveries.push(delivery(loaded, event, m)),
        }
    }
    (deliveries, cancels)
}

/// The delivery for one matched action: due after its `delay` or at its `at`, with a retry
/// window that starts when it is due.
fn delivery(loaded: &Loaded, event: &Event, m: Match) -> NewDelivery {
    let received = event.received_at_ms();
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
