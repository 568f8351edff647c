//! The PostgreSQL schema: the steps of [`crate::store::migrations`] applied under an
//! advisory lock (replicas starting together migrate once), recorded in `hookgate_schema`.

use deadpool_postgres::GenericClient;

use super::db_error;
use crate::store::StoreError;
use crate::store::migrations::STEPS;
/// Applies the missing steps of [`STEPS`] under an advisory lock (replicas starting
/// together migrate once); returns the version found and the version now.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Object,
) -> Result<(i64, i64), StoreError> {
    const LOCK: &str = concat!(
        "SELECT pg_advisory_lock(",
        lock_key!("'hookgate:migrate'"),
        ")"
    );
    const UNLOCK: &str = concat!(
        "SELECT pg_advisory_unlock(",
        lock_key!("'hookgate:migrate'"),
        ")"
    );
    let known = STEPS.len() as i64;
    client.execute(LOCK, &[]).await.map_err(db_error)?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS hookgate_schema (
                     version       INTEGER PRIMARY KEY,
                     applied_at_ms BIGINT  NOT NULL
                 )",
            )
            .await
            .map_err(db_error)?;
        let found: i64 = client
            .query_one(
                "SELECT coalesce(max(version), 0)::bigint FROM hookgate_schema",
                &[],
            )
            .await
            .map_err(db_error)?
            .get(0);
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for (i, step) in STEPS.iter().enumerate().skip(found as usize) {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.batch_execute(step.postgres).await.map_err(db_error)?;
            tx.execute(
                "INSERT INTO hookgate_schema (version, applied_at_ms) VALUES ($1, $2)",
                &[&(i as i32 + 1), &crate::clock::now_ms()],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
        }
        Ok((found, known))
    }
    .await;
    let _ = client.execute(UNLOCK, &[]).await;
    result
}
