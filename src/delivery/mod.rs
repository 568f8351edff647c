//! The delivery worker: claims due deliveries from the store, renders each action against its
//! stored event, runs it, and records the outcome: done, retry with exponential backoff and
//! jitter, or dead (permanent failure, or failing past the deadline). A delivery that was
//! running when the process died is claimed again after restart, or on PostgreSQL by another
//! replica once its lease lapses (at-least-once).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::actions::{ActionError, Attempt, Disposition};
use crate::clock::now_ms;
use crate::config::{DeliveryConfig, RuleChanged};
use crate::loaded::{Current, Loaded};
use crate::metrics::Metrics;
use crate::rules::{EventView, RuleSet};
use crate::store::{ClaimedDelivery, Outcome, Store};

/// How often the worker looks for due deliveries it was not told about (another process,
/// `hookgate deliveries retry`).
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed per slot: a claim is a store transaction. The next claim is made while
/// the slots work through the last one, once fewer than half are left.
const CLAIM_AHEAD: usize = 4;
/// A destination keeps up when it finished a delivery this recently and works off what
/// waits for it within this time too.
const KEEPS_UP: Duration = Duration::from_secs(1);
/// Outcomes waiting to be recorded before a finished slot waits too (back-pressure).
const RECORD_QUEUE: usize = 4096;
/// Most outcomes recorded in one store transaction.
const RECORD_BATCH: usize = 512;
/// Attempts at recording a batch of outcomes before it is left to the restart.
const RECORD_TRIES: u32 = 3;
/// How long in-flight deliveries may finish after shutdown begins; the rest run again later.
const DRAIN: Duration = Duration::from_secs(10);

/// Why `d` must not run: the action at its place is not the one it was made for (a reload
/// edited, moved or removed it). A delivery from before fingerprints were kept runs as before.
fn changed_since(rules: &RuleSet, policy: RuleChanged, d: &ClaimedDelivery) -> Option<String> {
    let made_for = d.spec.as_deref()?;
    match rules.spec(&d.rule, d.action) {
        Some(now) if now == made_for => None,
        Some(_) if policy == RuleChanged::RunNew => None,
        Some(_) => Some(format!(
            "the rule changed since this was scheduled: action {} of rule {:?} is not the {} it was made for; \
             `hookgate deliveries retry {}` runs the action now in its place ([delivery] rule_changed = \"run_new\" always does)",
            d.action, d.rule, d.kind, d.id
        )),
        None => Some(format!(
            "the rule changed since this was scheduled: rule {:?} has no action {} any more",
            d.rule, d.action
        )),
    }
}

pub struct Worker {
    store: Store,
    current: Current,
    metrics: Arc<Metrics>,
    /// Unix ms of the last loop, for `/readyz`.
    beat: Arc<std::sync::atomic::AtomicI64>,
}

/// The delay before retry number `attempt` (1 = the first retry): `first * 2^(attempt-1)`
/// capped at `max`, then "equal jitter" (half fixed, half random) so retries of one outage
/// spread out but never come sooner than half the schedule.
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let exp = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let delay = exp.min(max).max(Duration::from_millis(1));
    let half = delay / 2;
    let jitter = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

/// The store's upkeep (lease renewal, lapsed claims, old rate entries) every so often.
async fn maintain(store: Store) {
    let mut every = tokio::time::interval(store.maintain_every());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = store.maintain(now_ms()).await {
            warn!(error = %e, "Store upkeep failed; trying again.");
        }
    }
}

impl Worker {
    pub fn new(
        store: Store,
        current: Current,
        metrics: Arc<Metrics>,
        beat: Arc<std::sync::atomic::AtomicI64>,
    ) -> Self {
        Self {
            store,
            current,
            metrics,
            beat,
        }
    }

    /// Runs until `shutdown` resolves, then gives in-flight deliveries [`DRAIN`] to finish.
    ///
    /// A slot is free as soon as its action has run: the outcome goes to a recorder task
    /// that writes whatever outcomes are waiting in one store transaction, so the slots never
    /// wait for a sync. Claims run beside the slots too, topping the queue up before it
    /// empties.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let this = Arc::new(self);
        let notify = this.store.due_notify();
        // Its own task: leases are renewed even while every slot is busy.
        let upkeep = tokio::spawn(maintain(this.store.clone()));
        let (outcomes, recorded) = mpsc::channel(RECORD_QUEUE);
        let recorder = tokio::spawn(record_loop(this.store.clone(), recorded));
        let mut slots = Slots::default();
        let mut claiming: Option<JoinHandle<Claimed>> = None;
        // Whether a claim may find something: not after one came back short, until the
        // store says deliveries became due, or the next known one is.
        let mut due_maybe = true;
        let mut wake_at = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            this.beat
                .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
            let loaded = this.current.load_full();
            let batch = loaded.delivery.concurrency.saturating_mul(CLAIM_AHEAD);
            slots.reap();
            let limit = loaded.delivery.lane_limit();
            let queued = slots.queue.len() + slots.paced(limit);
            // Held back only by a lane's waiting: look again once it may have stopped keeping
            // up, as nothing else may wake the loop (a stuck destination's tasks never end).
            let paced = slots.queue.len() <= batch / 2 && queued > batch / 2;
            if claiming.is_none() && due_maybe && queued <= batch / 2 {
                let want = batch - queued;
                let store = this.store.clone();
                claiming = Some(tokio::spawn(claim(store, want)));
            }
            slots.fill(&this, &loaded, &outcomes).await;
            tokio::select! {
                () = notify.notified() => due_maybe = true,
                claimed = async { claiming.as_mut().expect("a claim runs").await }, if claiming.is_some() => {
                    claiming = None;
                    let (claimed, next) = claimed.unwrap_or((Vec::new(), Some(POLL)));
                    slots.queue.extend(claimed);
                    if let Some(next) = next {
                        due_maybe = false;
                        wake_at = tokio::time::Instant::now() + next;
                    }
                }
                Some(ran) = slots.running.join_next_with_id(), if !slots.running.is_empty() => {
                    slots.ended(ran.map_or_else(|e| e.id(), |(id, ())| id));
                }
                () = tokio::time::sleep_until(wake_at), if !due_maybe => due_maybe = true,
                () = tokio::time::sleep(KEEPS_UP / 4), if paced => {}
                () = &mut shutdown => break,
            }
        }
        if let Some(claim) = claiming {
            // Its deliveries are marked running: they run again after restart.
            claim.abort();
        }
        let mut running = slots.running;
        if !running.is_empty() {
            info!(
                in_flight = running.len(),
                "Waiting for in-flight deliveries."
            );
        }
        drop(outcomes);
        let drain = async {
            while running.join_next().await.is_some() {}
            // Every sender is gone once the tasks are: the recorder writes what is left.
            let _ = recorder.await;
        };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            warn!("Deliveries still running at shutdown will run again after restart.");
        }
        upkeep.abort();
    }

    /// Renders and runs one claimed delivery with the config now, and records the outcome.
    async fn deliver(&self, d: ClaimedDelivery, outcomes: &mpsc::Sender<(i64, Outcome)>) {
        let loaded = self.current.load_full();
        let empty = serde_json::Map::new();
        let view = EventView {
            id: d.event.id,
            receiver: &d.event.receiver,
            vendor: &d.event.vendor,
            kind: &d.event.kind,
            dedupe_key: &d.event.dedupe_key,
            received_at_ms: d.event.received_at_ms,
            fields: d.event.fields.as_object().unwrap_or(&empty),
        };
        let attempt = Attempt {
            delivery_id: d.id,
            rule: &d.rule,
            receiver: &d.event.receiver,
        };
        // What the rule's earlier actions kept; unreadable now is a retry, not a failure.
        let steps = match self.steps(&loaded.rules, &d).await {
            Ok(steps) => steps,
            Err(e) => {
                let error = format!("reading the rule's step results: {e}");
                let at_ms = now_ms() + 5_000;
                return self
                    .record(&d, Outcome::Retry { at_ms, error }, outcomes)
                    .await;
            }
        };
        let ctx = loaded.rules.run_context(&view, &steps);
        // A delivery whose action a reload changed, or that does not render, cannot run; one
        // whose `if` is false now does not.
        let rendered = match changed_since(&loaded.rules, loaded.delivery.rule_changed, &d) {
            Some(why) => Err(Outcome::Dead { error: why }),
            None => match loaded.rules.action_holds(&d.rule, d.action, &ctx) {
                Ok(true) => loaded
                    .rules
                    .render_in(&d.rule, d.action, &ctx, &view)
                    .map_err(|e| Outcome::Dead {
                        error: format!("render: {e}"),
                    }),
                Ok(false) => Err(Outcome::Skipped {
                    reason: "its if is false".into(),
                }),
                Err(e) => Err(Outcome::Dead {
                    error: format!("if: {e}"),
                }),
            },
        };
        let outcome = match rendered {
            Err(outcome) => outcome,
            Ok(rendered) => match loaded.actions.run(&rendered, attempt).await {
                Ok(result) => Outcome::Done {
                    result: loaded
                        .rules
                        .keeps(&d.rule, d.action)
                        .then(|| result.to_string()),
                },
                Err(e) => after_failure(e, &d, &loaded.delivery),
            },
        };
        self.record(&d, outcome, outcomes).await;
    }

    /// `steps`: what the rule's earlier actions kept with `as`, by name (a retry reads the
    /// same stored results, so a rule's run is deterministic).
    async fn steps(
        &self,
        rules: &RuleSet,
        d: &ClaimedDelivery,
    ) -> Result<serde_json::Value, crate::store::StoreError> {
        let names = rules.steps_before(&d.rule, d.action);
        let mut out = serde_json::Map::new();
        if names.is_empty() {
            return Ok(serde_json::Value::Object(out));
        }
        let kept = self.store.step_results(d.event.id, &d.rule).await?;
        for (i, name) in names {
            if let Some((_, json)) = kept.iter().find(|(a, _)| *a == i) {
                let value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
                out.insert(name.to_owned(), value);
            }
        }
        Ok(serde_json::Value::Object(out))
    }

    /// `d` goes back to the store, due at `at_ms`: its destination is full (no attempt
    /// spent).
    async fn send_back(
        &self,
        d: &ClaimedDelivery,
        to: &str,
        at_ms: i64,
        outcomes: &mpsc::Sender<(i64, Outcome)>,
    ) {
        self.metrics.delivery(&d.kind, "deferred");
        debug!(delivery = d.id, event_id = d.event.id, rule = %d.rule, action = %d.kind, destination = %to, wait_ms = at_ms - now_ms(), "Delivery waits: its destination has [delivery] per_destination deliveries running.");
        let _ = outcomes.send((d.id, Outcome::Defer { at_ms })).await;
    }

    /// Counts and logs the outcome, then hands it to the recorder.
    async fn record(
        &self,
        d: &ClaimedDelivery,
        outcome: Outcome,
        outcomes: &mpsc::Sender<(i64, Outcome)>,
    ) {
        let label = match &outcome {
            Outcome::Done { .. } => "done",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Retry { .. } => "retry",
            Outcome::Defer { .. } => "deferred",
            Outcome::Dead { .. } => "dead",
        };
        self.metrics.delivery(&d.kind, label);
        match &outcome {
            Outcome::Done { .. } => {
                info!(delivery = d.id, event_id = d.event.id, rule = %d.rule, action = %d.kind, attempts = d.attempts, "Delivered.")
            }
            Outcome::Skipped { reason } => {
                info!(delivery = d.id, event_id = d.event.id, rule = %d.rule, action = %d.kind, reason = %reason, "Skipped: its if is false now; the rule's later actions are skipped too.")
            }
            Outcome::Retry { at_ms, error } => {
                warn!(delivery = d.id, event_id = d.event.id, rule = %d.rule, action = %d.kind, attempts = d.attempts, retry_in_ms = at_ms - now_ms(), error = %error, "Delivery failed; will retry.")
            }
            Outcome::Defer { at_ms } => {
                info!(delivery = d.id, event_id = d.event.id, rule = %d.rule, action = %d.kind, wait_ms = at_ms - now_ms(), "Delivery waits for its target's rate limit.")
            }
            Outcome::Dead { error } => {
                error!(delivery = d.id, event_id = d.event.id, rule = %d.rule, action = %d.kind, attempts = d.attempts, error = %error, "Delivery dead; `hookgate deliveries retry` sends it again.")
            }
        }
        // Closed only once the worker stopped: it stays `running`, the next start runs it.
        let _ = outcomes.send((d.id, outcome)).await;
    }
}

/// Deliveries to one destination: how many run, and the claimed ones that wait for one of
/// them to finish.
struct Lane {
    running: usize,
    waiting: VecDeque<ClaimedDelivery>,
    /// How long an attempt here takes, on average (ms): when an overflow's turn comes.
    mean_ms: f64,
    /// Sent back to the store since the lane last had room; each later one's turn is later.
    sent_back: u32,
    /// When it last finished one (or, before that, began).
    moved: tokio::time::Instant,
}

impl Lane {
    fn new() -> Self {
        Self {
            running: 0,
            waiting: VecDeque::new(),
            mean_ms: 0.0,
            sent_back: 0,
            moved: tokio::time::Instant::now(),
        }
    }

    /// Whether it keeps up: it finished one within [`KEEPS_UP`] and works off what waits
    /// within that time too. The claims pace themselves to such a lane; one that does not
    /// keep up (slow or stuck) waits alone, and its overflow goes back to the store.
    fn keeps_up(&self, limit: usize) -> bool {
        let backlog_ms = self.mean_ms * self.waiting.len() as f64 / limit.max(1) as f64;
        self.moved.elapsed() < KEEPS_UP && backlog_ms < KEEPS_UP.as_millis() as f64
    }
}

/// What becomes of a delivery whose destination is known.
enum Take {
    /// There is room: it runs now.
    Runs(ClaimedDelivery),
    /// It waits in its lane for a running one to finish.
    Waits,
    /// Its lane is full: back to the store until about this time (Unix ms).
    Later(ClaimedDelivery, i64),
}

/// The slots and what waits for them. A claimed delivery (marked running in the store)
/// waits in the queue: claiming several slots' worth at once saves store transactions, and
/// after a crash they run again like any delivery left running. `[delivery]
/// per_destination` then files deliveries by destination. What waits in a lane that keeps
/// up counts as queued, so the claims pace themselves to it. A lane that does not (slow or
/// stuck) holds at most [`CLAIM_AHEAD`] times its limit; the rest go back to the store, due
/// when their turn is estimated to come (back-pressure into the queue, so claims keep
/// finding work for the other destinations).
#[derive(Default)]
struct Slots {
    running: JoinSet<()>,
    queue: VecDeque<ClaimedDelivery>,
    lanes: std::collections::HashMap<Arc<str>, Lane>,
    /// The running tasks that count against a lane, and since when.
    tasks: std::collections::HashMap<tokio::task::Id, (Arc<str>, tokio::time::Instant)>,
}

impl Slots {
    /// Finished tasks stay in the set until joined: reap them all before counting.
    fn reap(&mut self) {
        while let Some(ran) = self.running.try_join_next_with_id() {
            self.ended(ran.map_or_else(|e| e.id(), |(id, ())| id));
        }
    }

    /// Starts queued deliveries while slots are free and their lanes have room.
    async fn fill(
        &mut self,
        worker: &Arc<Worker>,
        loaded: &Loaded,
        outcomes: &mpsc::Sender<(i64, Outcome)>,
    ) {
        let concurrency = loaded.delivery.concurrency;
        let limit = loaded.delivery.lane_limit();
        let batch = concurrency.saturating_mul(CLAIM_AHEAD);
        while self.running.len() < concurrency {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            let to = loaded.rules.destination(&d.rule, d.action).cloned();
            let d = match &to {
                Some(to) => match self.take(to, d, limit, batch) {
                    Take::Runs(d) => d,
                    Take::Waits => continue,
                    Take::Later(d, at_ms) => {
                        worker.send_back(&d, to, at_ms, outcomes).await;
                        continue;
                    }
                },
                None => d,
            };
            let (worker, outcomes) = (worker.clone(), outcomes.clone());
            let task = self
                .running
                .spawn(async move { worker.deliver(d, &outcomes).await });
            if let Some(to) = to {
                (self.tasks).insert(task.id(), (to, tokio::time::Instant::now()));
            }
        }
    }

    /// Deliveries waiting in lanes that keep up: the claims count them as queued, so a
    /// busy destination that keeps up is fed at its pace rather than overflowing.
    fn paced(&self, limit: usize) -> usize {
        (self.lanes.values())
            .filter(|l| l.keeps_up(limit))
            .map(|l| l.waiting.len())
            .sum()
    }

    fn take(&mut self, to: &Arc<str>, d: ClaimedDelivery, limit: usize, batch: usize) -> Take {
        let lane = self.lanes.entry(to.clone()).or_insert_with(Lane::new);
        if lane.running < limit {
            lane.running += 1;
            return Take::Runs(d);
        }
        let room = if lane.keeps_up(limit) {
            batch
        } else {
            limit.saturating_mul(CLAIM_AHEAD)
        };
        if lane.waiting.len() < room {
            lane.waiting.push_back(d);
            return Take::Waits;
        }
        lane.sent_back += 1;
        let ahead = lane.waiting.len() + lane.sent_back as usize;
        let turn_ms = lane.mean_ms * ahead as f64 / limit as f64;
        Take::Later(d, now_ms() + turn_ms.clamp(1_000.0, 300_000.0) as i64)
    }

    /// A task ended: its lane has room, and the lane's next waiting delivery goes to the
    /// front of the queue.
    fn ended(&mut self, task: tokio::task::Id) {
        let Some((to, began)) = self.tasks.remove(&task) else {
            return;
        };
        let Some(lane) = self.lanes.get_mut(&to) else {
            return;
        };
        lane.running = lane.running.saturating_sub(1);
        lane.moved = tokio::time::Instant::now();
        let took = began.elapsed().as_secs_f64() * 1000.0;
        lane.mean_ms = if lane.mean_ms == 0.0 {
            took
        } else {
            0.8 * lane.mean_ms + 0.2 * took
        };
        if let Some(next) = lane.waiting.pop_front() {
            // It takes the room back at once: the next fill starts it before anything new.
            self.queue.push_front(next);
        }
        if lane.waiting.len() <= lane.running {
            lane.sent_back = 0;
        }
        if lane.running == 0 && lane.waiting.is_empty() {
            self.lanes.remove(&to);
        }
    }
}

/// What a claim found, and, when it found fewer than asked for (or the store failed), how
/// long nothing else is due: the next known due time, at most [`POLL`].
type Claimed = (Vec<ClaimedDelivery>, Option<Duration>);

async fn claim(store: Store, want: usize) -> Claimed {
    match store.claim(now_ms(), want).await {
        Ok(claimed) if claimed.len() == want => (claimed, None),
        Ok(claimed) => {
            let next = match store.next_due().await {
                Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                _ => POLL,
            };
            (claimed, Some(next.min(POLL)))
        }
        Err(e) => {
            warn!(error = %e, "Could not claim deliveries; trying again.");
            (Vec::new(), Some(POLL))
        }
    }
}

/// Records outcomes as they come, whatever has queued up in one store transaction. A batch
/// the store refuses is tried [`RECORD_TRIES`] times; then its deliveries stay `running`,
/// and run again after restart (or, on PostgreSQL, on any replica once the lease lapses).
async fn record_loop(store: Store, mut outcomes: mpsc::Receiver<(i64, Outcome)>) {
    let mut waiting = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut waiting, RECORD_BATCH).await > 0 {
        let batch: Arc<[(i64, Outcome)]> = waiting.drain(..).collect();
        for tried in 1..=RECORD_TRIES {
            match store.finish_many(batch.clone(), now_ms()).await {
                Ok(()) => break,
                Err(e) if tried < RECORD_TRIES => {
                    warn!(deliveries = batch.len(), error = %e, "Could not record delivery outcomes; trying again.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
                    error!(deliveries = ?ids, error = %e, "Could not record delivery outcomes; they run again after restart.");
                }
            }
        }
    }
}

/// What a failed attempt of `d` leads to: a wait without spending an attempt (throttled),
/// dead (permanent, or the next try would fall past its deadline), or a retry after the
/// backoff (or the pause the sink asked for, if longer).
fn after_failure(e: ActionError, d: &ClaimedDelivery, policy: &DeliveryConfig) -> Outcome {
    let ms = |t: Duration| i64::try_from(t.as_millis()).unwrap_or(i64::MAX / 2);
    let after = match e.disposition {
        Disposition::Throttled(wait) => {
            return Outcome::Defer {
                at_ms: now_ms() + ms(wait),
            };
        }
        Disposition::Permanent => return Outcome::Dead { error: e.reason },
        Disposition::Retry { after } => after,
    };
    let delay =
        backoff(d.attempts, policy.first_retry, policy.max_backoff).max(after.unwrap_or_default());
    let at_ms = now_ms() + ms(delay);
    if at_ms > d.deadline_ms {
        Outcome::Dead {
            error: format!("gave up after {} attempts: {}", d.attempts, e.reason),
        }
    } else {
        Outcome::Retry {
            at_ms,
            error: e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let (first, max) = (Duration::from_secs(10), Duration::from_secs(3600));
        for (attempt, full) in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (40, 3600)] {
            for _ in 0..50 {
                let d = backoff(attempt, first, max);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn a_failure_leads_where_its_disposition_says() {
        let policy = DeliveryConfig {
            concurrency: 1,
            per_destination: 1,
            first_retry: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86_400),
            rule_changed: RuleChanged::Dead,
        };
        let d = |attempts, deadline_ms| ClaimedDelivery {
            id: 1,
            event: crate::store::StoredEvent {
                id: 1,
                receiver: "r".into(),
                vendor: "wecom".into(),
                kind: "k".into(),
                dedupe_key: "d".into(),
                received_at_ms: 0,
                fields: serde_json::Value::Null,
                raw: String::new(),
            },
            rule: "r".into(),
            action: 0,
            kind: "http".into(),
            spec: None,
            attempts,
            deadline_ms,
        };
        let far = i64::MAX / 4;
        let before = now_ms();
        let throttled = ActionError::throttled("budget", Duration::from_secs(30));
        match after_failure(throttled, &d(1, far), &policy) {
            Outcome::Defer { at_ms } => assert!((at_ms - before - 30_000).abs() < 5_000),
            other => panic!("{other:?}"),
        }
        let dead = ActionError::permanent("HTTP 404").with_errcode(1);
        assert!(
            matches!(after_failure(dead, &d(1, far), &policy), Outcome::Dead { error } if error == "HTTP 404")
        );
        // The sink's pause wins over a shorter backoff.
        let later = ActionError {
            disposition: Disposition::Retry {
                after: Some(Duration::from_secs(600)),
            },
            reason: "HTTP 503".into(),
            errcode: None,
        };
        match after_failure(later, &d(1, far), &policy) {
            Outcome::Retry { at_ms, error } => {
                assert!(at_ms - before >= 600_000 && error == "HTTP 503");
            }
            other => panic!("{other:?}"),
        }
        // A retry past the deadline gives up.
        let busy = ActionError::retryable("busy");
        assert!(matches!(
            after_failure(busy, &d(3, before), &policy),
            Outcome::Dead { error } if error.starts_with("gave up after 3 attempts")
        ));
    }

    #[test]
    fn a_changed_action_is_not_run_as_another() {
        let rules = |message: &str| {
            let src = format!(
                "[[receivers]]\nname = \"bot\"\nvendor = \"dingtalk_robot\"\npath = \"/b\"\napp_secret = \"s\"\n\
                 [[rules]]\nname = \"r\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"{message}\"\n"
            );
            RuleSet::new(&crate::config::parse(&src, &|_| None).unwrap())
        };
        let (old, new) = (rules("a"), rules("b"));
        let d = |spec: Option<&str>, action| ClaimedDelivery {
            id: 7,
            event: crate::store::StoredEvent {
                id: 1,
                receiver: "bot".into(),
                vendor: "dingtalk_robot".into(),
                kind: "text".into(),
                dedupe_key: "k".into(),
                received_at_ms: 0,
                fields: serde_json::json!({}),
                raw: "{}".into(),
            },
            rule: "r".into(),
            action,
            kind: "log".into(),
            spec: spec.map(str::to_owned),
            attempts: 1,
            deadline_ms: i64::MAX,
        };
        let made_for = old.spec("r", 0).unwrap();
        assert_eq!(
            changed_since(&old, RuleChanged::Dead, &d(Some(made_for), 0)),
            None
        );
        let why = changed_since(&new, RuleChanged::Dead, &d(Some(made_for), 0)).unwrap();
        assert!(
            why.contains("the rule changed since this was scheduled"),
            "{why}"
        );
        assert_eq!(
            changed_since(&new, RuleChanged::RunNew, &d(Some(made_for), 0)),
            None
        );
        assert!(changed_since(&new, RuleChanged::RunNew, &d(Some(made_for), 1)).is_some());
        // Stored before fingerprints (or retried by hand): runs what is there.
        assert_eq!(changed_since(&new, RuleChanged::Dead, &d(None, 0)), None);
    }
}
