//! The way in for scheduled rules: a clock that turns each due slot of a `schedule` or
//! `every` rule into an event, committed through the same intake as a callback. A slot's
//! event has a dedupe key of its own (`rule@slot`), so however many replicas or restarts
//! reach a slot, it is stored (and its actions planned) once. The store keeps the last slot
//! each rule handled, so a slot that passed while nothing ran fires once at start
//! (`missed = "skip"`: not at all), and earlier ones are not made up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{Rule, Scheduled};
use crate::event::Event;
use crate::intake::Intake;
use crate::loaded::Loaded;
use crate::schedule::Missed;
use crate::store::StoreError;

/// The longest the clock sleeps: a reload also wakes it at once.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How soon a slot that could not be committed (store unreachable) is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What this process knows of a rule's slots.
struct Known {
    written: String,
    last_ms: i64,
}

/// Fires the scheduled rules of the config running now.
pub struct Scheduler {
    intake: Arc<Intake>,
    wake: Arc<Notify>,
    known: HashMap<String, Known>,
}

impl Scheduler {
    /// `wake` is notified when the config is reloaded (rules may have come or gone).
    pub fn new(intake: Arc<Intake>, wake: Arc<Notify>) -> Self {
        Self {
            intake,
            wake,
            known: HashMap::new(),
        }
    }

    /// Fires due slots until `stop` resolves.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = self.tick().await;
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Fires every rule whose latest slot is newer than the last it handled; returns how
    /// long to sleep until the next slot.
    async fn tick(&mut self) -> Duration {
        let loaded = self.intake.loaded();
        let now = Timestamp::now();
        let tz = loaded.server.timezone.clone();
        let mut wait = MAX_WAIT;
        self.known.retain(|name, _| {
            loaded
                .rules
                .rules()
                .iter()
                .any(|r| &r.name == name && r.schedule.is_some())
        });
        for rule in loaded.rules.rules() {
            let Some(scheduled) = &rule.schedule else {
                continue;
            };
            if let Err(e) = self.due(&loaded, rule, scheduled, now).await {
                warn!(rule = %rule.name, error = %e, "A scheduled slot could not be stored; trying again.");
                wait = wait.min(RETRY);
            }
            if let Some(next) = scheduled.schedule.next_after(now, &tz) {
                let until = Duration::try_from(next.duration_since(Timestamp::now()))
                    .unwrap_or(Duration::ZERO);
                wait = wait.min(until);
            }
        }
        wait
    }

    /// Fires `rule`'s latest slot if it has not been handled yet.
    async fn due(
        &mut self,
        loaded: &Loaded,
        rule: &Rule,
        scheduled: &Scheduled,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let tz = &loaded.server.timezone;
        let Some(latest) = scheduled.schedule.latest(now, tz) else {
            return Ok(());
        };
        let latest_ms = latest.as_millisecond();
        let written = scheduled.schedule.written();
        let last_ms = match self.known.get(&rule.name) {
            Some(k) if k.written == written => k.last_ms,
            _ => {
                let store = self.intake.store();
                let last_ms = store
                    .schedule_known(&rule.name, &written, latest_ms)
                    .await?;
                if last_ms < latest_ms && scheduled.missed == Missed::Skip {
                    store.schedule_handled(&rule.name, latest_ms).await?;
                    info!(rule = %rule.name, slot = %latest, "A slot passed while hookgate was not running; skipped (missed = \"skip\").");
                    self.remember(rule, written, latest_ms);
                    return Ok(());
                }
                self.remember(rule, written.clone(), last_ms);
                last_ms
            }
        };
        if latest_ms <= last_ms {
            return Ok(());
        }
        let event = Event::scheduled(&rule.name, latest, tz, crate::clock::now_ms());
        let committed = self.intake.commit(loaded, event).await?;
        self.intake
            .store()
            .schedule_handled(&rule.name, latest_ms)
            .await?;
        self.remember(rule, written, latest_ms);
        if committed.stored.duplicate {
            info!(rule = %rule.name, slot = %latest, "Scheduled slot already fired (by another process).");
        } else {
            info!(rule = %rule.name, slot = %latest, event_id = committed.stored.id, actions = committed.actions, "Scheduled rule fired.");
        }
        Ok(())
    }

    fn remember(&mut self, rule: &Rule, written: String, last_ms: i64) {
        self.known
            .insert(rule.name.clone(), Known { written, last_ms });
    }
}
