//! The server's own answers: `/readyz` (the store commits and takes a write, the delivery
//! worker loops, no stream receiver failed for good) and `/metrics` (with the pending depth
//! read from the store at scrape time).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use super::{plain, respond};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::store::Store;

/// What `/readyz` looks at besides the store.
pub struct Health {
    /// Unix ms of the delivery worker's last loop; 0 while no worker runs.
    pub worker_beat: Arc<AtomicI64>,
    /// The stream receivers' connections.
    pub streams: Arc<crate::stream::Status>,
}

/// `/readyz`: the store's latest commits went through and it takes a write within 2 s, and
/// the delivery worker is looping.
pub(super) async fn ready(health: &Health, store: &Store) -> Response<Full<Bytes>> {
    if let Some(cause) = store.health().failing(now_ms()) {
        return respond(
            503,
            "text/plain; charset=utf-8",
            format!("store: commits are failing: {cause}\n"),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return respond(503, "text/plain; charset=utf-8", format!("store: {e}\n")),
        Err(_) => return plain(503, "store: no write within 2 s\n"),
    }
    let beat = health
        .worker_beat
        .load(std::sync::atomic::Ordering::Relaxed);
    if beat == 0 || now_ms() - beat > 10_000 {
        return plain(503, "delivery worker not running\n");
    }
    // Streams are listed; one that stopped for good (credentials, limits) needs an operator.
    let (streams, failed) = health.streams.report();
    let status = if failed { 503 } else { 200 };
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{}{streams}", if failed { "" } else { "ready\n" }),
    )
}

pub(super) async fn metrics(store: &Store, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (pending, oldest) = store.pending_stats().await.unwrap_or((0, None));
    // Dead letters and timers by rule: a read of their own indexes, at most every 30 s.
    if metrics.backlog_due(now_ms())
        && let Ok(b) = store.backlog(now_ms()).await
    {
        metrics.set_backlog(&b.dead, &b.scheduled);
    }
    let age = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    metrics.store_commit_failures.inner().fetch_max(
        store.health().failures(),
        std::sync::atomic::Ordering::Relaxed,
    );
    respond(
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        metrics.render(pending, age),
    )
}
