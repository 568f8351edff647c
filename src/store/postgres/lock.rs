//! Named locks across replicas: a session advisory lock (keyed by the schema and the name)
//! on a connection of its own, released when dropped or when the session dies.

use deadpool_postgres::GenericClient;

use super::{CONNECT_TIMEOUT, Postgres, db_error};
use crate::store::StoreError;
impl Postgres {
    /// Waits for the advisory lock `name` (held by another replica, or free).
    pub(in crate::store) async fn lock(&self, name: &str) -> Result<AdvisoryLock, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                concat!("SELECT pg_advisory_lock(", lock_key!("$1"), ")"),
                &[&name],
            )
            .await
            .map_err(db_error)?;
        Ok(AdvisoryLock {
            client: Some(client),
            name: name.to_owned(),
        })
    }
}

/// A session advisory lock on a pooled connection; released when dropped (or, should that
/// fail, by closing the connection, which releases it on the server).
pub struct AdvisoryLock {
    client: Option<deadpool_postgres::Object>,
    name: String,
}

impl AdvisoryLock {
    /// The session holding the lock answers (so the lock is still ours).
    pub async fn alive(&self) -> bool {
        match &self.client {
            Some(c) => tokio::time::timeout(CONNECT_TIMEOUT, c.simple_query("SELECT 1"))
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(deadpool_postgres::Object::take(client));
            return;
        };
        runtime.spawn(async move {
            let unlocked = client
                .query_one(
                    concat!("SELECT pg_advisory_unlock(", lock_key!("$1"), ")"),
                    &[&name],
                )
                .await;
            if !matches!(unlocked.map(|r| r.get::<_, bool>(0)), Ok(true)) {
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}
