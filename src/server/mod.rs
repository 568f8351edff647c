//! The HTTP server: hyper 1 over tokio. Serves `/healthz`, `/readyz` and `/metrics`
//! (`status.rs`), routes other paths to their receiver, enforces the body limit and read
//! timeouts, and hands each callback to `callback.rs`, which opens it through
//! [`crate::ingress`] and answers only after [`crate::intake`] committed it.
//! [`serve`] makes a listener's server a value that tests and the app start alike.

mod body;
mod callback;

pub use callback::OUTCOME_HEADER;
mod connections;
mod status;

pub use connections::raise_nofile;
pub use status::Health;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::ingress::{self, Headers};
use crate::intake::Intake;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// What every connection of the process shares: the intake (config, store, metrics), the
/// health view for `/readyz`, and what each receiver remembers between requests.
pub struct Server {
    intake: Arc<Intake>,
    health: Health,
    /// Where `/metrics` is served, and whether the callback listener serves it (not when a
    /// separate admin listener does). Fixed at start.
    metrics_path: String,
    metrics_on_main: bool,
    /// What each receiver remembers between requests (used robot signs, unsigned budget).
    guards: ingress::Guards,
    /// The admin API and console, on the admin listener.
    admin: Option<Arc<dyn AdminPaths>>,
}

/// The admin API's response body: whole, or a stream (the live tail).
pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The admin listener's paths besides health and metrics (`crate::admin` serves them).
pub trait AdminPaths: Send + Sync {
    /// Answers one request; `local`: the listener is on loopback.
    fn handle(
        &self,
        req: Request<Incoming>,
        local: bool,
        peer: std::net::IpAddr,
    ) -> std::pin::Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send + '_>>;
}

impl Server {
    pub fn new(intake: Arc<Intake>, health: Health, admin: Option<Arc<dyn AdminPaths>>) -> Self {
        let server = intake.loaded().server.clone();
        Self {
            metrics_path: server.metrics_path,
            metrics_on_main: server.admin_listen.is_none(),
            intake,
            health,
            guards: ingress::Guards::default(),
            admin,
        }
    }
}

/// Which paths a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Callbacks, `/healthz`, `/readyz`, and the metrics unless an admin listener has them.
    Main,
    /// `/healthz`, `/readyz`, the metrics and the admin API (`[server] admin_listen`).
    Admin,
}

/// Serves connections from `listener` in `role` until `shutdown` resolves, then drains.
/// Header limits and the connection cap come from the config at start (a reload does not
/// change them).
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    role: Role,
    shutdown: impl Future<Output = ()>,
) {
    let state = server.intake.loaded();
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.server.header_read_timeout)
        .max_buf_size(64 * 1024);
    let gate = connections::Gate::new(
        state
            .server
            .max_connections
            .unwrap_or_else(connections::default_cap),
    );
    debug!(max_connections = gate.cap(), ?role, "Listening.");
    // The admin API may let loopback callers in without credentials ([admin] open_on_loopback).
    let local = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
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
            server.intake.metrics().connections_refused.inc();
            if let Some(more) = gate.log_now(now_ms()) {
                warn!(max_connections = gate.cap(), %peer, more, "Connection refused: too many open connections (server.max_connections).");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let ip = peer.ip();
        let service =
            hyper::service::service_fn(move |req| handle(server.clone(), role, local, ip, req));
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

pub(crate) struct HyperHeaders<'a>(pub &'a hyper::header::HeaderMap);

impl Headers for HyperHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect()
    }
}

pub(crate) fn respond(
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

pub(crate) fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// Routes the server's own paths, then the admin API (on the admin listener) or callbacks.
async fn handle(
    server: Arc<Server>,
    role: Role,
    local: bool,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Either<Full<Bytes>, ResponseBody>>, Infallible> {
    // Callbacks and health answers stay whole bodies (no allocation); the admin API's may stream.
    let whole = |r: Response<Full<Bytes>>| Ok(r.map(Either::Left));
    match req.uri().path() {
        "/healthz" => return whole(plain(200, "ok\n")),
        "/readyz" => return whole(status::ready(&server.health, server.intake.store()).await),
        p if p == server.metrics_path && (role == Role::Admin || server.metrics_on_main) => {
            return whole(status::metrics(server.intake.store(), server.intake.metrics()).await);
        }
        _ if role == Role::Admin => {
            return match &server.admin {
                Some(admin) => Ok(admin.handle(req, local, peer).await.map(Either::Right)),
                None => whole(plain(404, "not found\n")),
            };
        }
        _ => {}
    }
    callback(server, peer, req)
        .await
        .map(|r| r.map(Either::Left))
}

/// One callback to a receiver's path; counts it once.
async fn callback(
    server: Arc<Server>,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let loaded = server.intake.loaded();
    let Some(receiver) = loaded.receivers.get(req.uri().path()) else {
        return Ok(plain(404, "not found\n"));
    };
    let started = std::time::Instant::now();
    let guard = server.guards.get(&receiver.name);
    let call = callback::Call {
        intake: &server.intake,
        loaded: &loaded,
        receiver,
        guard: &guard,
        started,
        peer,
    };
    let (response, outcome, reason) = call.answer(req).await;
    let metrics = server.intake.metrics();
    metrics.callback(&receiver.name, receiver.vendor().as_str(), outcome, reason);
    metrics.latency(&receiver.name, started.elapsed().as_secs_f64());
    Ok(response)
}
