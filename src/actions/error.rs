//! How an attempt of an action failed, typed where the delivery worker decides on it: a
//! [`Disposition`] (retry with backoff, wait for a budget without spending an attempt, or
//! give up), the vendor's errcode when there is one, and the reason for the log and
//! `hookgate deliveries list`.

use std::time::Duration;

/// What the worker does with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again after the backoff, or after `after` if the sink asked for longer (HTTP
    /// `Retry-After`).
    Retry { after: Option<Duration> },
    /// Not the delivery's failure: the target's rate budget or the vendor's throttle. The
    /// delivery waits this long without spending an attempt.
    Throttled(Duration),
    /// Repeating will not help: the delivery is dead.
    Permanent,
}

/// Why an action did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ActionError {
    pub disposition: Disposition,
    pub reason: String,
    /// The vendor's errcode, when the vendor answered with one.
    pub errcode: Option<i64>,
}

impl ActionError {
    fn new(disposition: Disposition, reason: impl Into<String>) -> Self {
        Self {
            disposition,
            reason: reason.into(),
            errcode: None,
        }
    }

    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::new(Disposition::Retry { after: None }, reason)
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::new(Disposition::Permanent, reason)
    }

    pub fn throttled(reason: impl Into<String>, wait: Duration) -> Self {
        Self::new(Disposition::Throttled(wait), reason)
    }

    /// The same error, carrying the vendor's errcode.
    pub fn with_errcode(mut self, code: i64) -> Self {
        self.errcode = Some(code);
        self
    }

    /// Whether the worker tries again (after a backoff or a throttle).
    pub fn is_retryable(&self) -> bool {
        self.disposition != Disposition::Permanent
    }
}
