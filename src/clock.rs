//! The wall clock every part of the runtime reads: Unix milliseconds. A leaf, so the store,
//! the worker, the server and the streams share one reading of "now" without importing
//! each other.

/// Wall-clock Unix milliseconds (0 before 1970, saturating far in the future).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
