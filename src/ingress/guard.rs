//! What a receiver remembers between requests: the DingTalk robot `timestamp`/`sign` pairs it
//! accepted (the sign covers no body, so a captured pair must not carry a new one) and a small
//! budget for the unsigned requests a Feishu receiver with an Encrypt Key must still decrypt
//! (its URL check), so they cannot be used as a decryption oracle at speed; and the Basic
//! credentials a webhook receiver checked against a bcrypt hash, with a budget for checking
//! new ones (each costs tens of milliseconds of CPU by design).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::crypto::OpenError;
use crate::crypto::robot::SignUse;

/// Unsigned decrypts a receiver may do in a burst, and how often one more is allowed after.
const UNSIGNED_BURST: f64 = 20.0;
const UNSIGNED_REFILL_MS: f64 = 3_000.0;
/// bcrypt checks of credentials not yet seen: a burst, then one more every 250 ms.
const HASHING_BURST: f64 = 8.0;
const HASHING_REFILL_MS: f64 = 250.0;
/// Credentials remembered as checked; beyond this many the memory starts over.
const CHECKED_MAX: usize = 1_024;
/// Above this many remembered signs, expired ones are swept before the next is added.
const SWEEP_AT: usize = 4_096;

/// One receiver's memory. Cheap to create; [`Guards`] keeps one per receiver across reloads.
#[derive(Debug, Default)]
pub struct Guard {
    signs: Mutex<Signs>,
    unsigned: Mutex<Option<Bucket>>,
    hashing: Mutex<Option<Bucket>>,
    /// SHA-256 of (name, password, hash) of credentials that matched their bcrypt hash.
    checked: Mutex<HashSet<[u8; 32]>>,
}

#[derive(Debug, Default)]
struct Signs {
    /// (timestamp, sign) → (sha256 of the body, forget after this Unix ms).
    seen: HashMap<(String, String), ([u8; 32], i64)>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Guard {
    /// Admits a robot request's (timestamp, sign) for its body: the first use, or the same
    /// body again (a vendor retry, which the store deduplicates), passes; another body is a
    /// replay. (The store keeps the same memory for every process on it: `Store::sign_once`.)
    pub fn robot_sign(&self, used: &SignUse, now_ms: i64) -> Result<(), OpenError> {
        let mut signs = self.signs.lock().unwrap_or_else(PoisonError::into_inner);
        if signs.seen.len() >= SWEEP_AT {
            signs.seen.retain(|_, (_, until)| *until > now_ms);
        }
        let key = (used.timestamp.clone(), used.sign.clone());
        match signs.seen.get(&key) {
            Some((seen, until)) if *until > now_ms && *seen != used.digest => {
                Err(OpenError::Replayed)
            }
            _ => {
                signs.seen.insert(key, (used.digest, used.until_ms));
                Ok(())
            }
        }
    }

    /// Takes one unsigned decrypt from the budget, or refuses it.
    pub fn unsigned_decrypt(&self, now_ms: i64) -> Result<(), OpenError> {
        take(&self.unsigned, UNSIGNED_BURST, UNSIGNED_REFILL_MS, now_ms)
    }

    /// Whether `password` for `name` matches the bcrypt `hash`: at once if this pair matched
    /// before, else by bcrypt within the budget for new credentials (`Throttled` beyond it).
    pub fn bcrypt_matches(
        &self,
        name: &str,
        password: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool, OpenError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [name, password, hash] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest: [u8; 32] = h.finalize().into();
        let lock = || self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if lock().contains(&digest) {
            return Ok(true);
        }
        take(&self.hashing, HASHING_BURST, HASHING_REFILL_MS, now_ms)?;
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut checked = lock();
            if checked.len() >= CHECKED_MAX {
                checked.clear();
            }
            checked.insert(digest);
        }
        Ok(ok)
    }
}

/// Takes one token from a bucket of `burst` that refills one per `refill_ms`, or refuses.
fn take(
    slot: &Mutex<Option<Bucket>>,
    burst: f64,
    refill_ms: f64,
    now_ms: i64,
) -> Result<(), OpenError> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let bucket = slot.get_or_insert(Bucket {
        tokens: burst,
        at_ms: now_ms,
    });
    let elapsed = now_ms.saturating_sub(bucket.at_ms).max(0) as f64;
    bucket.tokens = (bucket.tokens + elapsed / refill_ms).min(burst);
    bucket.at_ms = now_ms;
    if bucket.tokens < 1.0 {
        return Err(OpenError::Throttled);
    }
    bucket.tokens -= 1.0;
    Ok(())
}

/// A [`Guard`] per receiver name, kept for the life of the process (reloads keep them).
#[derive(Debug, Default)]
pub struct Guards(Mutex<HashMap<String, Arc<Guard>>>);

impl Guards {
    pub fn get(&self, receiver: &str) -> Arc<Guard> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(guard) = map.get(receiver) {
            return guard.clone();
        }
        map.entry(receiver.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_carries_one_body_for_its_window() {
        let g = Guard::default();
        let used = |ts: &str, body: &[u8]| SignUse::new("r", ts, "s", body, 1000);
        assert!(g.robot_sign(&used("1", b"a"), 0).is_ok());
        assert!(g.robot_sign(&used("1", b"a"), 10).is_ok(), "a retry");
        assert_eq!(g.robot_sign(&used("1", b"b"), 20), Err(OpenError::Replayed));
        assert!(g.robot_sign(&used("2", b"b"), 20).is_ok());
        assert!(g.robot_sign(&used("1", b"b"), 2000).is_ok(), "expired");
    }

    #[test]
    fn bcrypt_credentials_are_checked_once_and_new_ones_are_budgeted() {
        let g = Guard::default();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        assert_eq!(g.bcrypt_matches("yida", "s3cret", &hash, 0), Ok(true));
        // Known now: no budget spent, however often.
        for _ in 0..100 {
            assert_eq!(g.bcrypt_matches("yida", "s3cret", &hash, 0), Ok(true));
        }
        let wrong: Vec<_> = (0..20)
            .map(|i| g.bcrypt_matches("yida", &format!("guess{i}"), &hash, 0))
            .collect();
        assert_eq!(wrong.iter().filter(|r| **r == Ok(false)).count(), 7);
        assert!(wrong[7..].iter().all(|r| *r == Err(OpenError::Throttled)));
        assert_eq!(
            g.bcrypt_matches("yida", "s3cret", &hash, 0),
            Ok(true),
            "still known"
        );
        assert_eq!(
            g.bcrypt_matches("yida", "guess", &hash, 300),
            Ok(false),
            "refilled"
        );
    }

    #[test]
    fn unsigned_decrypts_are_budgeted() {
        let g = Guard::default();
        let passed = (0..100).filter(|_| g.unsigned_decrypt(0).is_ok()).count();
        assert_eq!(passed, 20);
        assert!(g.unsigned_decrypt(1_000).is_err());
        assert!(g.unsigned_decrypt(3_100).is_ok());
    }
}
