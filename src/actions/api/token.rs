//! Managed access tokens: fetched on first use, cached (in memory and in the store, so a
//! restart or a second process does not storm `gettoken`) until shortly before expiry, and
//! refreshed by exactly one request however many callers wait: the async mutex is held
//! across the fetch, so the others find the fresh token when they get the lock.

use std::future::Future;

use tokio::sync::Mutex;

use crate::actions::ActionError;
use crate::secret::Secret;
use crate::store::Store;

/// Refresh this long before the vendor's expiry (clock skew, requests in flight).
const MARGIN_MS: i64 = 5 * 60 * 1000;

pub struct TokenCache {
    /// The store key: vendor, app and a digest of the secret (a new secret, a new token).
    key: String,
    store: Store,
    cached: Mutex<Option<(Secret<String>, i64)>>,
}

impl TokenCache {
    pub fn new(key: String, store: Store) -> Self {
        Self {
            key,
            store,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: cached, stored, or fetched with `fetch` (which returns the token and
    /// its lifetime in seconds).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<String, ActionError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, i64), ActionError>>,
    {
        let mut cached = self.cached.lock().await;
        let now = crate::clock::now_ms();
        if let Some((token, expires)) = &*cached
            && expires - MARGIN_MS > now
        {
            return Ok(token.expose().clone());
        }
        if let Some(token) = self.stored(&mut cached, now).await {
            return Ok(token);
        }
        // Across replicas: one refreshes, the others wait here and then find its token.
        let _refreshing = self
            .store
            .lock(&format!("token:{}", self.key))
            .await
            .map_err(|e| ActionError::retryable(format!("token lock: {e}")))?;
        if let Some(token) = self.stored(&mut cached, now).await {
            return Ok(token);
        }
        let (token, lifetime_s) = fetch().await?;
        let expires = now + lifetime_s.max(0) * 1000;
        if let Err(e) = self.store.put_token(&self.key, &token, expires).await {
            tracing::warn!(error = %e, "Could not keep the access token in the store.");
        }
        *cached = Some((Secret::new(token.clone()), expires));
        Ok(token)
    }

    /// The token in the store, if it is still good for a while.
    async fn stored(&self, cached: &mut Option<(Secret<String>, i64)>, now: i64) -> Option<String> {
        match self.store.token(&self.key).await {
            Ok(Some((token, expires))) if expires - MARGIN_MS > now => {
                *cached = Some((Secret::new(token.clone()), expires));
                Some(token)
            }
            _ => None,
        }
    }

    /// The vendor said `token` is invalid or expired: forget it, once. Callers that saw the
    /// same token fail find a fresh one (or fetch it, one of them) on their next `get`.
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t.expose() == token) {
            *cached = None;
        }
        if let Err(e) = self.store.forget_token(&self.key, token).await {
            tracing::warn!(error = %e, "Could not drop the stale access token from the store.");
        }
    }
}

/// The store key for an app's token: the secret only as a digest.
pub fn key(vendor: &str, app: &str, secret: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(secret.as_bytes());
    format!(
        "{vendor}:{app}:{:02x}{:02x}{:02x}{:02x}",
        d[0], d[1], d[2], d[3]
    )
}
