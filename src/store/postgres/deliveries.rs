//! The delivery state machine: claim what is due (`FOR UPDATE SKIP LOCKED`, with a lease),
//! finish with done (keeping its result for `steps`) / skipped / retry / defer / dead only
//! while the claim is ours (fencing on `claimed_by`), requeue, cancel by key or id with the
//! chain after it (recursive CTEs), and the upkeep that renews our leases and takes back
//! lapsed ones.

use deadpool_postgres::{GenericClient, Transaction};

use super::{Postgres, cached, db_error};
use crate::store::sql;
use crate::store::{Cancel, ClaimedDelivery, Outcome, RequeueTarget, StoreError, StoredEvent};
use tokio_postgres::types::ToSql;
impl Postgres {
    pub(in crate::store) async fn step_results(
        &self,
        event_id: i64,
        rule: &str,
    ) -> Result<Vec<(usize, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(sql::STEP_RESULTS.postgres(), &[&event_id, &rule])
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let action: i64 = r.get(0);
                (usize::try_from(action).unwrap_or(usize::MAX), r.get(1))
            })
            .collect())
    }

    pub(in crate::store) async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let claim = client
            .prepare_cached(
                "WITH due AS (
                     SELECT id FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at_ms <= $1
                     ORDER BY next_attempt_at_ms, id LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 ), claimed AS (
                     UPDATE deliveries d SET status = 'running', attempts = d.attempts + 1,
                            updated_at_ms = $1, claimed_by = $3, lease_until_ms = $1 + $4
                     FROM due WHERE d.id = due.id
                     RETURNING d.id, d.event_id, d.rule, d.action, d.kind, d.attempts, d.deadline_ms,
                               d.spec
                 )
                 SELECT c.id, c.rule, c.action, c.kind, c.attempts, c.deadline_ms,
                        e.id, e.receiver, e.vendor, e.kind, e.dedupe_key, e.received_at_ms, e.raw,
                        c.spec
                 FROM claimed c JOIN events e ON e.id = c.event_id ORDER BY c.id",
            )
            .await
            .map_err(db_error)?;
        let rows = client
            .query(&claim, &[&now_ms, &limit, &self.owner, &self.lease_ms])
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| ClaimedDelivery {
                id: r.get(0),
                rule: r.get(1),
                action: usize::try_from(r.get::<_, i64>(2)).unwrap_or(usize::MAX),
                kind: r.get(3),
                spec: r.get(13),
                attempts: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                deadline_ms: r.get(5),
                event: StoredEvent::from_row(
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get(12),
                ),
            })
            .collect())
    }

    /// Records the outcomes in one transaction, their statements pipelined on one
    /// connection: one commit (one sync) for the batch. Outcomes whose claim had lapsed
    /// change nothing (another replica runs them) and are logged.
    pub(in crate::store) async fn finish_many(
        &self,
        outcomes: std::sync::Arc<[(i64, Outcome)]>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let done = cached(&client, FINISH_DONE).await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let each = outcomes
            .iter()
            .map(|(id, outcome)| self.finish_in(&tx, &done, *id, outcome, now_ms));
        let changed = futures_util::future::try_join_all(each)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        for ((id, _), changed) in outcomes.iter().zip(&changed) {
            if !changed {
                tracing::warn!(
                    delivery = id,
                    "This replica's claim on the delivery had lapsed; another replica runs it."
                );
            }
        }
        if outcomes
            .iter()
            .any(|(_, o)| !matches!(o, Outcome::Dead { .. } | Outcome::Skipped { .. }))
        {
            self.due.notify_one();
        }
        Ok(())
    }

    /// One outcome's statements in `tx`; whether the claim was still ours. A dead or skipped
    /// delivery takes the rule's later actions with it (skipped).
    async fn finish_in(
        &self,
        tx: &Transaction<'_>,
        done: &tokio_postgres::Statement,
        id: i64,
        outcome: &Outcome,
        now_ms: i64,
    ) -> Result<bool, tokio_postgres::Error> {
        let changed = match outcome {
            Outcome::Done { result } => {
                tx.execute(done, &[&id, &self.owner, &now_ms, result])
                    .await?
            }
            Outcome::Retry { at_ms, error } => {
                let args: [&(dyn ToSql + Sync); 5] = [&id, &self.owner, at_ms, error, &now_ms];
                tx.execute(FINISH_RETRY, &args).await?
            }
            Outcome::Defer { at_ms } => {
                let args: [&(dyn ToSql + Sync); 4] = [&id, &self.owner, at_ms, &now_ms];
                tx.execute(FINISH_DEFER, &args).await?
            }
            Outcome::Dead { error } => {
                let dead = tx
                    .query_opt(FINISH_DEAD, &[&id, &self.owner, error, &now_ms])
                    .await?;
                if let Some(row) = &dead {
                    let action: i64 = row.get(0);
                    let args: [&(dyn ToSql + Sync); 3] = [&id, &now_ms, &action.to_string()];
                    tx.execute(sql::SKIP_AFTER_DEAD.postgres(), &args).await?;
                }
                u64::from(dead.is_some())
            }
            Outcome::Skipped { reason } => {
                let skipped = tx
                    .query_opt(FINISH_SKIPPED, &[&id, &self.owner, reason, &now_ms])
                    .await?;
                if let Some(row) = &skipped {
                    let action: i64 = row.get(0);
                    let why =
                        format!("skipped: action {action} of the rule was skipped ({reason})");
                    let args: [&(dyn ToSql + Sync); 3] = [&id, &now_ms, &why];
                    tx.execute(sql::SKIP_AFTER_FALSE.postgres(), &args).await?;
                }
                u64::from(skipped.is_some())
            }
        };
        Ok(changed > 0)
    }

    pub(in crate::store) async fn requeue(
        &self,
        target: RequeueTarget,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let n = match target {
            RequeueTarget::Id(id) => {
                let n = tx
                    .execute(sql::REQUEUE_ONE.postgres(), &[&id, &now_ms, &deadline_ms])
                    .await
                    .map_err(db_error)?;
                if n > 0 {
                    // Its skipped successors wait for it again.
                    tx.execute(sql::UNSKIP.postgres(), &[&id, &now_ms])
                        .await
                        .map_err(db_error)?;
                }
                n
            }
            // Claims whose owner stopped renewing them: run again (at-least-once). Claims of
            // live replicas are theirs to finish.
            RequeueTarget::Running => tx
                .execute(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = $1,
                            updated_at_ms = $1, claimed_by = NULL, lease_until_ms = NULL
                     WHERE status = 'running' AND lease_until_ms <= $1",
                    &[&now_ms],
                )
                .await
                .map_err(db_error)?,
            RequeueTarget::AllDead => tx
                .execute(sql::REQUEUE_DEAD.postgres(), &[&now_ms, &deadline_ms])
                .await
                .map_err(db_error)?,
        };
        if n > 0 {
            // In the transaction (sent on commit): `deliveries retry` is a process that ends
            // right after.
            tx.execute("SELECT pg_notify($1, '')", &[&self.announcer.channel])
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        if n > 0 {
            self.due.notify_one();
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Renews this replica's claims, frees lapsed ones, forgets old rate entries; how many
    /// claims were freed.
    pub(in crate::store) async fn maintain(&self, now_ms: i64) -> Result<usize, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE deliveries SET lease_until_ms = $1::bigint + $2::bigint
                 WHERE status = 'running' AND claimed_by = $3",
                &[&now_ms, &self.lease_ms, &self.owner],
            )
            .await
            .map_err(db_error)?;
        client
            .execute(
                "DELETE FROM robot_sends WHERE at_ms <= $1",
                &[&(now_ms - crate::store::types::RATE_WINDOW_MS)],
            )
            .await
            .map_err(db_error)?;
        client
            .execute("DELETE FROM robot_signs WHERE until_ms <= $1", &[&now_ms])
            .await
            .map_err(db_error)?;
        drop(client);
        let freed = self.requeue(RequeueTarget::Running, now_ms, 0).await?;
        if freed > 0 {
            tracing::warn!(
                deliveries = freed,
                "Claims of a replica that stopped renewing them have lapsed; running them here."
            );
        }
        Ok(freed)
    }

    pub(in crate::store) async fn cancel_now(
        &self,
        key: Option<String>,
        id: Option<i64>,
        reason: String,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let n = match (key, id) {
            (Some(key), _) => {
                let c = Cancel {
                    key,
                    rules: Vec::new(),
                    reason,
                };
                cancel(&tx, &c, now_ms).await
            }
            (None, Some(id)) => {
                let roots = "id = $1 AND CAST($4 AS TEXT[]) IS NOT NULL";
                cancel_ids(&tx, roots, &id, &[], &reason, now_ms).await
            }
            (None, None) => Ok(0),
        }
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(n)
    }
}

/// Calls off the pending and waiting deliveries with the cancel's key (of its rules, if
/// any), and the later actions of their rules that wait for them.
pub(super) async fn cancel(
    tx: &Transaction<'_>,
    c: &Cancel,
    now_ms: i64,
) -> Result<usize, tokio_postgres::Error> {
    cancel_ids(
        tx,
        "correlation = $1 AND (cardinality(CAST($4 AS TEXT[])) = 0 OR rule = ANY($4))",
        &c.key,
        &c.rules,
        &c.reason,
        now_ms,
    )
    .await
}

/// Cancels the pending or waiting deliveries `roots` selects (with `$1` = `first`, `$4` =
/// `rules`, which it must name) and their waiting successors.
pub(super) async fn cancel_ids(
    tx: &Transaction<'_>,
    roots: &str,
    first: &(dyn tokio_postgres::types::ToSql + Sync),
    rules: &[String],
    reason: &str,
    now_ms: i64,
) -> Result<usize, tokio_postgres::Error> {
    let statement = sql::cancel_chain(sql::Dialect::Postgres, roots);
    let n = tx
        .execute(&statement, &[first, &reason, &now_ms, &rules])
        .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// A finish applies only while the claim is ours: after a lost lease another replica owns
/// the row (`$1` the delivery, `$2` this replica).
macro_rules! mine {
    () => {
        "id = $1 AND status = 'running' AND claimed_by = $2"
    };
}

/// Done, and the rule's next action (if waiting for it) is due (`$3` now).
const FINISH_DONE: &str = concat!(
    "WITH done AS (
         UPDATE deliveries SET status = 'done', updated_at_ms = $3, lease_until_ms = NULL,
                result = $4, ",
    sql::history!("json_build_object", "done", "$3", "NULL"),
    "
         WHERE ",
    mine!(),
    " RETURNING id
     ), next AS (
         UPDATE deliveries SET status = 'pending', updated_at_ms = $3,
                next_attempt_at_ms = greatest(next_attempt_at_ms, $3)
         WHERE after_id IN (SELECT id FROM done) AND status = 'waiting'
     )
     SELECT 1 FROM done"
);

/// Failed: due again at `$3`, with the error `$4` (`$5` now).
const FINISH_RETRY: &str = concat!(
    "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = $3,
            last_error = $4, updated_at_ms = $5, lease_until_ms = NULL, ",
    sql::history!("json_build_object", "retry", "$5", "$4"),
    "
     WHERE ",
    mine!()
);

/// Not an attempt (a rate budget): due again at `$3`, the attempt given back (`$4` now).
const FINISH_DEFER: &str = concat!(
    "UPDATE deliveries SET status = 'pending', next_attempt_at_ms = $3,
            attempts = greatest(attempts - 1, 0), updated_at_ms = $4, lease_until_ms = NULL
     WHERE ",
    mine!()
);

/// Skipped with the reason `$3` (`$4` now); its action's index comes back.
const FINISH_SKIPPED: &str = concat!(
    "UPDATE deliveries SET status = 'skipped', last_error = $3, updated_at_ms = $4,
            lease_until_ms = NULL, ",
    sql::history!("json_build_object", "skipped", "$4", "$3"),
    "
     WHERE ",
    mine!(),
    " RETURNING action"
);

/// Dead with the error `$3` (`$4` now); its action's index comes back.
const FINISH_DEAD: &str = concat!(
    "UPDATE deliveries SET status = 'dead', last_error = $3, updated_at_ms = $4,
            lease_until_ms = NULL, ",
    sql::history!("json_build_object", "dead", "$4", "$3"),
    "
     WHERE ",
    mine!(),
    " RETURNING action"
);
