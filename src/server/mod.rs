//! The HTTP server: hyper 1 over tokio. Routes a path to its receiver, enforces the body
//! limit and read timeouts, opens the callback through [`crate::ingress`], and answers only
//! after [`crate::store::Store::accept`] committed. `run(listener, state, shutdown)` makes the
//! server a value that tests bind to `127.0.0.1:0`.

mod body;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
use crate::rules::{EventView, RuleSet};
use crate::store::{NewDelivery, Store};

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
    pub fn new(config: &Config, rules: Arc<RuleSet>, store: Store) -> Self {
        let receivers = config
            .receivers
            .iter()
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

/// Serves connections from `listener` until `shutdown` resolves, then drains.
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "Connection ended with an error.");
            }
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
fn open(
    receiver: &Receiver,
    method: Method,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<ingress::Accepted, ingress::Rejected> {
    let request = ingress::Request {
        method,
        query: parts.uri.query().unwrap_or(""),
        headers: &HyperHeaders(&parts.headers),
        body,
        now_ms: now_ms(),
    };
    ingress::open(receiver, &request)
}

/// One delivery per action of every rule that matches, to commit with the event. Conditions
/// see `event.id` as 0: the id exists only once the event is stored.
fn planned_deliveries(state: &AppState, event: &crate::event::Event) -> Vec<NewDelivery> {
    if state.rules.rules().is_empty() {
        return Vec::new();
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
    state
        .rules
        .matching(&view)
        .into_iter()
        .map(|m| NewDelivery {
            rule: m.rule,
            action: m.action,
            kind: m.kind.to_owned(),
            deadline_ms,
        })
        .collect()
}

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(receiver) = state.receivers.get(req.uri().path()) else {
        return Ok(plain(404, "not found\n"));
    };
    let method = match *req.method() {
        hyper::Method::GET | hyper::Method::HEAD => Method::Get,
        hyper::Method::POST => Method::Post,
        _ => Method::Other,
    };
    let (parts, incoming) = req.into_parts();
    let body = match body::read(incoming, &parts.headers, &state.limits).await {
        Ok(body) => body,
        Err(e) => {
            warn!(receiver = %receiver.name, status = e.status(), reason = %e, "Callback body refused.");
            return Ok(respond(
                e.status(),
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ));
        }
    };
    let accepted = match open(receiver, method, &parts, &body) {
        Ok(accepted) => accepted,
        Err(rejected) => {
            let code = rejected
                .code
                .map_or_else(|| "none".to_owned(), |c| c.to_string());
            warn!(
                receiver = %receiver.name,
                vendor = %receiver.vendor(),
                code = %code,
                status = rejected.status(),
                reason = %rejected.error,
                "Callback rejected."
            );
            debug!(receiver = %receiver.name, body = %ingress::preview(&body), "Rejected body.");
            let text = format!("rejected ({code}): {}\n", rejected.error);
            return Ok(respond(
                rejected.status(),
                "text/plain; charset=utf-8",
                text,
            ));
        }
    };
    if let Some(event) = accepted.event {
        let (kind, key) = (event.kind().to_owned(), event.dedupe_key().to_owned());
        debug!(receiver = %receiver.name, raw = %event.raw(), "Decrypted callback.");
        let deliveries = planned_deliveries(&state, &event);
        let actions = deliveries.len();
        match state.store.accept(event, deliveries).await {
            Ok(stored) => info!(
                receiver = %receiver.name,
                kind = %kind,
                event_id = stored.id,
                duplicate = stored.duplicate,
                dedupe_key = %key,
                actions = if stored.duplicate { 0 } else { actions },
                "Callback accepted."
            ),
            Err(e) => {
                error!(receiver = %receiver.name, kind = %kind, error = %e, "Could not store the callback; answering 503 so the vendor retries.");
                return Ok(plain(503, "store unavailable, retry later\n"));
            }
        }
    } else {
        info!(receiver = %receiver.name, vendor = %receiver.vendor(), "Answered a URL check or hint; nothing to store.");
    }
    let reply = accepted.reply;
    Ok(respond(reply.status, reply.content_type, reply.body))
}
