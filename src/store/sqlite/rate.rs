//! Robot budgets: a sliding minute of sends per webhook, vendor-imposed pauses, and the
//! (timestamp, sign) pairs a DingTalk robot callback may carry one body with.

use crate::store::sql;
use rusqlite::{OptionalExtension, params};
use tokio::sync::oneshot;

use super::Sqlite;
use crate::store::StoreError;
impl Sqlite {
    pub(in crate::store) async fn rate_take(
        &self,
        key: String,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(Box::new(move |tx| {
            let wait = rate_take(tx, &key, per_minute, now_ms)?;
            let _ = reply.send(wait);
            Ok(0)
        }))
        .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub(in crate::store) async fn sign_once(
        &self,
        s: crate::store::SignUse,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(Box::new(move |tx| {
            let fresh = tx
                .query_row(
                    sql::SIGN_ONCE.sqlite(),
                    params![
                        s.receiver,
                        s.timestamp,
                        s.sign,
                        s.digest.as_slice(),
                        s.until_ms,
                        now_ms
                    ],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let _ = reply.send(fresh);
            Ok(0)
        }))
        .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub(in crate::store) async fn rate_pause(
        &self,
        key: String,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(sql::RATE_PAUSE.sqlite(), params![key, until_ms])
        }))
        .await
        .map(drop)
    }
}

/// The sliding-minute budget of a robot webhook (see [`crate::store::Store::rate_take`]).
pub(super) fn rate_take(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    per_minute: u32,
    now_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    let paused: Option<i64> = tx
        .query_row(
            "SELECT until_ms FROM robot_pauses WHERE key = ?1 AND until_ms > ?2",
            params![key, now_ms],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(until) = paused {
        return Ok(Some(until - now_ms));
    }
    let (count, oldest): (i64, Option<i64>) = tx.query_row(
        "SELECT count(*), min(at_ms) FROM robot_sends WHERE key = ?1 AND at_ms > ?2",
        params![key, now_ms - crate::store::types::RATE_WINDOW_MS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let wait = crate::store::types::rate_wait(count, oldest, per_minute, now_ms);
    if wait.is_none() {
        tx.execute(
            "INSERT INTO robot_sends (key, at_ms) VALUES (?1, ?2)",
            params![key, now_ms],
        )?;
    }
    Ok(wait)
}
