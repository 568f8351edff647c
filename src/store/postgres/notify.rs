//! Waking the workers: a replica that commits new deliveries NOTIFYs a channel (named after
//! the schema) that every replica LISTENs to, and the earliest due time for the poll.

use crate::store::sql;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::oneshot;

use super::{Postgres, db_error, unavailable};
use crate::store::StoreError;
impl Postgres {
    pub(in crate::store) fn due_notify(&self) -> Arc<tokio::sync::Notify> {
        self.due.clone()
    }

    pub(in crate::store) async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(sql::NEXT_DUE.postgres(), &[])
            .await
            .map_err(db_error)?;
        Ok(row.get(0))
    }
}

/// Tells the other replicas (NOTIFY) that deliveries are due; one NOTIFY at a time, another
/// after it if more work was committed meanwhile.
pub(super) struct Announcer {
    pub(super) pool: Pool,
    pub(super) channel: String,
    pub(super) running: std::sync::atomic::AtomicBool,
    pub(super) dirty: std::sync::atomic::AtomicBool,
}

impl Announcer {
    pub(super) fn announce(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.dirty.store(true, SeqCst);
        if self.running.swap(true, SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                while this.dirty.swap(false, SeqCst) {
                    let sent = async {
                        let client = this.pool.get().await.map_err(unavailable)?;
                        client
                            .execute("SELECT pg_notify($1, '')", &[&this.channel])
                            .await
                            .map_err(db_error)
                    };
                    if let Err(e) = sent.await {
                        // The others find the work at their next poll.
                        tracing::debug!(error = %e, "NOTIFY failed.");
                    }
                }
                this.running.store(false, SeqCst);
                if !this.dirty.load(SeqCst) || this.running.swap(true, SeqCst) {
                    return;
                }
            }
        });
    }
}

/// The NOTIFY channel of a schema (channels are per database; identifiers at most 63 bytes).
pub(super) fn due_channel(schema: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(schema.as_bytes());
    let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("hookgate_due_{tag}")
}

/// Keeps a connection LISTENing on `channel` and wakes this process's worker on each NOTIFY;
/// reconnects after a loss, ends when `stop` is dropped.
pub(super) async fn listen(
    pg: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    channel: String,
    due: Arc<tokio::sync::Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let session = async {
            let (client, mut connection) =
                pg.connect(tls.clone()).await.map_err(|e| e.to_string())?;
            let messages = async {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                            due.notify_one();
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return e.to_string(),
                        None => return "closed".to_owned(),
                    }
                }
            };
            let subscribe = async {
                client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .map_err(|e| e.to_string())?;
                // Work committed while this was not listening.
                due.notify_one();
                std::future::pending::<Result<(), String>>().await
            };
            tokio::select! {
                why = messages => Err(why),
                r = subscribe => r,
            }
        };
        tokio::select! {
            r = session => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "LISTEN connection lost; the worker polls meanwhile.");
                }
            }
            _ = &mut stop => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = &mut stop => return,
        }
    }
}
