//! The composition root: the whole process as a value. [`App::start`] takes a validated
//! config, an open store and bound listeners, loads the config (one [`Loaded`] swapped in one
//! `ArcSwap`), resumes deliveries left running, and starts the callback server, the admin
//! listener, the delivery worker and the stream receivers. [`App::reload`] swaps a new
//! config in; [`App::shutdown`] stops taking work, drains, and waits for every part.
//! `hookgate serve` and the integration tests start the app through this same code.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::actions::replies::Replies;
use crate::clock::now_ms;
use crate::config::{Config, ServerConfig, StoreConfig};
use crate::delivery::Worker;
use crate::intake::Intake;
use crate::loaded::{Current, LoadError, Loaded};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::server::{Health, Role, Server};
use crate::store::{RequeueTarget, Store, StoreError};
use crate::stream::Hub;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("resuming deliveries: {0}")]
    Resume(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The sockets the app serves: callbacks, and the admin listener (`[server] admin_listen`).
pub struct Listeners {
    pub main: TcpListener,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds `[server] listen` and, when set, `admin_listen`.
    pub async fn bind(server: &ServerConfig) -> Result<Self, StartError> {
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let main = bind("server.listen", server.listen).await?;
        let admin = match server.admin_listen {
            Some(addr) => Some(bind("server.admin_listen", addr).await?),
            None => None,
        };
        Ok(Self { main, admin })
    }
}

/// Opens the store; a database that is down now (a restart, a failover) may be back soon, so
/// a PostgreSQL store is tried every 2 s until it opens or `give_up` resolves (then `None`).
/// A SQLite store, or a schema newer than this binary, fails at once.
pub async fn open_store(
    config: &StoreConfig,
    give_up: impl Future<Output = ()>,
) -> Result<Option<Store>, StoreError> {
    tokio::pin!(give_up);
    loop {
        match Store::open(config).await {
            Ok(store) => return Ok(Some(store)),
            Err(e) if config.url.is_some() && !matches!(e, StoreError::TooNew { .. }) => {
                error!(error = %e, "Cannot reach the store; trying again in 2 s.");
                tokio::select! {
                    () = &mut give_up => return Ok(None),
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The running process: its parts, and the state a reload replaces.
pub struct App {
    current: Current,
    store: Store,
    metrics: Arc<Metrics>,
    replies: Arc<Replies>,
    streams: Arc<Hub>,
    /// The config running now (a reload compares against it).
    config: tokio::sync::Mutex<Config>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    /// Wakes the scheduler after a reload.
    schedules: Arc<tokio::sync::Notify>,
    /// Reloads the admin API asks for: queued from the start, answered once
    /// [`App::run_until`] watches a file, refused (dropped) when it has none.
    reload_requests:
        std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<crate::admin::ReloadRequest>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Resolves once `stop` turns true.
fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + use<> {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl App {
    /// Loads `config` and starts every part on `listeners`.
    pub async fn start(
        config: Config,
        store: Store,
        listeners: Listeners,
    ) -> Result<Self, StartError> {
        let resumed = store.requeue(RequeueTarget::Running, now_ms(), 0).await?;
        if resumed > 0 {
            warn!(
                deliveries = resumed,
                "Deliveries in flight when hookgate stopped will run again."
            );
        }
        let metrics = Arc::new(Metrics::new());
        let replies = Arc::new(Replies::default());
        let loaded = Loaded::build(&config, &store, &metrics, &replies)?;
        let current: Current = Arc::new(arc_swap::ArcSwap::from_pointee(loaded));
        let intake = Arc::new(Intake::new(current.clone(), store.clone(), metrics.clone()));
        let streams = Arc::new(Hub::new(intake.clone(), replies.clone()));
        let schedules = Arc::new(tokio::sync::Notify::new());
        let scheduler = Scheduler::new(intake.clone(), schedules.clone());
        let worker_beat = Arc::new(AtomicI64::new(0));
        let health = Health {
            worker_beat: worker_beat.clone(),
            streams: streams.status.clone(),
        };
        let (stop, _) = watch::channel(false);
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        let admin = listeners.admin.as_ref().map(|_| {
            Arc::new(crate::admin::Admin::new(
                intake.clone(),
                streams.status.clone(),
                reload_tx,
                stop.subscribe(),
            )) as Arc<dyn crate::server::AdminPaths>
        });
        let server = Arc::new(Server::new(intake, health, admin));
        let addr = local_addr(&listeners.main);
        let admin_addr = listeners.admin.as_ref().map(local_addr);
        let worker = Worker::new(store.clone(), current.clone(), metrics.clone(), worker_beat);
        let mut tasks = vec![
            tokio::spawn(worker.run(stopped(&stop))),
            tokio::spawn(scheduler.run(stopped(&stop))),
            tokio::spawn(crate::retention::run(
                store.clone(),
                current.clone(),
                stopped(&stop),
            )),
        ];
        streams.apply(&config).await;
        if let Some(admin) = listeners.admin {
            let serve = crate::server::serve(admin, server.clone(), Role::Admin, stopped(&stop));
            tasks.push(tokio::spawn(serve));
        }
        let serve = crate::server::serve(listeners.main, server, Role::Main, stopped(&stop));
        tasks.push(tokio::spawn(serve));
        Ok(Self {
            current,
            store,
            metrics,
            replies,
            streams,
            config: tokio::sync::Mutex::new(config),
            addr,
            admin_addr,
            stop,
            schedules,
            reload_requests: std::sync::Mutex::new(Some(reload_rx)),
            tasks,
        })
    }

    /// Where callbacks are served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin listener serves, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Swaps in a validated config: requests and deliveries in flight finish with the old
    /// one; stream receivers that changed restart. On an error the running config stays.
    /// `[server] listen`, `admin_listen` and `[store]` take effect only after a restart.
    pub async fn reload(&self, config: Config) -> Result<(), LoadError> {
        let mut running = self.config.lock().await;
        let loaded = match Loaded::build(&config, &self.store, &self.metrics, &self.replies) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.metrics.reload("rejected");
                return Err(e);
            }
        };
        if config.server.listen != running.server.listen || config.store.path != running.store.path
        {
            warn!("server.listen and store.path take effect only after a restart.");
        }
        self.current.store(Arc::new(loaded));
        self.schedules.notify_one();
        self.streams.apply(&config).await;
        self.metrics.reload("ok");
        info!(
            receivers = config.receivers.len(),
            rules = config.rules.len(),
            "Config reloaded."
        );
        *running = config;
        Ok(())
    }

    /// Stops taking work, drains requests and deliveries in flight, closes the stream
    /// connections, and returns once every part has stopped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.streams.stop_all().await;
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Runs until `stop` resolves, reloading on `reloads` (SIGHUP and changes of the file),
    /// then shuts down.
    pub async fn run_until(self, stop: impl Future<Output = ()>, reloads: Option<Reloads>) {
        tokio::pin!(stop);
        let asked = self
            .reload_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match reloads {
            Some(mut reloads) => {
                reloads.asked = asked;
                tokio::select! {
                    () = &mut stop => {}
                    () = reloads.watch(&self) => {}
                }
            }
            None => {
                // Nothing to re-read: the admin API's reloads are refused at once.
                drop(asked);
                stop.await;
            }
        }
        self.shutdown().await;
    }
}

fn local_addr(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// How often the config file is checked for changes (SIGHUP reloads at once).
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// Where reloads come from: the config file (re-read when its contents change), SIGHUP, and
/// the admin API.
pub struct Reloads {
    pub path: PathBuf,
    pub env_file: Option<PathBuf>,
    #[cfg(unix)]
    pub hup: Option<tokio::signal::unix::Signal>,
    /// The admin API's requests (set by [`App::run_until`]).
    pub asked: Option<tokio::sync::mpsc::Receiver<crate::admin::ReloadRequest>>,
    /// [`file_digest`] of the file as it was read at start: a change made while the app
    /// was starting is a change too.
    pub loaded: Option<Vec<u8>>,
}

/// The SHA-256 of a config file's bytes (`None` when it cannot be read): what the watcher
/// compares.
pub fn file_digest(path: &std::path::Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().map(|b| {
        use sha2::Digest;
        sha2::Sha256::digest(&b).to_vec()
    })
}

impl Reloads {
    /// Reloads on SIGHUP and when the file's contents change: the new file is validated
    /// first; a file with problems is logged, problem by problem, and the running config
    /// stays. Never returns.
    async fn watch(mut self, app: &App) {
        let mut seen = self.loaded.take().or_else(|| file_digest(&self.path));
        let mut asked = self.asked.take();
        loop {
            let (forced, reply) = tokio::select! {
                () = self.hangup() => (true, None),
                Some(reply) = next_request(&mut asked) => (true, Some(reply)),
                () = tokio::time::sleep(RELOAD_POLL) => (false, None),
            };
            let now = file_digest(&self.path);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            let outcome = self.reload_file(app).await;
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Loads the file and swaps it in; what happened, for the admin API.
    async fn reload_file(&self, app: &App) -> Result<String, String> {
        let file = self.path.display().to_string();
        match crate::config::load(&self.path, self.env_file.as_deref()) {
            Ok(config) => match app.reload(config).await {
                Ok(()) => Ok(format!("{file} reloaded")),
                Err(e) => {
                    error!(file = %file, error = %e, "Config reload rejected; the running config stays.");
                    Err(e.to_string())
                }
            },
            Err(errors) => {
                for e in &errors.errors {
                    error!(file = %file, problem = %e, "Config reload rejected; the running config stays.");
                }
                app.metrics.reload("rejected");
                Err(errors.to_string())
            }
        }
    }

    /// Resolves on the next SIGHUP (never without a handler).
    async fn hangup(&mut self) {
        #[cfg(unix)]
        if let Some(h) = self.hup.as_mut() {
            h.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// The admin API's next reload request (never, without a channel).
async fn next_request(
    asked: &mut Option<tokio::sync::mpsc::Receiver<crate::admin::ReloadRequest>>,
) -> Option<crate::admin::ReloadRequest> {
    match asked {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
