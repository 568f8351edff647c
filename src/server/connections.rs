//! The accept side's limits: a cap on open connections (past it a new socket is closed at
//! once, counted and logged at most once a second, so idle sockets cannot starve the file
//! descriptors valid callbacks need) and the process's file-descriptor limit, raised to its
//! hard limit at start.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept free for the store, outbound calls and logs.
const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force afterwards.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return 1024;
    }
    // An unlimited hard limit is not a valid soft one for NOFILE on Linux: stay reasonable.
    let target = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    lim.rlim_cur
}

/// The connection cap when `server.max_connections` is not set: the soft descriptor limit
/// less what the rest of the process needs.
pub fn default_cap() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed in.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(RESERVED_FDS)).unwrap_or(usize::MAX)
}

/// Admission of accepted sockets.
pub struct Gate {
    permits: Arc<Semaphore>,
    cap: usize,
    /// When the last "refused" or "accept failed" line was logged (Unix ms), and what was
    /// not logged since.
    logged_at: AtomicI64,
    unlogged: AtomicU64,
}

impl Gate {
    pub fn new(cap: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(cap.max(1))),
            cap: cap.max(1),
            logged_at: AtomicI64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// A permit for one more connection, held as long as it is open; `None` at the cap.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Whether to log now (at most once a second); with how many were left unlogged before.
    pub fn log_now(&self, now_ms: i64) -> Option<u64> {
        let last = self.logged_at.load(Ordering::Relaxed);
        if now_ms - last < 1_000
            || self
                .logged_at
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_frees() {
        let gate = Gate::new(2);
        let a = gate.admit().unwrap();
        let _b = gate.admit().unwrap();
        assert!(gate.admit().is_none());
        drop(a);
        assert!(gate.admit().is_some());
    }

    #[test]
    fn logs_at_most_once_a_second() {
        let gate = Gate::new(1);
        assert_eq!(gate.log_now(5_000), Some(0));
        assert_eq!(gate.log_now(5_500), None);
        assert_eq!(gate.log_now(5_900), None);
        assert_eq!(gate.log_now(6_100), Some(2));
    }

    #[test]
    fn nofile_is_raised_to_the_hard_limit() {
        let soft = raise_nofile();
        assert!(soft >= 64);
        assert!(default_cap() >= 64);
    }
}
