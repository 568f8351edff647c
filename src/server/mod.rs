//! The HTTP server: hyper 1 over tokio. Serves `/healthz`, `/readyz` and `/metrics`, routes
//! other paths to their receiver, enforces the body limit and read timeouts, opens the
//! callback through [`crate::ingress`], and answers only after [`crate::store::Store::accept`]
//! committed. `run(listener, state, shutdown)` makes the
//! server a value that tests bind to `127.0.0.1:0`.

mod body;
mod connections;

pub use connections::raise_nofile;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Receiver, ServerConfig};
use crate::ingress::{self, Headers, Method};
use crate::metrics::Metrics;
use crate::rules::{EventView, RuleSet};
use crate::store::{Cancel, NewDelivery, Store, now_ms};
use std::sync::atomic::AtomicI64;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// Everything a request needs: the receivers by path, the rules, the store, the limits.
pub struct AppState {
    receivers: HashMap<String, Receiver>,
    rules: Arc<RuleSet>,
    store: Store,
    limits: ServerConfig,
    give_up_after_ms: i64,
}

impl AppState {
    /// Stores `event` with a delivery per action its rules fire (and their cancels), in one
    /// commit; with how many actions fired.
    async fn store_event(
        &self,
        event: crate::event::Event,
    ) -> (
        Result<crate::store::Stored, crate::store::StoreError>,
        usize,
    ) {
        let (deliveries, cancels) = planned_deliveries(self, &event);
        let actions = deliveries.len();
        (self.store.accept(event, deliveries, cancels).await, actions)
    }

    pub fn new(config: &Config, rules: Arc<RuleSet>, store: Store) -> Self {
        let receivers = config
            .receivers
            .iter()
            .filter(|r| !r.is_stream())
            .map(|r| (r.path.clone(), r.clone()))
            .collect();
        Self {
            receivers,
            rules,
            store,
            limits: config.server.clone(),
            give_up_after_ms: i64::try_from(config.delivery.give_up_after.as_millis())
                .unwrap_or(i64::MAX),
        }
    }
}

/// What the server and the delivery worker share for the life of the process: the current
/// config-derived state (swapped whole on reload; a request keeps the one it started with),
/// the store, the metrics, and the worker's heartbeat for `/readyz`.
pub struct Gateway {
    app: arc_swap::ArcSwap<AppState>,
    /// Where `/metrics` is served, and whether the callback listener serves it (not when a
    /// separate admin listener does). Fixed at start.
    metrics_path: String,
    metrics_on_main: bool,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Unix ms of the worker's last loop; 0 while no worker runs.
    pub worker_beat: Arc<AtomicI64>,
    /// The stream receivers' connections.
    pub streams: Arc<crate::stream::Status>,
    /// Their tasks, for reloads and shutdown.
    pub stream_tasks: crate::stream::Tasks,
    /// The WeCom AI bot connections held here, for replies.
    pub replies: Arc<crate::stream::wecom::Replies>,
    /// What each receiver remembers between requests (used robot signs, unsigned budget).
    guards: ingress::Guards,
}

impl Gateway {
    pub fn new(
        app: AppState,
        store: Store,
        metrics: Arc<Metrics>,
        replies: Arc<crate::stream::wecom::Replies>,
    ) -> Self {
        Self {
            metrics_path: app.limits.metrics_path.clone(),
            metrics_on_main: app.limits.admin_listen.is_none(),
            app: arc_swap::ArcSwap::from_pointee(app),
            store,
            streams: Arc::new(crate::stream::Status::new(metrics.clone())),
            stream_tasks: crate::stream::Tasks::default(),
            replies,
            guards: ingress::Guards::default(),
            metrics,
            worker_beat: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Stores an event that arrived over a stream, with the deliveries its rules plan, as
    /// a callback would be; returns after the commit.
    pub async fn store_event(
        &self,
        event: crate::event::Event,
    ) -> Result<crate::store::Stored, crate::store::StoreError> {
        self.app().store_event(event).await.0
    }

    pub fn app(&self) -> Arc<AppState> {
        self.app.load_full()
    }

    /// Installs a new config's state; requests in flight finish with the old one.
    pub fn swap(&self, app: AppState) {
        self.app.store(Arc::new(app));
    }
}

/// Which paths a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Callbacks, `/healthz`, `/readyz`, and the metrics unless an admin listener has them.
    Main,
    /// Only `/healthz`, `/readyz` and the metrics (`[server] admin_listen`).
    Admin,
}

/// Serves connections from `listener` until `shutdown` resolves, then drains. Header and
/// body limits come from the config at start (a reload does not change them).
pub async fn run(listener: TcpListener, gw: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    serve(listener, gw, Role::Main, shutdown).await;
}

/// [`run`] for either role.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    role: Role,
    shutdown: impl Future<Output = ()>,
) {
    let state = gw.app();
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    let gate = connections::Gate::new(
        state
            .limits
            .max_connections
            .unwrap_or_else(connections::default_cap),
    );
    debug!(max_connections = gate.cap(), ?role, "Listening.");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    if let Some(more) = gate.log_now(now_ms()) {
                        warn!(error = %e, more, "Accept failed.");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Past the cap a socket is closed at once: the vendor retries, nothing waits behind it.
        let Some(permit) = gate.admit() else {
            drop(stream);
            gw.metrics.connections_refused.inc();
            if let Some(more) = gate.log_now(now_ms()) {
                warn!(max_connections = gate.cap(), %peer, more, "Connection refused: too many open connections (server.max_connections).");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let service = hyper::service::service_fn(move |req| handle(gw.clone(), role, req));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "Connection ended with an error.");
            }
            drop(permit);
        });
    }
    info!("Shutting down; draining in-flight requests.");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("Drain timed out; closing remaining connections.");
    }
}

struct HyperHeaders<'a>(&'a HeaderMap);

impl Headers for HyperHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

fn respond(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// The synchronous part: verify, decrypt, parse (kept out of the async fn, whose state must be `Send`).
/// With the robot sign use of an accepted robot event, which the store must also admit.
fn open(
    receiver: &Receiver,
    guard: &ingress::Guard,
    method: Method,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<(ingress::Accepted, Option<crate::store::SignUse>), ingress::Rejected> {
    let request = ingress::Request {
        method,
        query: parts.uri.query().unwrap_or(""),
        headers: &HyperHeaders(&parts.headers),
        body,
        now_ms: now_ms(),
    };
    let accepted = ingress::open_with(receiver, guard, &request)?;
    let used = accepted
        .event
        .as_ref()
        .and_then(|_| ingress::sign_use(receiver, &request));
    Ok((accepted, used))
}

/// The answer to a refused callback: the vendor's code and nothing else (the reason goes to
/// the log); with the outcome and reason labels.
fn refused(
    receiver: &Receiver,
    rejected: &ingress::Rejected,
    body: &[u8],
    latency_ms: f64,
) -> (Response<Full<Bytes>>, &'static str, &'static str) {
    let code = rejected
        .code
        .map_or_else(|| "none".to_owned(), |c| c.to_string());
    warn!(
        receiver = %receiver.name,
        vendor = %receiver.vendor(),
        code = %code,
        status = rejected.status(),
        reason = %rejected.error,
        latency_ms,
        "Callback rejected."
    );
    debug!(receiver = %receiver.name, body = %ingress::preview(body), "Rejected body.");
    let text = match rejected.code {
        Some(code) => format!("rejected ({code})\n"),
        None => "rejected\n".to_owned(),
    };
    (
        respond(rejected.status(), "text/plain; charset=utf-8", text),
        "rejected",
        rejected.error.label(),
    )
}

/// One delivery per action of every rule that matches, to commit with the event, and the
/// `cancel`s to apply in the same transaction. Conditions and keys see `event.id` as 0: the
/// id exists only once the event is stored.
fn planned_deliveries(
    state: &AppState,
    event: &crate::event::Event,
) -> (Vec<NewDelivery>, Vec<Cancel>) {
    if state.rules.rules().is_empty() {
        return (Vec::new(), Vec::new());
    }
    let view = EventView {
        id: 0,
        receiver: event.receiver(),
        vendor: event.vendor().as_str(),
        kind: event.kind(),
        dedupe_key: event.dedupe_key(),
        received_at_ms: event.received_at_ms(),
        fields: event.fields(),
    };
    let deadline_ms = event
        .received_at_ms()
        .saturating_add(state.give_up_after_ms);
    let mut deliveries = Vec::new();
    let mut cancels = Vec::new();
    for m in state.rules.matching(&view) {
        if let Some(rules) = m.cancel {
            if let Some(key) = m.key {
                cancels.push(Cancel {
                    key,
                    rules,
                    reason: format!(
                        "cancelled by rule {:?} ({} {})",
                        m.rule,
                        event.kind(),
                        event.dedupe_key()
                    ),
                });
            }
            continue;
        }
        let mut delay_ms = m
            .delay
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4));
        if let Some(at) = &m.at {
            match crate::rules::parse_time(at, &state.limits.timezone) {
                // A time already past runs at once.
                Some(t) => delay_ms = (t.as_millisecond() - event.received_at_ms()).max(0),
                None => {
                    warn!(rule = %m.rule, at = %at, "`at` is not a time; the action runs at once.")
                }
            }
        }
        deliveries.push(NewDelivery {
            rule: m.rule,
            action: m.action,
            kind: m.kind.to_owned(),
            spec: Some(m.spec),
            due_ms: event.received_at_ms().saturating_add(delay_ms),
            key: m.key,
            // The retry window starts when the action is due.
            deadline_ms: deadline_ms.saturating_add(delay_ms),
        });
    }
    (deliveries, cancels)
}

/// Routes the server's own paths, then callbacks; counts each callback once.
async fn handle(
    gw: Arc<Gateway>,
    role: Role,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/healthz" => return Ok(plain(200, "ok\n")),
        "/readyz" => return Ok(ready(&gw).await),
        p if p == gw.metrics_path && (role == Role::Admin || gw.metrics_on_main) => {
            return Ok(metrics(&gw).await);
        }
        _ if role == Role::Admin => return Ok(plain(404, "not found\n")),
        _ => {}
    }
    let state = gw.app();
    let Some(receiver) = state.receivers.get(req.uri().path()) else {
        return Ok(plain(404, "not found\n"));
    };
    let started = std::time::Instant::now();
    let guard = gw.guards.get(&receiver.name);
    let (response, outcome, reason) = callback(&state, receiver, &guard, req, started).await;
    gw.metrics
        .callback(&receiver.name, receiver.vendor().as_str(), outcome, reason);
    gw.metrics
        .latency(&receiver.name, started.elapsed().as_secs_f64());
    Ok(response)
}

/// `/readyz`: the store's latest commits went through and it takes a write within 2 s, and
/// the delivery worker is looping.
async fn ready(gw: &Gateway) -> Response<Full<Bytes>> {
    if let Some(cause) = gw.store.health().failing(now_ms()) {
        return respond(
            503,
            "text/plain; charset=utf-8",
            format!("store: commits are failing: {cause}\n"),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), gw.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return respond(503, "text/plain; charset=utf-8", format!("store: {e}\n")),
        Err(_) => return plain(503, "store: no write within 2 s\n"),
    }
    let beat = gw.worker_beat.load(std::sync::atomic::Ordering::Relaxed);
    if beat == 0 || now_ms() - beat > 10_000 {
        return plain(503, "delivery worker not running\n");
    }
    // Streams are listed; one that stopped for good (credentials, limits) needs an operator.
    let (streams, failed) = gw.streams.report();
    let status = if failed { 503 } else { 200 };
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{}{streams}", if failed { "" } else { "ready\n" }),
    )
}

async fn metrics(gw: &Gateway) -> Response<Full<Bytes>> {
    let (pending, oldest) = gw.store.pending_stats().await.unwrap_or((0, None));
    let age = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    gw.metrics.store_commit_failures.inner().fetch_max(
        gw.store.health().failures(),
        std::sync::atomic::Ordering::Relaxed,
    );
    respond(
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        gw.metrics.render(pending, age),
    )
}

/// One callback: (response, outcome label, rejection reason label).
async fn callback(
    state: &AppState,
    receiver: &Receiver,
    guard: &ingress::Guard,
    req: Request<Incoming>,
    started: std::time::Instant,
) -> (Response<Full<Bytes>>, &'static str, &'static str) {
    let ms = || started.elapsed().as_secs_f64() * 1000.0;
    let method = match *req.method() {
        hyper::Method::GET | hyper::Method::HEAD => Method::Get,
        hyper::Method::POST => Method::Post,
        _ => Method::Other,
    };
    let (parts, incoming) = req.into_parts();
    let body = match body::read(incoming, &parts.headers, &state.limits).await {
        Ok(body) => body,
        Err(e) => {
            warn!(receiver = %receiver.name, status = e.status(), reason = %e, latency_ms = ms(), "Callback body refused.");
            let status = e.status();
            let reason = if status == 413 {
                "too_large"
            } else {
                "slow_body"
            };
            return (
                respond(status, "text/plain; charset=utf-8", format!("{e}\n")),
                "rejected",
                reason,
            );
        }
    };
    let (accepted, used) = match open(receiver, guard, method, &parts, &body) {
        Ok(opened) => opened,
        Err(rejected) => return refused(receiver, &rejected, &body, ms()),
    };
    // A robot's sign covers no body: every process on the store admits a pair for one body.
    if let Some(used) = used {
        match state.store.sign_once(used, now_ms()).await {
            Ok(true) => {}
            Ok(false) => {
                let replayed =
                    ingress::Rejected::new(receiver.vendor(), crate::crypto::OpenError::Replayed);
                return refused(receiver, &replayed, &body, ms());
            }
            Err(e) => {
                error!(receiver = %receiver.name, error = %e, "Could not record the robot sign; answering 503 so the vendor retries.");
                return (
                    plain(503, "store unavailable, retry later\n"),
                    "error",
                    "store",
                );
            }
        }
    }
    let outcome = if let Some(event) = accepted.event {
        let (kind, key) = (event.kind().to_owned(), event.dedupe_key().to_owned());
        debug!(receiver = %receiver.name, raw = %event.raw(), "Decrypted callback.");
        let (stored, actions) = state.store_event(event).await;
        match stored {
            Ok(stored) => {
                info!(
                    receiver = %receiver.name,
                    kind = %kind,
                    event_id = stored.id,
                    duplicate = stored.duplicate,
                    dedupe_key = %key,
                    actions = if stored.duplicate { 0 } else { actions },
                    "Callback accepted."
                );
                if stored.duplicate {
                    "duplicate"
                } else {
                    "accepted"
                }
            }
            Err(e) => {
                error!(receiver = %receiver.name, kind = %kind, error = %e, "Could not store the callback; answering 503 so the vendor retries.");
                return (
                    plain(503, "store unavailable, retry later\n"),
                    "error",
                    "store",
                );
            }
        }
    } else {
        info!(receiver = %receiver.name, vendor = %receiver.vendor(), latency_ms = ms(), "Answered a URL check or hint; nothing to store.");
        "url_check"
    };
    let reply = accepted.reply;
    (
        respond(reply.status, reply.content_type, reply.body),
        outcome,
        "",
    )
}
