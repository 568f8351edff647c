//! Whether the store's commits are going through: the writers record the outcome of every
//! commit that wrote something (or failed), `/readyz` and `/metrics` read it. An empty
//! transaction succeeds on a full disk, so only real writes count.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long a failed commit keeps `/readyz` failing when no commit follows it. Past that,
/// the gateway reports ready again so traffic can show whether the store recovered.
pub const FAILING_FOR_MS: i64 = 60_000;

/// An error with its causes ("commit failed: db error: ERROR: disk full"): PostgreSQL's
/// client puts the server's message in the source, not in the error's own text.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[derive(Debug, Default)]
pub struct Health {
    /// The latest failed commit (Unix ms, cause) while no commit succeeded after it.
    failing: Mutex<Option<(i64, String)>>,
    failures: AtomicU64,
}

impl Health {
    pub(super) fn committed(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if failing.take().is_some() {
            tracing::info!("Store commits succeed again.");
        }
    }

    pub(super) fn failed(&self, cause: &(dyn std::error::Error + 'static)) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = crate::clock::now_ms();
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, chain(cause)));
    }

    /// The cause of the latest commit failure, if no commit succeeded since and it is recent.
    pub fn failing(&self, now_ms: i64) -> Option<String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing
            .as_ref()
            .filter(|(at, _)| now_ms.saturating_sub(*at) < FAILING_FOR_MS)
            .map(|(_, cause)| cause.clone())
    }

    /// Failed commits since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}
