//! Stream ingress: receivers that connect out to the vendor over a long-lived WebSocket
//! (DingTalk Stream, Feishu/Lark long connection, WeCom AI bots) instead of waiting for
//! callbacks. Each event goes through the same path as a callback ([`crate::intake`]:
//! rules planned, stored durably, deduplicated) and is acknowledged to the vendor only after
//! the commit. This module holds what the three share: the status `/readyz` and `/metrics`
//! show, the connection driver and its backoff, and the dialer (rustls, timeouts); `hub.rs`
//! what they run with and how a reload starts and stops them.

pub mod dingtalk;
pub mod feishu;
mod hub;
pub mod wecom;

pub use hub::Hub;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tracing::{error, info, warn};

use crate::metrics::{Metrics, ReceiverLabels, StreamStateLabels};

/// A stream receiver's connection state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    /// Lost or refused; trying again after a backoff. Why.
    Reconnecting(String),
    /// Another replica holds the connection (one per WeCom bot); this one takes over if it dies.
    Standby,
    /// Stopped for good until the config is fixed (bad credentials, connection limit). Why.
    Failed(String),
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting(_) => "reconnecting",
            Self::Standby => "standby",
            Self::Failed(_) => "failed",
        }
    }

    const NAMES: [&'static str; 5] = [
        "connecting",
        "connected",
        "reconnecting",
        "standby",
        "failed",
    ];
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    reconnects: u64,
    last_message_ms: Option<i64>,
}

/// A stream receiver's connection as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionView {
    pub receiver: String,
    pub state: &'static str,
    pub reconnects: u64,
    pub last_message_ms: Option<i64>,
}

/// Every stream receiver's state, for `/readyz` and `/metrics`.
pub struct Status {
    entries: Mutex<BTreeMap<String, Entry>>,
    metrics: Arc<Metrics>,
}

impl Status {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            entries: Mutex::default(),
            metrics,
        }
    }

    fn with<T>(&self, receiver: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(receiver.to_owned()).or_insert(Entry {
            state: State::Connecting,
            reconnects: 0,
            last_message_ms: None,
        });
        f(entry)
    }

    pub fn set(&self, receiver: &str, state: State) {
        for name in State::NAMES {
            self.metrics
                .stream_state
                .get_or_create(&StreamStateLabels {
                    receiver: receiver.to_owned(),
                    state: name.to_owned(),
                })
                .set(i64::from(name == state.name()));
        }
        self.with(receiver, |e| e.state = state);
    }

    /// A connection after the first one.
    pub fn reconnected(&self, receiver: &str) {
        self.metrics
            .stream_reconnects
            .get_or_create(&ReceiverLabels {
                receiver: receiver.to_owned(),
            })
            .inc();
        self.with(receiver, |e| e.reconnects += 1);
    }

    /// An event or message arrived.
    pub fn message(&self, receiver: &str) {
        let now = crate::clock::now_ms();
        self.metrics
            .stream_last_message
            .get_or_create(&ReceiverLabels {
                receiver: receiver.to_owned(),
            })
            .set(now as f64 / 1000.0);
        self.with(receiver, |e| e.last_message_ms = Some(now));
    }

    /// A receiver no longer configured.
    pub fn remove(&self, receiver: &str) {
        for name in State::NAMES {
            self.metrics.stream_state.remove(&StreamStateLabels {
                receiver: receiver.to_owned(),
                state: name.to_owned(),
            });
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(receiver);
    }

    /// Each stream receiver's state now, for the admin API.
    pub fn snapshot(&self) -> Vec<ConnectionView> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .map(|(receiver, e)| ConnectionView {
                receiver: receiver.clone(),
                state: e.state.name(),
                reconnects: e.reconnects,
                last_message_ms: e.last_message_ms,
            })
            .collect()
    }

    /// One line per stream receiver for `/readyz`, and whether any has failed for good.
    pub fn report(&self) -> (String, bool) {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut failed = false;
        for (name, e) in entries.iter() {
            let why = match &e.state {
                State::Reconnecting(why) | State::Failed(why) => format!(" ({why})"),
                _ => String::new(),
            };
            failed |= matches!(e.state, State::Failed(_));
            let last = e.last_message_ms.map_or_else(
                || "no message yet".to_owned(),
                |t| format!("last message {} s ago", (crate::clock::now_ms() - t) / 1000),
            );
            out.push_str(&format!(
                "stream {name}: {}{why}, {} reconnects, {last}\n",
                e.state.name(),
                e.reconnects
            ));
        }
        (out, failed)
    }
}

/// Jittered exponential backoff: `first`, doubling, at most `cap`, each wait between 80% and
/// 120% of the step (no two replicas reconnect in lockstep).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            step: first,
        }
    }

    /// The next wait.
    pub fn wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        let ms = step.as_millis() as u64;
        let jitter = rand::random_range(0..=ms * 2 / 5);
        Duration::from_millis(ms * 4 / 5 + jitter)
    }

    /// After a connection that worked: start from `first` again.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

/// A vendor's WebSocket.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Discovery and handshakes each get this long.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a stream client reaches its vendor: HTTPS for discovery, ws(s) for the stream, both
/// with rustls (ring, the system's roots) and [`CONNECT_TIMEOUT`].
pub(crate) struct Dialer {
    pub http: reqwest::Client,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Dialer {
    pub fn new(receiver: &str) -> Self {
        let tls = crate::tls::system_client()
            .map_err(|e| error!(receiver = %receiver, error = %e, "No TLS for wss:// connections."))
            .ok()
            .map(Arc::new);
        Self {
            http: crate::tls::http_builder()
                .timeout(CONNECT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            tls,
        }
    }

    /// Opens the WebSocket at `url`; a handshake that takes too long is an I/O timeout.
    pub async fn websocket(&self, url: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let handshake =
            tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector);
        match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Ok(result) => result.map(|(ws, _)| ws),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no handshake within 10 s",
            )
            .into()),
        }
    }
}

/// What came off a socket: `Ok(Some)` a text or binary frame to handle, `Ok(None)` nothing to
/// do (ping, pong), `Err` why the connection is over.
pub(crate) fn incoming(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    vendor: &str,
) -> Result<Option<Message>, String> {
    match frame {
        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => Ok(Some(m)),
        Some(Ok(Message::Close(c))) => Err(format!(
            "closed by {vendor} ({})",
            c.map_or_else(|| "no reason".into(), |c| c.to_string())
        )),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(format!("read: {e}")),
        None => Err("connection closed".into()),
    }
}

/// A frame's answer, once what it carries is queued for the store: the frame to send back,
/// if any, and whether the vendor asked for a new connection. A connection keeps up to
/// [`Hub::in_flight`] of them in a [`FuturesOrdered`] and sends each as it resolves, in the
/// order the frames came.
pub(crate) type Answer<'a> = Pin<Box<dyn Future<Output = (Option<Message>, bool)> + Send + 'a>>;

/// Waits for the frames still being stored and sends their answers (best effort: the
/// connection is going away).
pub(crate) async fn answer_all(ws: &mut Ws, in_flight: &mut FuturesOrdered<Answer<'_>>) {
    while let Some((reply, _)) = in_flight.next().await {
        if let Some(reply) = reply {
            let _ = ws.send(reply).await;
        }
    }
}

/// Why no connection came up.
pub(crate) enum Failure {
    /// Credentials, subscriptions or limits refused: retrying would only hammer the vendor.
    Fatal(String),
    Retry(String),
}

/// How a session ended.
pub(crate) enum Ended<W> {
    Shutdown,
    /// The server asked for a new connection; the old one still delivers until it closes.
    GoAway(Box<W>),
    /// Gone (closed, dropped, silent); whether it had delivered anything.
    Lost(String, bool),
    /// Another connection took the vendor's only slot: wait this long before trying again.
    Displaced(String, Duration),
}

/// One vendor's long connection: how to open it, run it and let an old one finish.
pub(crate) trait Link: Send + Sync + 'static {
    type Ws: Send + 'static;
    fn name(&self) -> &str;
    /// "DingTalk stream", for logs.
    fn label(&self) -> &'static str;
    fn backoff(&self) -> Backoff;
    fn connect(&self) -> impl Future<Output = Result<Self::Ws, Failure>> + Send;
    fn session(
        &self,
        ws: Self::Ws,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = Ended<Self::Ws>> + Send;
    /// After a go-away: keep answering what the old connection delivers until it closes.
    fn drain(&self, ws: Self::Ws) -> impl Future<Output = ()> + Send;
}

/// Keeps `link` connected until `shutdown`: reconnects with backoff (reset after a
/// connection that delivered), opens the new connection before letting a go-away one finish,
/// stops and reports `failed` on a fatal refusal.
pub(crate) async fn drive<L: Link>(
    link: Arc<L>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = link.name().to_owned();
    let label = link.label();
    let mut backoff = link.backoff();
    let mut draining = tokio::task::JoinSet::new();
    let mut connections = 0u64;
    while !*shutdown.borrow() {
        let ws = tokio::select! {
            c = link.connect() => c,
            () = stopped(&mut shutdown) => break,
        };
        let wait = match ws {
            Ok(ws) => {
                connections += 1;
                if connections > 1 {
                    status.reconnected(&name);
                }
                status.set(&name, State::Connected);
                info!(receiver = %name, "{label} connected.");
                match link.session(ws, &mut shutdown).await {
                    Ended::Shutdown => break,
                    Ended::GoAway(old) => {
                        info!(receiver = %name, "{label}: asked for a new connection; opening it before the old one closes.");
                        backoff.reset();
                        let link = link.clone();
                        draining.spawn(async move { link.drain(*old).await });
                        continue;
                    }
                    Ended::Lost(why, worked) => {
                        if worked {
                            backoff.reset();
                        }
                        let wait = backoff.wait();
                        warn!(receiver = %name, reason = %why, retry_in_ms = wait.as_millis() as u64, "{label} connection lost.");
                        status.set(&name, State::Reconnecting(why));
                        wait
                    }
                    Ended::Displaced(why, wait) => {
                        warn!(receiver = %name, reason = %why, retry_in_s = wait.as_secs(), "{label} displaced by another connection.");
                        status.set(&name, State::Reconnecting(why));
                        wait
                    }
                }
            }
            Err(Failure::Fatal(why)) => {
                error!(receiver = %name, reason = %why, "{label} refused; not retrying until the config is fixed.");
                status.set(&name, State::Failed(why));
                stopped(&mut shutdown).await;
                break;
            }
            Err(Failure::Retry(why)) => {
                let wait = backoff.wait();
                warn!(receiver = %name, reason = %why, retry_in_ms = wait.as_millis() as u64, "{label} connection failed.");
                status.set(&name, State::Reconnecting(why));
                wait
            }
        };
        while draining.try_join_next().is_some() {}
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut shutdown) => break,
        }
    }
    draining.abort_all();
}

/// Waits until `shutdown` is true; for `select!` arms.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for step in [1u64, 2, 4, 8, 8, 8] {
            let d = b.wait();
            assert!(
                d >= Duration::from_millis(step * 800) && d <= Duration::from_millis(step * 1200),
                "{step}: {d:?}"
            );
        }
        b.reset();
        assert!(b.wait() <= Duration::from_millis(1200));
    }
}
