//! WeCom AI bots (智能机器人, API mode, 长连接; streams.md §3): one WebSocket to
//! `wss://openws.work.weixin.qq.com`, `aibot_subscribe` with the bot id and secret as the first
//! frame, `{"cmd":"ping"}` heartbeats acknowledged by `errcode 0`, messages and events pushed
//! as `aibot_msg_callback` / `aibot_event_callback` (no ack exists; `msgid` dedupes). WeCom
//! keeps one connection per bot and kicks the older one (`disconnected_event`), so only the
//! replica holding the bot's lock in the store connects; the others wait on standby and take
//! over when it goes. A clean close is reconnected (the Python SDK stops there).
//!
//! Replies (`wecom_aibot_reply`) go out over the connection as `aibot_respond_msg` (welcome,
//! card update) carrying the push's `req_id`, one at a time per `req_id`, each settled by
//! WeCom's receipt (`errcode`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use super::{
    Backoff, CONNECT_TIMEOUT, Dialer, Ended, Failure, Hub, Link, State, Status, Ws, drive,
    incoming, stopped,
};
use crate::actions::replies::{Outgoing, RECEIPT_WAIT, Replies, ReplyError, receipt};
use crate::config::WecomAibot;
use crate::event::Vendor;

/// After `disconnected_event` (another client subscribed this bot) before trying again:
/// reconnecting at once would only kick the other client, and be kicked back.
const DISPLACED_WAIT: Duration = Duration::from_secs(60);
/// Messages held for the store at most: WeCom has no ack to withhold and never pushes a
/// message again, so one the store cannot take now waits in memory (in order) and is tried
/// again until it can, while the connection goes on. With this many waiting, the connection
/// reads no more frames until the store takes some (TCP holds the rest back at WeCom).
const HELD_MAX: usize = 10_000;

/// Takes the connection out of [`Replies`] when its session ends, however it ends.
struct Registered<'a> {
    replies: &'a Replies,
    receiver: &'a str,
    link: mpsc::Sender<Outgoing>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.replies.unregister(self.receiver, &self.link);
    }
}

/// Replies sent and waiting for their receipt, by req_id, with the ones queued behind them.
#[derive(Default)]
struct InFlight {
    waiting: HashMap<String, (oneshot::Sender<Result<(), ReplyError>>, Instant)>,
    queued: HashMap<String, VecDeque<Outgoing>>,
}

impl InFlight {
    /// Sends `out` now, or queues it behind the reply still waiting for the same req_id.
    async fn submit(&mut self, ws: &mut Ws, out: Outgoing) -> Result<(), String> {
        if self.waiting.contains_key(&out.req_id) {
            self.queued
                .entry(out.req_id.clone())
                .or_default()
                .push_back(out);
            return Ok(());
        }
        let frame = json!({"cmd": out.cmd, "headers": {"req_id": out.req_id}, "body": out.body});
        ws.send(Message::text(frame.to_string()))
            .await
            .map_err(|e| {
                ReplyError::Write {
                    cmd: out.cmd,
                    reason: e.to_string(),
                }
                .to_string()
            })?;
        self.waiting.insert(out.req_id, (out.done, Instant::now()));
        Ok(())
    }

    /// Settles the reply waiting for `req_id`, then sends the next one queued for it.
    async fn settle(
        &mut self,
        ws: &mut Ws,
        req_id: &str,
        result: Result<(), ReplyError>,
    ) -> Result<(), String> {
        if let Some((done, _)) = self.waiting.remove(req_id) {
            let _ = done.send(result);
        }
        let next = self.queued.get_mut(req_id).and_then(VecDeque::pop_front);
        if self.queued.get(req_id).is_some_and(VecDeque::is_empty) {
            self.queued.remove(req_id);
        }
        match next {
            Some(out) => self.submit(ws, out).await,
            None => Ok(()),
        }
    }

    /// Replies whose receipt is overdue fail (retryable) and let the next ones go.
    async fn expire(&mut self, ws: &mut Ws) -> Result<(), String> {
        let overdue: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, (_, since))| since.elapsed() >= RECEIPT_WAIT)
            .map(|(id, _)| id.clone())
            .collect();
        for id in overdue {
            self.settle(ws, &id, Err(ReplyError::NoReceipt(RECEIPT_WAIT)))
                .await?;
        }
        Ok(())
    }
}

pub struct Client {
    name: String,
    config: WecomAibot,
    hub: Arc<Hub>,
    dial: Dialer,
    /// Pushed messages on their way to the store.
    held: mpsc::Sender<Value>,
}

/// `{prefix}_{ms}_{8 hex}`, as the SDKs make request ids.
fn req_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{:08x}",
        crate::clock::now_ms(),
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
        let (link, mut replies) = mpsc::channel(64);
        self.hub.replies.register(&self.name, link.clone());
        let _registered = Registered {
            replies: &self.hub.replies,
            receiver: &self.name,
            link,
        };
        let mut in_flight = InFlight::default();
        let mut sweep = tokio::time::interval(Duration::from_millis(500));
        // Room for the next message in the store's queue: frames are read only with it.
        let mut room = None;
        loop {
            tokio::select! {
                permit = self.held.reserve(), if room.is_none() => match permit {
                    Ok(permit) => room = Some(permit),
                    Err(_) => return Ended::Lost("nothing takes messages to the store".into(), worked),
                },
                Some(out) = replies.recv() => {
                    if let Err(e) = in_flight.submit(&mut ws, out).await {
                        return Ended::Lost(e, worked);
                    }
                }
                _ = sweep.tick(), if !in_flight.waiting.is_empty() => {
                    if let Err(e) = in_flight.expire(&mut ws).await {
                        return Ended::Lost(e, worked);
                    }
                }
                frame = ws.next(), if room.is_some() => {
                    last_seen = Instant::now();
                    let text = match incoming(frame, "WeCom") {
                        Ok(Some(Message::Text(t))) => t,
                        Ok(_) => continue,
                        Err(why) => return Ended::Lost(why, worked),
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    if let Err(ended) = self.on_frame(&mut ws, &frame, &mut in_flight, &mut room, &mut worked).await {
                        return ended;
                    }
                }
                _ = tick.tick() => {
                    if room.is_none() {
                        // Not reading (the store is behind): the silence is ours.
                        last_seen = Instant::now();
                    }
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
    pub fn new(name: String, config: WecomAibot, hub: Arc<Hub>) -> Self {
        let (held, queue) = mpsc::channel(HELD_MAX);
        tokio::spawn(keep(name.clone(), hub.clone(), queue));
        Self {
            dial: Dialer::new(&name),
            name,
            config,
            hub,
            held,
        }
    }

    /// One frame from WeCom: a pushed message goes to the store through `room`, a receipt
    /// settles its reply; `Err` ends the session.
    async fn on_frame<'a>(
        &'a self,
        ws: &mut Ws,
        frame: &Value,
        in_flight: &mut InFlight,
        room: &mut Option<mpsc::Permit<'a, Value>>,
        worked: &mut bool,
    ) -> Result<(), Ended<Ws>> {
        match frame["cmd"].as_str() {
            Some("aibot_event_callback")
                if frame["body"]["event"]["eventtype"] == "disconnected_event" =>
            {
                Err(Ended::Displaced(
                    "WeCom: a newer connection subscribed this bot (another client holds it)"
                        .into(),
                    DISPLACED_WAIT,
                ))
            }
            Some("aibot_msg_callback" | "aibot_event_callback") => {
                *worked = true;
                if let Some(permit) = room.take() {
                    self.store(frame, permit);
                }
                Ok(())
            }
            None => match frame["headers"]["req_id"].as_str() {
                Some(id) if in_flight.waiting.contains_key(id) => in_flight
                    .settle(ws, id, receipt(frame))
                    .await
                    .map_err(|e| Ended::Lost(e, *worked)),
                // Answers to our pings only prove the line is up.
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// A pushed message, with the frame's `req_id` (replies need it), handed to the store
    /// through the room reserved for it.
    fn store(&self, frame: &Value, room: mpsc::Permit<'_, Value>) {
        let mut body = frame["body"].clone();
        if let Some(b) = body.as_object_mut() {
            b.insert("req_id".into(), frame["headers"]["req_id"].clone());
        }
        room.send(body);
        if self.held.capacity() == 0 {
            warn!(receiver = %self.name, held = HELD_MAX, "WeCom bot messages wait for the store; reading no more from WeCom until it takes some.");
        }
    }
}

/// Stores the bot's messages in the order they came: up to [`Hub::in_flight`] handed to the
/// store at once (committed together, in that order). One the store does not take is held,
/// with every message behind it, and tried again (500 ms doubling to 10 s) until it is
/// stored: an outage of the store delays them, it does not lose them (unless the process ends
/// meanwhile).
async fn keep(name: String, hub: Arc<Hub>, mut queue: mpsc::Receiver<Value>) {
    let window = hub.in_flight();
    let mut in_flight = FuturesOrdered::new();
    loop {
        tokio::select! {
            body = queue.recv(), if in_flight.len() < window => {
                let Some(body) = body else { break };
                let committed = hub.queue(&name, Vendor::WecomAibot, body.to_string()).await;
                in_flight.push_back(async move { (committed.await, body) });
            }
            Some((stored, body)) = in_flight.next(), if !in_flight.is_empty() => {
                if stored {
                    continue;
                }
                // Those behind it were handed over already; the ones not stored either
                // are held with it, in order.
                let mut held = vec![body];
                while let Some((stored, body)) = in_flight.next().await {
                    if !stored {
                        held.push(body);
                    }
                }
                store_held(&name, &hub, held, queue.len()).await;
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Messages the store did not take, each tried again, in order, until it does.
async fn store_held(name: &str, hub: &Hub, held: Vec<Value>, waiting: usize) {
    warn!(receiver = %name, msgid = %held[0]["msgid"], held = held.len(), waiting, "WeCom bot messages could not be stored; holding them and trying again (WeCom does not push them again).");
    let mut wait = Duration::from_millis(500);
    for body in &held {
        while !hub.accept(name, Vendor::WecomAibot, body.to_string()).await {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }
    info!(receiver = %name, stored = held.len(), "The held WeCom bot messages are stored.");
}

/// Runs the bot's connection on the replica that holds its lock in the store; on the others
/// the receiver is on standby until the holder lets go (stops, dies, loses the database).
pub async fn run(
    name: String,
    config: WecomAibot,
    hub: Arc<Hub>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lock_name = format!("wecom_aibot:{}", config.bot_id);
    let every = config.keepalive;
    let link = Arc::new(Client::new(name.clone(), config, hub.clone()));
    loop {
        status.set(&name, State::Standby);
        hub.replies.standby(&name, true);
        let lock = tokio::select! {
            l = hub.intake.store().lock(&lock_name) => l,
            () = stopped(&mut shutdown) => {
                hub.replies.standby(&name, false);
                return;
            }
        };
        hub.replies.standby(&name, false);
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
