//! WeCom AI bots (智能机器人, API mode, 长连接; streams.md §3): one WebSocket to
//! `wss://openws.work.weixin.qq.com`, `aibot_subscribe` with the bot id and secret as the first
//! frame, `{"cmd":"ping"}` heartbeats acknowledged by `errcode 0`, messages and events pushed
//! as `aibot_msg_callback` / `aibot_event_callback` (no ack exists; `msgid` dedupes). WeCom
//! keeps one connection per bot and kicks the older one (`disconnected_event`), so only the
//! replica holding the bot's lock in the store connects; the others wait on standby and take
//! over when it goes. A clean close is reconnected (the Python SDK stops there).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use super::{
    Backoff, CONNECT_TIMEOUT, Dialer, Ended, Failure, Link, State, Status, Ws, drive, incoming,
    stopped,
};
use crate::config::WecomAibot;
use crate::event::Vendor;
use crate::server::Gateway;

/// After `disconnected_event` (another client subscribed this bot) before trying again:
/// reconnecting at once would only kick the other client, and be kicked back.
const DISPLACED_WAIT: Duration = Duration::from_secs(60);
/// A message that could not be stored is tried again this many times (WeCom has no ack to
/// withhold, so it would not come back).
const STORE_TRIES: u32 = 5;

pub struct Client {
    name: String,
    config: WecomAibot,
    gw: Arc<Gateway>,
    dial: Dialer,
}

/// `{prefix}_{ms}_{8 hex}`, as the SDKs make request ids.
fn req_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{:08x}",
        crate::delivery::now_ms(),
        rand::random::<u32>()
    )
}

impl Link for Client {
    type Ws = Ws;

    fn name(&self) -> &str {
        &self.name
    }

    fn label(&self) -> &'static str {
        "WeCom AI bot connection"
    }

    /// As the SDKs: from 1 s, doubling, at most 30 s.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }

    async fn connect(&self) -> Result<Ws, Failure> {
        let mut ws = self
            .dial
            .websocket(&self.config.ws_url)
            .await
            .map_err(|e| Failure::Retry(format!("WebSocket: {e}")))?;
        let id = req_id("aibot_subscribe");
        let subscribe = json!({
            "cmd": "aibot_subscribe",
            "headers": {"req_id": id},
            "body": {"bot_id": self.config.bot_id, "secret": self.config.secret.expose()},
        });
        ws.send(Message::text(subscribe.to_string()))
            .await
            .map_err(|e| Failure::Retry(format!("aibot_subscribe: {e}")))?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
            while let Some(frame) = ws.next().await {
                if let Ok(Message::Text(t)) = frame
                    && let Ok(v) = serde_json::from_str::<Value>(&t)
                    && v["headers"]["req_id"] == id.as_str()
                {
                    return Some(v);
                }
            }
            None
        })
        .await;
        match answer {
            Ok(Some(v)) if v["errcode"].as_i64() == Some(0) => Ok(ws),
            Ok(Some(v)) => Err(Failure::Fatal(format!(
                "aibot_subscribe refused: errcode {} {} (check bot_id and secret, and that the bot uses 长连接 in API mode)",
                v["errcode"],
                v["errmsg"].as_str().unwrap_or("")
            ))),
            Ok(None) => Err(Failure::Retry(
                "closed before answering aibot_subscribe".into(),
            )),
            Err(_) => Err(Failure::Retry(
                "no answer to aibot_subscribe within 10 s".into(),
            )),
        }
    }

    async fn session(&self, mut ws: Ws, shutdown: &mut watch::Receiver<bool>) -> Ended<Ws> {
        let every = self.config.keepalive;
        let mut tick = tokio::time::interval(every);
        tick.reset();
        let mut last_seen = Instant::now();
        let mut worked = false;
        loop {
            tokio::select! {
                frame = ws.next() => {
                    last_seen = Instant::now();
                    let text = match incoming(frame, "WeCom") {
                        Ok(Some(Message::Text(t))) => t,
                        Ok(_) => continue,
                        Err(why) => return Ended::Lost(why, worked),
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    match frame["cmd"].as_str() {
                        Some("aibot_event_callback")
                            if frame["body"]["event"]["eventtype"] == "disconnected_event" =>
                        {
                            return Ended::Displaced(
                                "WeCom: a newer connection subscribed this bot (another client holds it)".into(),
                                DISPLACED_WAIT,
                            );
                        }
                        Some("aibot_msg_callback" | "aibot_event_callback") => {
                            worked = true;
                            self.store(&frame["body"]).await;
                        }
                        // Answers to our pings (and anything else) only prove the line is up.
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    if last_seen.elapsed() >= every * 2 {
                        return Ended::Lost(format!("no heartbeat answer for {} s: replaced", last_seen.elapsed().as_secs()), worked);
                    }
                    let ping = json!({"cmd": "ping", "headers": {"req_id": req_id("ping")}});
                    if let Err(e) = ws.send(Message::text(ping.to_string())).await {
                        return Ended::Lost(format!("ping: {e}"), worked);
                    }
                }
                () = stopped(shutdown) => {
                    let _ = ws.close(None).await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    async fn drain(&self, ws: Ws) {
        drop(ws);
    }
}

impl Client {
    pub fn new(name: String, config: WecomAibot, gw: Arc<Gateway>) -> Self {
        Self {
            dial: Dialer::new(&name),
            name,
            config,
            gw,
        }
    }

    /// A pushed message; tried again a few times if the store fails (nothing to withhold).
    async fn store(&self, body: &Value) {
        for attempt in 1..=STORE_TRIES {
            if super::accept(&self.gw, &self.name, Vendor::WecomAibot, body.to_string()).await {
                return;
            }
            if attempt < STORE_TRIES {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        warn!(receiver = %self.name, msgid = %body["msgid"], "A WeCom bot message could not be stored; WeCom does not push it again.");
    }
}

/// Runs the bot's connection on the replica that holds its lock in the store; on the others
/// the receiver is on standby until the holder lets go (stops, dies, loses the database).
pub async fn run(
    name: String,
    config: WecomAibot,
    gw: Arc<Gateway>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lock_name = format!("wecom_aibot:{}", config.bot_id);
    let every = config.keepalive;
    let link = Arc::new(Client::new(name.clone(), config, gw.clone()));
    loop {
        status.set(&name, State::Standby);
        let lock = tokio::select! {
            l = gw.store.lock(&lock_name) => l,
            () = stopped(&mut shutdown) => return,
        };
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                status.set(&name, State::Reconnecting(format!("bot lock: {e}")));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    () = stopped(&mut shutdown) => return,
                }
            }
        };
        info!(receiver = %name, "This replica holds the WeCom bot's connection.");
        let (stop, stopping) = watch::channel(false);
        let driver = tokio::spawn(drive(link.clone(), status.clone(), stopping));
        let done = loop {
            tokio::select! {
                () = stopped(&mut shutdown) => break true,
                () = tokio::time::sleep(every) => {
                    if !lock.alive().await {
                        warn!(receiver = %name, "Lost the store session that holds the bot's lock; letting the bot go so another replica can take it.");
                        break false;
                    }
                }
            }
        };
        let _ = stop.send(true);
        let _ = driver.await;
        drop(lock);
        if done {
            return;
        }
    }
}
