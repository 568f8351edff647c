//! Robot budgets shared by every replica: a sliding minute of sends per webhook, vendor-
//! imposed pauses, and the (timestamp, sign) pairs a DingTalk robot callback may carry one
//! body with.

use crate::store::sql;
use deadpool_postgres::GenericClient;

use super::{Postgres, db_error};
use crate::store::StoreError;
impl Postgres {
    /// The shared sliding-minute budget: an advisory lock per key serialises the replicas.
    pub(in crate::store) async fn rate_take(
        &self,
        key: String,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(
            concat!(
                "SELECT pg_advisory_xact_lock(",
                lock_key!("'rate:' || $1"),
                ")"
            ),
            &[&key],
        )
        .await
        .map_err(db_error)?;
        let row = tx
            .query_one(
                "SELECT (SELECT max(until_ms) FROM robot_pauses WHERE key = $1 AND until_ms > $2),
                        count(*), min(at_ms)
                 FROM robot_sends WHERE key = $1 AND at_ms > $2 - $3",
                &[&key, &now_ms, &crate::store::types::RATE_WINDOW_MS],
            )
            .await
            .map_err(db_error)?;
        let wait = match row.get::<_, Option<i64>>(0) {
            Some(until) => Some(until - now_ms),
            None => crate::store::types::rate_wait(row.get(1), row.get(2), per_minute, now_ms),
        };
        if wait.is_none() {
            tx.execute(
                "INSERT INTO robot_sends (key, at_ms) VALUES ($1, $2)",
                &[&key, &now_ms],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(wait)
    }

    pub(in crate::store) async fn sign_once(
        &self,
        s: crate::store::SignUse,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let digest = s.digest.to_vec();
        self.client()
            .await?
            .query_opt(
                sql::SIGN_ONCE.postgres(),
                &[
                    &s.receiver,
                    &s.timestamp,
                    &s.sign,
                    &digest,
                    &s.until_ms,
                    &now_ms,
                ],
            )
            .await
            .map_err(db_error)
            .map(|row| row.is_some())
    }

    pub(in crate::store) async fn rate_pause(
        &self,
        key: String,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(sql::RATE_PAUSE.postgres(), &[&key, &until_ms])
            .await
            .map_err(db_error)
            .map(drop)
    }
}
