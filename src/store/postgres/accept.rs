//! Storing callbacks: writer tasks each take every callback queued and store them with one
//! `unnest` insert per table in one transaction, the `cancel`s applied in their order within
//! the batch; a callback whose batch fails is answered with the error (the vendor retries).

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::deliveries::cancel;
use super::notify::Announcer;
use super::{ACCEPT_TIMEOUT, MAX_BATCH, Postgres, RETRIES, is_connection, is_race, unavailable};
use crate::event::Event;
use crate::store::{Cancel, NewDelivery, StoreError, Stored};
impl Postgres {
    pub(in crate::store) async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
        cancels: Vec<Cancel>,
    ) -> Result<Stored, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op = AcceptOp {
            event,
            deliveries,
            cancels,
            reply,
        };
        let queued = async {
            self.accepts
                .send(op)
                .await
                .map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        };
        match tokio::time::timeout(ACCEPT_TIMEOUT, queued).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(Arc::from(Box::<
                dyn std::error::Error + Send + Sync,
            >::from(
                "no commit within 3 s".to_owned(),
            )))),
        }
    }
}

pub(super) struct AcceptOp {
    event: Event,
    deliveries: Vec<NewDelivery>,
    cancels: Vec<Cancel>,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

/// A writer task: takes one queued callback and every other already queued, stores them in
/// one transaction, answers each after the commit. Ends when the store is dropped.
pub(super) async fn write_loop(
    pool: Pool,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<AcceptOp>>>,
    due: Arc<tokio::sync::Notify>,
    announcer: Arc<Announcer>,
    health: Arc<crate::store::Health>,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            batch
        };
        // Answered already (timed out): nothing to store for them.
        let batch: Vec<AcceptOp> = batch
            .into_iter()
            .filter(|op| !op.reply.is_closed())
            .collect();
        if batch.is_empty() {
            continue;
        }
        let result = store_batch(&pool, &batch).await;
        match result {
            Ok(stored) => {
                health.committed();
                let wake = batch
                    .iter()
                    .zip(&stored)
                    .any(|(op, s)| !s.duplicate && !op.deliveries.is_empty());
                for (op, s) in batch.into_iter().zip(stored) {
                    let _ = op.reply.send(Ok(s));
                }
                if wake {
                    due.notify_one();
                    announcer.announce();
                }
            }
            Err(e) => {
                let cause = crate::store::health::chain(&e);
                tracing::error!(error = %cause, batch = batch.len(), "Store commit failed; the vendor will retry.");
                health.failed(&e);
                for op in batch {
                    let _ = op.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

pub(super) async fn store_batch(
    pool: &Pool,
    batch: &[AcceptOp],
) -> Result<Vec<Stored>, StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = if batch
            .iter()
            .all(|op| op.deliveries.is_empty() && op.cancels.is_empty())
        {
            // Events only: one insert statement commits by itself, no BEGIN/COMMIT trips.
            insert_chunk(&client, batch).await
        } else {
            async {
                let tx = client.transaction().await?;
                let stored = insert_batch(&tx, batch).await?;
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(stored)
            }
            .await
        };
        match result {
            Ok(stored) => return Ok(stored),
            Err(e) if is_race(&e) && attempt <= RETRIES => {
                tracing::debug!(error = %e, "Batch lost a race with another replica; again.");
            }
            Err(e) if is_connection(&e) => return Err(unavailable(e)),
            Err(e) => return Err(StoreError::Commit(Arc::new(e))),
        }
    }
}

/// Stores the batch in order: the callbacks up to each one that cancels go in together,
/// then its cancels apply (so a cancel sees exactly what was stored before it).
pub(super) async fn insert_batch(
    tx: &Transaction<'_>,
    batch: &[AcceptOp],
) -> Result<Vec<Stored>, tokio_postgres::Error> {
    let mut stored = Vec::with_capacity(batch.len());
    let mut start = 0;
    for (i, op) in batch.iter().enumerate() {
        if op.cancels.is_empty() && i + 1 < batch.len() {
            continue;
        }
        let chunk = &batch[start..=i];
        stored.extend(insert_chunk(tx, chunk).await?);
        start = i + 1;
        if !op.cancels.is_empty() && stored.last().is_some_and(|s: &Stored| !s.duplicate) {
            for c in &op.cancels {
                cancel(tx, c, op.event.received_at_ms()).await?;
            }
        }
    }
    Ok(stored)
}

/// One `unnest` insert for the events (in key order, so concurrent batches lock in the same
/// order), one lookup for duplicates, one for delivery ids and one insert for the deliveries.
pub(super) async fn insert_chunk(
    tx: &impl GenericClient,
    chunk: &[AcceptOp],
) -> Result<Vec<Stored>, tokio_postgres::Error> {
    let order = first_of_each_key(chunk);
    let mut new = insert_events(tx, chunk, &order).await?;
    let mut ids = new.clone();
    if new.len() < order.len() {
        // Some keys were there already: their ids, for the duplicates' answers.
        for (key, id) in existing_ids(tx, chunk, &order).await? {
            ids.entry(key).or_insert(id);
        }
    }
    let mut stored = Vec::with_capacity(chunk.len());
    let mut firsts = Vec::new();
    for op in chunk {
        let k = (
            op.event.receiver().to_owned(),
            op.event.dedupe_key().to_owned(),
        );
        let id = ids.get(&k).copied().unwrap_or_default();
        // Only the first op with a new key owns it; later equal keys are duplicates.
        let duplicate = new.remove(&k).is_none();
        if !duplicate {
            firsts.push((id, op));
        }
        stored.push(Stored { id, duplicate });
    }
    let count: usize = firsts.iter().map(|(_, op)| op.deliveries.len()).sum();
    if count > 0 {
        insert_deliveries(tx, &firsts, count).await?;
    }
    Ok(stored)
}

/// The chunk's indexes sorted by (receiver, dedupe key), the first of equal keys only: the
/// one inserted.
fn first_of_each_key(chunk: &[AcceptOp]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chunk.len()).collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&chunk[a].event, &chunk[b].event);
        (ea.receiver(), ea.dedupe_key(), a).cmp(&(eb.receiver(), eb.dedupe_key(), b))
    });
    order.dedup_by(|b, a| {
        let (ea, eb) = (&chunk[*a].event, &chunk[*b].event);
        ea.receiver() == eb.receiver() && ea.dedupe_key() == eb.dedupe_key()
    });
    order
}

/// One column of the events at `order`.
fn column(chunk: &[AcceptOp], order: &[usize], f: &dyn Fn(&Event) -> String) -> Vec<String> {
    order.iter().map(|&i| f(&chunk[i].event)).collect()
}

/// Inserts the events at `order`; the ids of those that were new, by (receiver, key).
async fn insert_events(
    tx: &impl GenericClient,
    chunk: &[AcceptOp],
    order: &[usize],
) -> Result<HashMap<(String, String), i64>, tokio_postgres::Error> {
    let received: Vec<i64> = order
        .iter()
        .map(|&i| chunk[i].event.received_at_ms())
        .collect();
    let inserted = tx
        .query(
            &tx.prepare_cached(
            "INSERT INTO events (receiver, vendor, kind, dedupe_key, received_at_ms, raw)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
             ON CONFLICT (receiver, dedupe_key) DO NOTHING
             RETURNING id, receiver, dedupe_key").await?,
            &[
                &column(chunk, order, &|e| e.receiver().to_owned()),
                &column(chunk, order, &|e| e.vendor().as_str().to_owned()),
                &column(chunk, order, &|e| e.kind().to_owned()),
                &column(chunk, order, &|e| e.dedupe_key().to_owned()),
                &received,
                &column(chunk, order, &|e| e.raw().to_owned()),
            ],
        )
        .await?;
    Ok(inserted
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect())
}

/// The ids of the events at `order` as stored, by (receiver, key).
async fn existing_ids(
    tx: &impl GenericClient,
    chunk: &[AcceptOp],
    order: &[usize],
) -> Result<Vec<((String, String), i64)>, tokio_postgres::Error> {
    let existing = tx
        .query(
            &tx.prepare_cached(
                "SELECT e.id, e.receiver, e.dedupe_key FROM events e
                 JOIN unnest($1::text[], $2::text[]) AS k (receiver, dedupe_key)
                   ON e.receiver = k.receiver AND e.dedupe_key = k.dedupe_key",
            )
            .await?,
            &[
                &column(chunk, order, &|e| e.receiver().to_owned()),
                &column(chunk, order, &|e| e.dedupe_key().to_owned()),
            ],
        )
        .await?;
    Ok(existing
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect())
}

pub(super) async fn insert_deliveries(
    tx: &impl GenericClient,
    events: &[(i64, &AcceptOp)],
    count: usize,
) -> Result<(), tokio_postgres::Error> {
    let mut ids: Vec<i64> = tx
        .query(
            &tx.prepare_cached(
                "SELECT nextval('deliveries_id_seq') FROM generate_series(1::bigint, $1::bigint)",
            )
            .await?,
            &[&(count as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort_unstable();
    let mut ids = ids.into_iter();
    let mut cols = DeliveryColumns::default();
    for (event_id, op) in events {
        let received = op.event.received_at_ms();
        // The actions of one rule run in order: each after the previous one is done.
        let mut previous: Option<(&str, i64)> = None;
        for d in &op.deliveries {
            let id = ids.next().unwrap_or_default();
            let after = previous
                .filter(|(rule, _)| *rule == d.rule)
                .map(|(_, id)| id);
            cols.id.push(id);
            cols.event_id.push(*event_id);
            cols.rule.push(d.rule.clone());
            cols.action.push(d.action as i64);
            cols.kind.push(d.kind.clone());
            cols.status.push(if after.is_some() {
                "waiting"
            } else {
                "pending"
            });
            cols.after_id.push(after);
            cols.next.push(d.due_ms.max(received));
            cols.deadline.push(d.deadline_ms);
            cols.created.push(received);
            cols.key.push(d.key.clone());
            cols.spec.push(d.spec.clone());
            previous = Some((d.rule.as_str(), id));
        }
    }
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO deliveries (id, event_id, rule, action, kind, status, after_id,
                                 next_attempt_at_ms, deadline_ms, created_at_ms, updated_at_ms,
                                 correlation, spec)
         SELECT id, event_id, rule, action, kind, status, after_id, next_at, deadline, created,
                created, correlation, spec
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                     $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                     $11::text[], $12::text[])
              AS d (id, event_id, rule, action, kind, status, after_id, next_at, deadline,
                    created, correlation, spec)",
        )
        .await?,
        &[
            &cols.id,
            &cols.event_id,
            &cols.rule,
            &cols.action,
            &cols.kind,
            &cols.status,
            &cols.after_id,
            &cols.next,
            &cols.deadline,
            &cols.created,
            &cols.key,
            &cols.spec,
        ],
    )
    .await?;
    Ok(())
}

#[derive(Default)]
pub(super) struct DeliveryColumns {
    id: Vec<i64>,
    event_id: Vec<i64>,
    rule: Vec<String>,
    action: Vec<i64>,
    kind: Vec<String>,
    status: Vec<&'static str>,
    after_id: Vec<Option<i64>>,
    next: Vec<i64>,
    deadline: Vec<i64>,
    created: Vec<i64>,
    key: Vec<Option<String>>,
    spec: Vec<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Verified;
    use crate::event::Vendor;
    use crate::store::StoreConfig;
    use crate::store::{DeliveryFilter, DeliveryStatus};

    fn op(key: &str, deliveries: Vec<NewDelivery>, cancels: Vec<Cancel>) -> AcceptOp {
        let xml = format!("<xml><MsgType>text</MsgType><MsgId>{key}</MsgId></xml>");
        AcceptOp {
            event: Event::parse("r", Vendor::WeCom, Verified::new(xml), 1).unwrap(),
            deliveries,
            cancels,
            reply: oneshot::channel().0,
        }
    }

    fn timer() -> Vec<NewDelivery> {
        vec![NewDelivery {
            spec: None,
            rule: "r".into(),
            action: 0,
            kind: "log".into(),
            due_ms: 9_000,
            key: Some("k".into()),
            deadline_ms: i64::MAX,
        }]
    }

    /// One batch holding a timer, its cancel, a copy of the first callback and a new timer
    /// with the key: the cancel sees exactly what came before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_keeps_the_order_of_its_cancels() {
        let url = crate::store::tests::pg::fresh_url("batch");
        let store = Postgres::open(&url, &StoreConfig::postgres(&url), Arc::default())
            .await
            .unwrap();
        let cancel = Cancel {
            key: "k".into(),
            rules: vec![],
            reason: "off".into(),
        };
        let batch = vec![
            op("a", timer(), vec![]),
            op("b", vec![], vec![cancel]),
            op("a", timer(), vec![]),
            op("c", timer(), vec![]),
        ];
        let stored = store_batch(&store.pool, &batch).await.unwrap();
        let flags: Vec<bool> = stored.iter().map(|s| s.duplicate).collect();
        assert_eq!(flags, [false, false, true, false]);
        assert_eq!(stored[0].id, stored[2].id);
        let rows = store
            .deliveries(&DeliveryFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let of = |id| rows.iter().find(|d| d.event_id == id).unwrap().status;
        assert_eq!(rows.len(), 2);
        assert_eq!(of(stored[0].id), DeliveryStatus::Cancelled);
        assert_eq!(of(stored[3].id), DeliveryStatus::Pending);
    }
}
