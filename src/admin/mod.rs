//! The admin listener's own paths: the JSON API under `/api/v1/` (`api.rs`, with the live
//! tail of committed callbacks as server-sent events), who may call it and whether a write
//! may come from a browser (`auth.rs`), and the web console's page (`console.rs`). `server` hands it every request on `admin_listen` that
//! is not `/healthz`, `/readyz` or the metrics. Reads and writes go through
//! [`crate::operate`], as the CLI's do.

mod api;
pub mod auth;
mod console;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::intake::Intake;
use auth::Role;

/// A response body: whole, or a stream (the live tail).
pub type Body = crate::server::ResponseBody;

/// Asks the process to re-read its config file; the answer says what happened.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// Largest request body the admin API reads (a pasted event for `explain`).
const BODY_LIMIT: usize = 1 << 20;

/// What the admin paths need: the intake (config now, store, metrics), the stream
/// receivers' state, a way to ask for a reload, and the Basic users' bcrypt cache.
pub struct Admin {
    intake: Arc<Intake>,
    streams: Arc<crate::stream::Status>,
    /// Reload requests, to the process's config watcher (closed when it has none).
    reload: mpsc::Sender<ReloadRequest>,
    guard: crate::ingress::Guard,
    /// Turns true when the process stops: live tails end so the drain does not wait.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Admin {
    pub fn new(
        intake: Arc<Intake>,
        streams: Arc<crate::stream::Status>,
        reload: mpsc::Sender<ReloadRequest>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            intake,
            streams,
            reload,
            stopping,
            guard: crate::ingress::Guard::default(),
        }
    }

    /// Answers one request on the admin listener (`local`: the listener is on loopback).
    pub async fn answer(
        &self,
        req: Request<Incoming>,
        local: bool,
        peer: IpAddr,
    ) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if !path.starts_with("/api/") {
            return console::asset(&path).unwrap_or_else(|| json_error(404, "not found"));
        }
        let loaded = self.intake.loaded();
        let Some(caller) =
            auth::authenticate(&loaded.admin, req.headers(), local, &self.guard, now_ms())
        else {
            tracing::info!(%peer, path = %path, "Admin API: refused without valid credentials.");
            let mut resp = json_error(
                401,
                "credentials needed (a bearer token or a Basic user of [admin])",
            );
            // A browser's own prompt only for a plain visit; the console asks by itself.
            if !req.headers().contains_key(auth::CSRF_HEADER) {
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"hookgate admin\", charset=\"UTF-8\""),
                );
            }
            return resp;
        };
        let write = req.method() != Method::GET && req.method() != Method::HEAD;
        if write {
            if caller.role != Role::Operator {
                tracing::info!(who = %caller.name, path = %path, "Admin API: a viewer may not write.");
                return json_error(403, "this needs the operator role");
            }
            if let Some(why) = auth::cross_site(req.headers()) {
                tracing::warn!(who = %caller.name, %peer, path = %path, why, "Admin API: write refused.");
                return json_error(403, why);
            }
        }
        api::route(self, &caller, req).await
    }
}

impl crate::server::AdminPaths for Admin {
    fn handle(
        &self,
        req: Request<Incoming>,
        local: bool,
        peer: IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(self.answer(req, local, peer))
    }
}

/// A JSON answer.
fn json(status: u16, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_error(status: u16, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Reads a request body of at most [`BODY_LIMIT`] bytes.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ()> {
    let limited = http_body_util::Limited::new(req.into_body(), BODY_LIMIT);
    limited.collect().await.map(|b| b.to_bytes()).map_err(drop)
}
