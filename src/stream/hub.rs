//! What the stream receivers run with ([`Hub`]: the intake, their status, the WeCom reply
//! registry) and their tasks: a reload starts new receivers, stops removed ones and restarts
//! changed ones; the others keep their connection. [`Hub::accept`] is their way into the
//! store, the same as a callback's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use sha2::Digest;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{State, Status, dingtalk, drive, feishu, wecom};
use crate::actions::replies::Replies;
use crate::config::{Config, Credentials, Receiver};
use crate::crypto::Verified;
use crate::event::{Event, Vendor};
use crate::intake::Intake;

/// Messages of one connection being stored at once, on a store that commits in order.
const IN_FLIGHT: usize = 256;

/// What every stream receiver shares for the life of the process.
pub struct Hub {
    pub intake: Arc<Intake>,
    /// The receivers' connections, for `/readyz` and `/metrics`.
    pub status: Arc<Status>,
    /// The WeCom AI bot connections held here, for replies.
    pub replies: Arc<Replies>,
    tasks: tokio::sync::Mutex<HashMap<String, Task>>,
}

impl Hub {
    pub fn new(intake: Arc<Intake>, replies: Arc<Replies>) -> Self {
        Self {
            status: Arc::new(Status::new(intake.metrics().clone())),
            intake,
            replies,
            tasks: tokio::sync::Mutex::default(),
        }
    }

    /// How many messages of one connection may be stored at once, so the store commits them
    /// together: many when the store commits them in the order they were handed over, else
    /// one (a later message must never commit first: it may cancel what an earlier one
    /// starts).
    pub(crate) fn in_flight(&self) -> usize {
        if self.intake.store().commits_in_order() {
            IN_FLIGHT
        } else {
            1
        }
    }

    /// Stores a message that came over a stream, with the deliveries its rules plan; whether it
    /// is safely committed (only then may it be acknowledged).
    pub(crate) async fn accept(&self, receiver: &str, vendor: Vendor, raw: String) -> bool {
        self.queue(receiver, vendor, raw).await.await
    }

    /// [`Hub::accept`] in two steps: returns once the message is queued for the store (so
    /// messages queued one after another commit in that order on a store that
    /// [commits in order](crate::store::Store::commits_in_order)); the future it gives
    /// resolves to whether it is committed.
    pub(crate) async fn queue<'a>(
        &'a self,
        receiver: &'a str,
        vendor: Vendor,
        raw: String,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let event = match Event::parse(receiver, vendor, Verified::new(raw), crate::clock::now_ms())
        {
            Ok(e) => e,
            Err(e) => {
                warn!(receiver = %receiver, error = %e, "A stream message that is not a JSON object; acknowledged and dropped.");
                self.intake
                    .metrics()
                    .callback(receiver, vendor.as_str(), "rejected", "malformed");
                return Box::pin(std::future::ready(true));
            }
        };
        let (kind, key) = (event.kind().to_owned(), event.dedupe_key().to_owned());
        let started = Instant::now();
        let queued = self.intake.commit_now_queued(event).await;
        Box::pin(async move {
            let result = match queued {
                Ok(committed) => committed.await,
                Err(e) => Err(e),
            };
            self.intake
                .metrics()
                .latency(receiver, started.elapsed().as_secs_f64());
            match result {
                Ok(committed) => {
                    let stored = committed.stored;
                    self.status.message(receiver);
                    let outcome = if stored.duplicate {
                        "duplicate"
                    } else {
                        "accepted"
                    };
                    self.intake
                        .metrics()
                        .callback(receiver, vendor.as_str(), outcome, "");
                    info!(receiver = %receiver, kind = %kind, event_id = stored.id, duplicate = stored.duplicate, dedupe_key = %key, "Stream event accepted.");
                    true
                }
                Err(e) => {
                    self.intake
                        .metrics()
                        .callback(receiver, vendor.as_str(), "error", "store");
                    error!(receiver = %receiver, kind = %kind, error = %e, "Could not store the stream event; not acknowledging it, so the vendor pushes it again.");
                    false
                }
            }
        })
    }

    /// Brings the running stream receivers in line with `config`: starts new ones, stops
    /// removed ones, restarts changed ones (each change logged); unchanged ones keep their
    /// connection.
    pub async fn apply(self: &Arc<Self>, config: &Config) {
        let mut running = self.tasks.lock().await;
        let wanted: HashMap<&str, &Receiver> = config
            .receivers
            .iter()
            .filter(|r| r.is_stream())
            .map(|r| (r.name.as_str(), r))
            .collect();
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, task)| {
                wanted
                    .get(name.as_str())
                    .is_none_or(|r| fingerprint(r) != task.fingerprint)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(task) = running.remove(&name) {
                info!(receiver = %name, "Stopping the stream receiver (removed or changed).");
                let _ = task.stop.send(true);
                let _ = task.handle.await;
                self.status.remove(&name);
            }
        }
        for (name, receiver) in wanted {
            if running.contains_key(name) {
                continue;
            }
            self.status.set(name, State::Connecting);
            let (stop, stopping) = watch::channel(false);
            let (hub, r) = (self.clone(), receiver.clone());
            let handle = tokio::spawn(async move { run(r, hub, stopping).await });
            running.insert(
                name.to_owned(),
                Task {
                    fingerprint: fingerprint(receiver),
                    stop,
                    handle,
                },
            );
        }
    }

    /// Stops every stream receiver (closing its connection) and waits for them.
    pub async fn stop_all(&self) {
        let mut running = self.tasks.lock().await;
        for (_, task) in running.drain() {
            let _ = task.stop.send(true);
            let _ = task.handle.await;
        }
    }
}

struct Task {
    /// What the receiver was started with (secrets included: a new secret restarts it).
    fingerprint: String,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

fn fingerprint(r: &Receiver) -> String {
    let secret = match &r.credentials {
        Credentials::DingTalkStream(c) => c.client_secret.expose().clone(),
        Credentials::FeishuWs(c) => c.app_secret.expose().clone(),
        Credentials::WecomAibot(c) => c.secret.expose().clone(),
        _ => String::new(),
    };
    let digest = sha2::Sha256::digest(format!("{:?}\n{secret}", r.credentials).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(receiver: Receiver, hub: Arc<Hub>, shutdown: watch::Receiver<bool>) {
    let status = hub.status.clone();
    match &receiver.credentials {
        Credentials::DingTalkStream(c) => {
            let link = dingtalk::Client::new(receiver.name.clone(), c.clone(), hub);
            drive(Arc::new(link), status, shutdown).await;
        }
        Credentials::FeishuWs(c) => {
            let link = feishu::Client::new(receiver.name.clone(), c.clone(), hub);
            drive(Arc::new(link), status, shutdown).await;
        }
        Credentials::WecomAibot(c) => {
            wecom::run(receiver.name.clone(), c.clone(), hub, status, shutdown).await;
        }
        // Not stream receivers: `spawn` passes only those.
        _ => {}
    }
}
