//! Prometheus metrics (`/metrics`, text format): callbacks by receiver, vendor and outcome,
//! the callback path's latency, deliveries by action and outcome, vendor errcodes, token
//! refreshes, and (read from the store at scrape time) the pending depth and the age of the
//! oldest pending delivery; per stream receiver its state, reconnects and last message time.
//! One `Metrics` per running gateway, shared by `Arc`.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    pub receiver: String,
    pub vendor: String,
    /// accepted | duplicate | url_check | rejected | error
    pub outcome: String,
    /// Why a callback was rejected (bad_signature, stale, receive_id, malformed, ...); "" else.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamStateLabels {
    pub receiver: String,
    /// connecting | connected | reconnecting | standby | failed
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub action: String,
    /// done | retry | deferred | dead
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

/// How long the backlog by rule (dead letters, timers) read at one scrape serves the next.
pub const BACKLOG_EVERY_MS: i64 = 30_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VendorErrorLabels {
    pub connection: String,
    pub errcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub connection: String,
}

type LatencyFamily = Family<ReceiverLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub callbacks: Family<CallbackLabels, Counter>,
    pub callback_seconds: LatencyFamily,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub vendor_errors: Family<VendorErrorLabels, Counter>,
    pub token_refreshes: Family<ConnectionLabels, Counter>,
    pub pending: Gauge<i64, AtomicI64>,
    pub oldest_pending_seconds: Gauge<f64, AtomicU64>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Copied from the store's count at scrape time.
    pub store_commit_failures: Counter,
    pub connections_refused: Counter,
    pub stream_state: Family<StreamStateLabels, Gauge>,
    pub stream_reconnects: Family<ReceiverLabels, Counter>,
    pub stream_last_message: Family<ReceiverLabels, Gauge<f64, AtomicU64>>,
    pub dead_by_rule: Family<RuleLabels, Gauge>,
    pub scheduled_by_rule: Family<RuleLabels, Gauge>,
    /// When the backlog by rule was last read from the store.
    pub backlog_read_at_ms: AtomicI64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// ok | rejected
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("hookgate"),
            callbacks: Family::<CallbackLabels, Counter>::default(),
            callback_seconds: LatencyFamily::new_with_constructor(latency_histogram),
            deliveries: Family::<DeliveryLabels, Counter>::default(),
            vendor_errors: Family::<VendorErrorLabels, Counter>::default(),
            token_refreshes: Family::<ConnectionLabels, Counter>::default(),
            pending: Gauge::<i64, AtomicI64>::default(),
            oldest_pending_seconds: Gauge::<f64, AtomicU64>::default(),
            config_reloads: Family::<ReloadLabels, Counter>::default(),
            store_commit_failures: Counter::default(),
            connections_refused: Counter::default(),
            stream_state: Family::<StreamStateLabels, Gauge>::default(),
            stream_reconnects: Family::<ReceiverLabels, Counter>::default(),
            stream_last_message: Family::<ReceiverLabels, Gauge<f64, AtomicU64>>::default(),
            dead_by_rule: Family::<RuleLabels, Gauge>::default(),
            scheduled_by_rule: Family::<RuleLabels, Gauge>::default(),
            backlog_read_at_ms: AtomicI64::new(i64::MIN),
        };
        metrics.register();
        metrics
    }

    /// Every metric under its name, with its help text.
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "callbacks",
            "Callbacks by receiver, vendor and outcome (rejections by reason)",
            self.callbacks.clone(),
        );
        r.register(
            "callback_seconds",
            "Time from request to reply on the callback path, store commit included",
            self.callback_seconds.clone(),
        );
        r.register(
            "deliveries",
            "Delivery attempts by action and outcome (done, retry, deferred, dead)",
            self.deliveries.clone(),
        );
        r.register(
            "vendor_errors",
            "Non-zero errcodes answered by vendor app APIs",
            self.vendor_errors.clone(),
        );
        r.register(
            "token_refreshes",
            "Access tokens fetched from a vendor",
            self.token_refreshes.clone(),
        );
        r.register(
            "deliveries_pending",
            "Deliveries waiting to run (pending or waiting for an earlier action)",
            self.pending.clone(),
        );
        r.register(
            "oldest_pending_delivery_seconds",
            "Age of the oldest delivery still waiting to run",
            self.oldest_pending_seconds.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads by outcome (rejected: the file had problems, the old config stays)",
            self.config_reloads.clone(),
        );
        r.register("store_commit_failures", "Store commits that failed (disk full, read-only, database gone); /readyz fails meanwhile", self.store_commit_failures.clone());
        r.register(
            "connections_refused",
            "Connections closed at once because server.max_connections were open",
            self.connections_refused.clone(),
        );
        r.register(
            "dead_deliveries",
            "Dead deliveries by rule, waiting for an operator (read at most every 30 s)",
            self.dead_by_rule.clone(),
        );
        r.register(
            "scheduled_timers",
            "Timers (deliveries due later, not tried yet) by rule (read at most every 30 s)",
            self.scheduled_by_rule.clone(),
        );
        r.register(
            "stream_state",
            "Stream receivers' connection state: 1 for the current one",
            self.stream_state.clone(),
        );
        r.register(
            "stream_reconnects",
            "New connections a stream receiver opened after its first",
            self.stream_reconnects.clone(),
        );
        r.register(
            "stream_last_message_timestamp_seconds",
            "When a stream receiver last got an event or message (Unix time)",
            self.stream_last_message.clone(),
        );
    }

    pub fn callback(&self, receiver: &str, vendor: &str, outcome: &str, reason: &str) {
        self.callbacks
            .get_or_create(&CallbackLabels {
                receiver: receiver.to_owned(),
                vendor: vendor.to_owned(),
                outcome: outcome.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn latency(&self, receiver: &str, seconds: f64) {
        self.callback_seconds
            .get_or_create(&ReceiverLabels {
                receiver: receiver.to_owned(),
            })
            .observe(seconds);
    }

    pub fn delivery(&self, action: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                action: action.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn vendor_error(&self, connection: &str, errcode: &str) {
        self.vendor_errors
            .get_or_create(&VendorErrorLabels {
                connection: connection.to_owned(),
                errcode: errcode.to_owned(),
            })
            .inc();
    }

    pub fn token_refresh(&self, connection: &str) {
        self.token_refreshes
            .get_or_create(&ConnectionLabels {
                connection: connection.to_owned(),
            })
            .inc();
    }

    pub fn reload(&self, outcome: &str) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Whether the backlog by rule is due for a read at `now_ms` (claims the read).
    pub fn backlog_due(&self, now_ms: i64) -> bool {
        let last = self
            .backlog_read_at_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        last.saturating_add(BACKLOG_EVERY_MS) <= now_ms
            && self
                .backlog_read_at_ms
                .compare_exchange(
                    last,
                    now_ms,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Sets the dead letters and timers by rule (rules without any drop out).
    pub fn set_backlog(&self, dead: &[(String, i64)], scheduled: &[(String, i64)]) {
        for (family, counts) in [
            (&self.dead_by_rule, dead),
            (&self.scheduled_by_rule, scheduled),
        ] {
            family.clear();
            for (rule, n) in counts {
                family
                    .get_or_create(&RuleLabels { rule: rule.clone() })
                    .set(*n);
            }
        }
    }

    /// The text exposition, with the store-derived gauges set first.
    pub fn render(&self, pending: i64, oldest_pending_seconds: f64) -> String {
        self.pending.set(pending);
        self.oldest_pending_seconds.set(oldest_pending_seconds);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
