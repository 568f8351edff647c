//! Local fakes of the vendors' stream gateways (streams.md §4) that behave as documented:
//! DingTalk's `connections/open` issuing single-use tickets (90 s) and refusing bad
//! credentials with 401 `authFailed`; a `/connect` WebSocket that checks the ticket before the
//! upgrade, pushes scripted frames (`SYSTEM/ping`, `EVENT`, `CALLBACK`, `SYSTEM/disconnect`),
//! checks every ack and pushes an unacknowledged (or `LATER`) frame again with the same
//! `messageId`; connections can be told to go silent (no frames, no pongs) or be dropped.
//! Feishu's `/callback/ws/endpoint` and a binary pbbp2 WebSocket: pongs (with a new client
//! config when asked), fragmented event pushes, acks checked and missing ones redelivered,
//! the 50-connection limit and forbidden handshakes refused with `Handshake-*` headers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hookgate::stream::feishu::{Frame, Header};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

struct Conn {
    tx: mpsc::UnboundedSender<Message>,
    silent: Arc<AtomicBool>,
    alive: bool,
    going_away: bool,
}

/// What every fake gateway keeps: its connections, what it pushed and what waits for an ack
/// (pushed again, same id, after `redeliver_after`).
#[derive(Default)]
pub struct Hub {
    conns: Vec<Conn>,
    /// Pushed, not acknowledged with success yet: message id → (frames, last push).
    pending: HashMap<String, (Vec<Message>, Instant)>,
    /// Every push: (connection, message id).
    pub pushes: Vec<(usize, String)>,
    pub redeliver_after: Duration,
    pub refused_upgrades: usize,
}

impl Hub {
    fn live(&self) -> Option<usize> {
        self.conns
            .iter()
            .rposition(|c| c.alive && !c.going_away && !c.silent.load(Ordering::SeqCst))
    }

    /// Sends `frame` on `conn` (default: the newest live connection).
    fn send(&mut self, conn: Option<usize>, id: &str, frame: Message) -> usize {
        let conn = conn
            .or_else(|| self.live())
            .expect("no live connection to push to");
        let _ = self.conns[conn].tx.send(frame);
        self.pushes.push((conn, id.to_owned()));
        conn
    }

    /// Sends and keeps pushing until [`Hub::acked`].
    fn push(&mut self, conn: Option<usize>, id: &str, frame: Message) {
        self.push_all(conn, id, vec![frame]);
    }

    /// The same for a message sent as several frames (fragments): all are pushed again.
    fn push_all(&mut self, conn: Option<usize>, id: &str, frames: Vec<Message>) {
        self.pending
            .insert(id.to_owned(), (frames.clone(), Instant::now()));
        for frame in frames {
            self.send(conn, id, frame);
        }
    }

    fn acked(&mut self, id: &str) {
        self.pending.remove(id);
    }

    pub fn pushes_of(&self, id: &str) -> usize {
        self.pushes.iter().filter(|(_, m)| m == id).count()
    }

    /// Connections ever accepted, and how many are still open.
    pub fn connections(&self) -> (usize, usize) {
        (
            self.conns.len(),
            self.conns.iter().filter(|c| c.alive).count(),
        )
    }

    fn redeliver(&mut self) {
        if self.live().is_none() {
            return;
        }
        let after = self.redeliver_after;
        let due: Vec<(String, Vec<Message>)> = self
            .pending
            .iter_mut()
            .filter(|(_, (_, at))| at.elapsed() >= after)
            .map(|(id, (frames, at))| {
                *at = Instant::now();
                (id.clone(), frames.clone())
            })
            .collect();
        for (id, frames) in due {
            for frame in frames {
                self.send(None, &id, frame);
            }
        }
    }
}

/// Serves one upgraded connection: outgoing frames from the hub, incoming ones to `on_frame`
/// (connection id, frame) which may answer; a silenced connection reads and answers nothing.
async fn serve_conn<S>(
    hub: Arc<Mutex<Hub>>,
    ws: tokio_tungstenite::WebSocketStream<S>,
    on_frame: impl Fn(usize, Message) -> Option<Message>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut read) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let silent = Arc::new(AtomicBool::new(false));
    let id = {
        let mut h = hub.lock().unwrap();
        h.conns.push(Conn {
            tx: tx.clone(),
            silent: silent.clone(),
            alive: true,
            going_away: false,
        });
        h.conns.len() - 1
    };
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
    });
    loop {
        if silent.load(Ordering::SeqCst) {
            // A half-dead peer: holds the socket, reads nothing, answers no ping.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if hub.lock().unwrap().conns[id].alive {
                continue;
            }
            break;
        }
        let frame = tokio::select! {
            f = read.next() => f,
            () = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        match frame {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if let Some(reply) = on_frame(id, m) {
                    let _ = tx.send(reply);
                }
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    hub.lock().unwrap().conns[id].alive = false;
    writer.abort();
}

/// Accepts connections on `listener`, checking each handshake with `check`.
fn accept_loop<C, F>(listener: tokio::net::TcpListener, hub: Arc<Mutex<Hub>>, check: C, on_frame: F)
where
    C: Fn(&Request) -> Result<(), Box<ErrorResponse>> + Clone + Send + Sync + 'static,
    F: Fn(usize, Message) -> Option<Message> + Clone + Send + Sync + 'static,
{
    let redeliver = hub.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            redeliver.lock().unwrap().redeliver();
        }
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (hub, check, on_frame) = (hub.clone(), check.clone(), on_frame.clone());
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback =
                    |req: &Request, resp: Response| check(req).map(|()| resp).map_err(|e| *e);
                match tokio_tungstenite::accept_hdr_async(stream, callback).await {
                    Ok(ws) => serve_conn(hub, ws, on_frame).await,
                    Err(_) => hub.lock().unwrap().refused_upgrades += 1,
                }
            });
        }
    });
}

/// A refusal of the upgrade with `status` and extra headers.
fn refuse(status: u16, headers: &[(&str, &str)]) -> Box<ErrorResponse> {
    let mut r = ErrorResponse::new(Some("refused".into()));
    *r.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Box::new(r)
}

/// A query parameter of the handshake request, decoded.
fn param(req: &Request, name: &str) -> String {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        })
        .map(|t| {
            percent_encoding::percent_decode_str(t)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default()
}

#[derive(Default)]
pub struct DingState {
    pub client_id: String,
    pub client_secret: String,
    /// Bodies of every `connections/open`.
    pub opens: Vec<Value>,
    /// Tickets issued: when, and whether used.
    tickets: HashMap<String, (Instant, bool)>,
    /// Every frame the client sent: (connection, JSON).
    pub acks: Vec<(usize, Value)>,
    /// Answer `connections/open` with 503 (a DingTalk outage).
    pub unavailable: bool,
}

#[derive(Clone)]
pub struct DingFake {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub state: Arc<Mutex<DingState>>,
    pub hub: Arc<Mutex<Hub>>,
}

impl DingFake {
    pub async fn start(client_id: &str, client_secret: &str) -> DingFake {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = DingFake {
            http: http.local_addr().unwrap(),
            ws: ws.local_addr().unwrap(),
            state: Arc::new(Mutex::new(DingState {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                ..DingState::default()
            })),
            hub: Arc::new(Mutex::new(Hub {
                redeliver_after: Duration::from_millis(600),
                ..Hub::default()
            })),
        };
        let (state, ws_addr) = (fake.state.clone(), fake.ws);
        super::http_server(http, move |parts, body| {
            if parts.uri.path() != "/v1.0/gateway/connections/open" {
                return (404, "application/json", "{}".into());
            }
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = state.lock().unwrap();
            s.opens.push(body.clone());
            if s.unavailable {
                return (503, "text/plain", "service unavailable".into());
            }
            if body["clientId"] != s.client_id.as_str()
                || body["clientSecret"] != s.client_secret.as_str()
            {
                return (
                    401,
                    "application/json",
                    json!({"requestid": "R-1", "code": "authFailed", "message": "鉴权失败"})
                        .to_string(),
                );
            }
            let ticket = format!("tk-{}", s.opens.len());
            s.tickets.insert(ticket.clone(), (Instant::now(), false));
            (
                200,
                "application/json",
                json!({"endpoint": format!("ws://{ws_addr}/connect"), "ticket": ticket})
                    .to_string(),
            )
        });
        let state = fake.state.clone();
        let check = move |req: &Request| {
            let ticket = param(req, "ticket");
            let mut s = state.lock().unwrap();
            let fresh = req.uri().path() == "/connect"
                && matches!(s.tickets.get(&ticket), Some((at, false)) if at.elapsed() < Duration::from_secs(90));
            if !fresh {
                return Err(refuse(401, &[]));
            }
            s.tickets.insert(ticket, (Instant::now(), true));
            Ok(())
        };
        let (state, hub) = (fake.state.clone(), fake.hub.clone());
        let on_frame = move |conn: usize, m: Message| {
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("")).unwrap_or(Value::Null);
            let id = v["headers"]["messageId"].as_str().unwrap_or("").to_owned();
            let data: Value = v["data"]
                .as_str()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            if v["code"] == 200 && data["status"] != "LATER" {
                hub.lock().unwrap().acked(&id);
            }
            state.lock().unwrap().acks.push((conn, v));
            None
        };
        accept_loop(ws, fake.hub.clone(), check, on_frame);
        fake
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.http)
    }

    fn event_frame(message_id: &str, event_type: &str, event_id: &str, data: &Value) -> Message {
        Message::text(
            json!({
                "specVersion": "1.0", "type": "EVENT",
                "headers": {"topic": "*", "messageId": message_id, "contentType": "application/json",
                            "time": "1693221579964", "eventType": event_type, "eventId": event_id,
                            "eventCorpId": "dingcorp", "eventBornTime": "1683533823336"},
                "data": data.to_string(),
            })
            .to_string(),
        )
    }

    /// Pushes an event frame (on the newest live connection), redelivered until acked.
    pub fn push_event(&self, message_id: &str, event_type: &str, event_id: &str, data: Value) {
        let frame = Self::event_frame(message_id, event_type, event_id, &data);
        self.hub.lock().unwrap().push(None, message_id, frame);
    }

    /// The same on a given connection.
    pub fn push_event_on(&self, conn: usize, message_id: &str, event_id: &str, data: Value) {
        let frame = Self::event_frame(message_id, "user_add_org", event_id, &data);
        self.hub.lock().unwrap().push(Some(conn), message_id, frame);
    }

    pub fn push_robot(&self, message_id: &str, data: Value) {
        self.push_callback("/v1.0/im/bot/messages/get", message_id, data);
    }

    pub fn push_callback(&self, topic: &str, message_id: &str, data: Value) {
        let frame = json!({
            "specVersion": "1.0", "type": "CALLBACK",
            "headers": {"topic": topic, "messageId": message_id,
                        "contentType": "application/json", "time": "1690362102194"},
            "data": data.to_string(),
        });
        self.hub
            .lock()
            .unwrap()
            .push(None, message_id, Message::text(frame.to_string()));
    }

    pub fn ping(&self, opaque: &str) {
        let id = format!("ping-{opaque}");
        let frame = json!({
            "specVersion": "1.0", "type": "SYSTEM",
            "headers": {"topic": "ping", "messageId": id, "contentType": "application/json"},
            "data": json!({"opaque": opaque}).to_string(),
        });
        self.hub
            .lock()
            .unwrap()
            .send(None, &id, Message::text(frame.to_string()));
    }

    /// `SYSTEM/disconnect` on `conn`: nothing new is pushed there; it closes after `close_after`.
    pub fn disconnect(&self, conn: usize, close_after: Duration) {
        let id = format!("disc-{conn}");
        let frame = json!({
            "specVersion": "1.0", "type": "SYSTEM",
            "headers": {"topic": "disconnect", "messageId": id, "contentType": "application/json"},
            "data": "{\"reason\":\"connection is expired\"}",
        });
        let mut hub = self.hub.lock().unwrap();
        hub.send(Some(conn), &id, Message::text(frame.to_string()));
        hub.conns[conn].going_away = true;
        let hub = self.hub.clone();
        tokio::spawn(async move {
            tokio::time::sleep(close_after).await;
            let _ = hub.lock().unwrap().conns[conn]
                .tx
                .send(Message::Close(None));
        });
    }

    /// The connection stops sending and reading (a half-dead socket).
    pub fn silence(&self, conn: usize) {
        self.hub.lock().unwrap().conns[conn]
            .silent
            .store(true, Ordering::SeqCst);
    }

    pub fn connections(&self) -> (usize, usize) {
        self.hub.lock().unwrap().connections()
    }

    pub fn pushes_of(&self, message_id: &str) -> usize {
        self.hub.lock().unwrap().pushes_of(message_id)
    }

    /// The client's answers to `message_id`.
    pub fn acks_of(&self, message_id: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .acks
            .iter()
            .filter(|(_, v)| v["headers"]["messageId"] == message_id)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[derive(Default)]
pub struct FeishuState {
    pub app_id: String,
    pub app_secret: String,
    /// Bodies of every `/callback/ws/endpoint`.
    pub endpoints: Vec<Value>,
    /// Connections allowed at once (Feishu: 50 per app); more are refused 514/1000040350.
    pub max_connections: usize,
    /// The ClientConfig handed out (seconds).
    pub ping_interval: u64,
    /// Every data frame the client sent back: (connection, frame).
    pub acks: Vec<(usize, Frame)>,
    pub pings: usize,
    /// Pongs carry this config once, then plain pongs.
    pub pong_config: Option<Value>,
    /// Answer no pings (the connection otherwise stays up).
    pub no_pongs: bool,
}

pub const SERVICE_ID: i32 = 33_554_678;

#[derive(Clone)]
pub struct FeishuFake {
    pub http: SocketAddr,
    pub state: Arc<Mutex<FeishuState>>,
    pub hub: Arc<Mutex<Hub>>,
}

impl FeishuFake {
    pub async fn start(app_id: &str, app_secret: &str) -> FeishuFake {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_addr = ws.local_addr().unwrap();
        let fake = FeishuFake {
            http: http.local_addr().unwrap(),
            state: Arc::new(Mutex::new(FeishuState {
                app_id: app_id.into(),
                app_secret: app_secret.into(),
                max_connections: 50,
                ping_interval: 120,
                ..FeishuState::default()
            })),
            // Feishu wants the ack within 3 s; compressed here.
            hub: Arc::new(Mutex::new(Hub {
                redeliver_after: Duration::from_millis(800),
                ..Hub::default()
            })),
        };
        let state = fake.state.clone();
        super::http_server(http, move |parts, body| {
            if parts.uri.path() != "/callback/ws/endpoint" {
                return (404, "application/json", "{}".into());
            }
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = state.lock().unwrap();
            s.endpoints.push(body.clone());
            if body["AppID"] != s.app_id.as_str() || body["AppSecret"] != s.app_secret.as_str() {
                return (
                    200,
                    "application/json",
                    json!({"code": 10014, "msg": "app secret invalid"}).to_string(),
                );
            }
            let n = s.endpoints.len();
            let url = format!(
                "ws://{ws_addr}/ws/v2?fpid=493&aid=552564&device_id=dev-{n}&access_key=ak&service_id={SERVICE_ID}&ticket=tk-{n}"
            );
            let config = json!({"ReconnectCount": -1, "ReconnectInterval": 2, "ReconnectNonce": 0, "PingInterval": s.ping_interval});
            (
                200,
                "application/json",
                json!({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}})
                    .to_string(),
            )
        });
        let (state, hub) = (fake.state.clone(), fake.hub.clone());
        let check = move |req: &Request| {
            let live = hub.lock().unwrap().connections().1;
            let s = state.lock().unwrap();
            if !param(req, "ticket").starts_with("tk-") || param(req, "access_key") != "ak" {
                return Err(refuse(
                    403,
                    &[("Handshake-Status", "403"), ("Handshake-Msg", "forbidden")],
                ));
            }
            if live >= s.max_connections {
                return Err(refuse(
                    514,
                    &[
                        ("Handshake-Status", "514"),
                        ("Handshake-Msg", "exceed connection limit"),
                        ("Handshake-Autherrcode", "1000040350"),
                    ],
                ));
            }
            Ok(())
        };
        let (state, hub) = (fake.state.clone(), fake.hub.clone());
        let on_frame = move |conn: usize, m: Message| {
            let Message::Binary(bytes) = m else {
                return None;
            };
            let frame = Frame::decode(bytes.as_ref()).ok()?;
            let mut s = state.lock().unwrap();
            if frame.method == 0 && frame.header("type") == Some("ping") {
                assert_eq!(frame.service, SERVICE_ID, "a ping for another service");
                s.pings += 1;
                if s.no_pongs {
                    return None;
                }
                let mut pong = Frame::ping(SERVICE_ID);
                pong.headers[0].value = "pong".into();
                pong.payload = s.pong_config.take().map(|c| c.to_string().into_bytes());
                return Some(Message::Binary(pong.encode_to_vec().into()));
            }
            let id = frame.header("message_id").unwrap_or("").to_owned();
            let payload: Value = serde_json::from_slice(frame.payload.as_deref().unwrap_or(b""))
                .unwrap_or(Value::Null);
            if payload["code"] == 200 {
                hub.lock().unwrap().acked(&id);
            }
            s.acks.push((conn, frame));
            None
        };
        accept_loop(ws, fake.hub.clone(), check, on_frame);
        fake
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Pushes an event in `parts` fragments, the last one first; redelivered until acked.
    pub fn push_event(&self, message_id: &str, event: &Value, parts: usize) {
        let bytes = event.to_string().into_bytes();
        let size = bytes.len().div_ceil(parts);
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        let frames = (0..chunks.len())
            .rev()
            .map(|seq| {
                let frame = Frame {
                    method: 1,
                    headers: [
                        ("type", "event".to_owned()),
                        ("message_id", message_id.to_owned()),
                        ("sum", chunks.len().to_string()),
                        ("seq", seq.to_string()),
                        ("trace_id", format!("trace-{message_id}")),
                    ]
                    .into_iter()
                    .map(|(k, v)| Header {
                        key: k.into(),
                        value: v,
                    })
                    .collect(),
                    payload: Some(chunks[seq].to_vec()),
                    ..Frame::ping(SERVICE_ID)
                };
                Message::Binary(frame.encode_to_vec().into())
            })
            .collect();
        self.hub.lock().unwrap().push_all(None, message_id, frames);
    }

    pub fn acks_of(&self, message_id: &str) -> Vec<Frame> {
        self.state
            .lock()
            .unwrap()
            .acks
            .iter()
            .filter(|(_, f)| f.header("message_id") == Some(message_id))
            .map(|(_, f)| f.clone())
            .collect()
    }

    pub fn connections(&self) -> (usize, usize) {
        self.hub.lock().unwrap().connections()
    }
}

#[derive(Default)]
pub struct WecomState {
    pub bot_id: String,
    pub secret: String,
    /// Every `aibot_subscribe`: (connection, frame).
    pub subscribes: Vec<(usize, Value)>,
    /// The connection holding the bot.
    holder: Option<usize>,
    /// Older connections kicked by a newer subscribe.
    pub kicks: usize,
    pub pings: usize,
    pub no_pongs: bool,
    /// Pushes that may still be answered: req_id → (connection, when, event type or "").
    live: HashMap<String, (usize, Instant, String)>,
    /// Replies accepted: (cmd, req_id, body).
    pub replies: Vec<(String, String, Value)>,
    /// Every receipt sent for a reply: (req_id, errcode).
    pub receipts: Vec<(String, i64)>,
    /// Receipts come this late (the client must wait for one before the next reply to the
    /// same req_id).
    pub receipt_delay: Option<Duration>,
    /// Replies whose receipt is still on its way, by req_id.
    unreceipted: HashMap<String, usize>,
    /// Replies sent while an earlier one to the same req_id had no receipt yet.
    pub overlaps: usize,
}

/// The WeCom AI-bot gateway: `aibot_subscribe` first (checked), heartbeats answered, one
/// connection per bot (a newer subscribe gets the older one a `disconnected_event` and a
/// close), messages pushed to the holder.
#[derive(Clone)]
pub struct WecomFake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<WecomState>>,
    pub hub: Arc<Mutex<Hub>>,
}

impl WecomFake {
    pub async fn start(bot_id: &str, secret: &str) -> WecomFake {
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = WecomFake {
            addr: ws.local_addr().unwrap(),
            state: Arc::new(Mutex::new(WecomState {
                bot_id: bot_id.into(),
                secret: secret.into(),
                ..WecomState::default()
            })),
            hub: Arc::new(Mutex::new(Hub {
                // No acks in this protocol: nothing is redelivered.
                redeliver_after: Duration::from_secs(3600),
                ..Hub::default()
            })),
        };
        let (state, hub) = (fake.state.clone(), fake.hub.clone());
        let on_frame = move |conn: usize, m: Message| {
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("")).ok()?;
            let req_id = v["headers"]["req_id"].clone();
            let ok = json!({"headers": {"req_id": req_id}, "errcode": 0, "errmsg": "ok"});
            let mut s = state.lock().unwrap();
            match v["cmd"].as_str() {
                Some("aibot_subscribe") => {
                    s.subscribes.push((conn, v.clone()));
                    if v["body"]["bot_id"] != s.bot_id.as_str()
                        || v["body"]["secret"] != s.secret.as_str()
                    {
                        let refused = json!({"headers": {"req_id": req_id}, "errcode": 40001, "errmsg": "invalid secret"});
                        let h = hub.lock().unwrap();
                        let _ = h.conns[conn].tx.send(Message::text(refused.to_string()));
                        let _ = h.conns[conn].tx.send(Message::Close(None));
                        return None;
                    }
                    if let Some(old) = s.holder.filter(|o| *o != conn) {
                        let mut h = hub.lock().unwrap();
                        if h.conns[old].alive {
                            s.kicks += 1;
                            let kicked = json!({"cmd": "aibot_event_callback", "headers": {"req_id": "kick"},
                                                "body": {"msgid": "kick", "msgtype": "event", "event": {"eventtype": "disconnected_event"}}});
                            let _ = h.conns[old].tx.send(Message::text(kicked.to_string()));
                            let _ = h.conns[old].tx.send(Message::Close(None));
                            h.conns[old].going_away = true;
                        }
                    }
                    s.holder = Some(conn);
                    Some(Message::text(ok.to_string()))
                }
                Some("ping") => {
                    s.pings += 1;
                    (!s.no_pongs).then(|| Message::text(ok.to_string()))
                }
                // A reply is valid only for a push to this connection; a welcome (to
                // enter_chat) and a card update (to template_card_event) only within 5 s.
                Some(
                    cmd @ ("aibot_respond_msg"
                    | "aibot_respond_welcome_msg"
                    | "aibot_respond_update_msg"),
                ) => {
                    let id = req_id.as_str().unwrap_or_default().to_owned();
                    let valid = s.live.get(&id).is_some_and(|(c, at, event)| {
                        *c == conn
                            && match cmd {
                                "aibot_respond_welcome_msg" => {
                                    event == "enter_chat" && at.elapsed() < Duration::from_secs(5)
                                }
                                "aibot_respond_update_msg" => {
                                    event == "template_card_event"
                                        && at.elapsed() < Duration::from_secs(5)
                                }
                                _ => at.elapsed() < Duration::from_secs(3600),
                            }
                    });
                    let code = if valid { 0 } else { 846605 };
                    s.receipts.push((id.clone(), code));
                    if !valid {
                        let bad = json!({"headers": {"req_id": req_id}, "errcode": 846605, "errmsg": "invalid req_id"});
                        return Some(Message::text(bad.to_string()));
                    }
                    s.replies
                        .push((cmd.to_owned(), id.clone(), v["body"].clone()));
                    let Some(delay) = s.receipt_delay else {
                        return Some(Message::text(ok.to_string()));
                    };
                    let waiting = s.unreceipted.entry(id.clone()).or_default();
                    *waiting += 1;
                    if *waiting > 1 {
                        s.overlaps += 1;
                    }
                    let (state, hub) = (state.clone(), hub.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if let Some(n) = state.lock().unwrap().unreceipted.get_mut(&id) {
                            *n -= 1;
                        }
                        let _ = hub.lock().unwrap().conns[conn]
                            .tx
                            .send(Message::text(ok.to_string()));
                    });
                    None
                }
                _ => Some(Message::text(ok.to_string())),
            }
        };
        accept_loop(ws, fake.hub.clone(), |_: &Request| Ok(()), on_frame);
        fake
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The connection holding the bot, if it is open.
    pub fn holder(&self) -> Option<usize> {
        let holder = self.state.lock().unwrap().holder?;
        self.hub.lock().unwrap().conns[holder]
            .alive
            .then_some(holder)
    }

    /// Pushes a message to the holder; its req_id is `REQ-<msgid>`.
    pub fn push(&self, cmd: &str, body: Value) {
        let holder = self.holder().expect("no connection holds the bot");
        let req_id = format!("REQ-{}", body["msgid"].as_str().unwrap_or(""));
        let event = body["event"]["eventtype"].as_str().unwrap_or("").to_owned();
        self.state
            .lock()
            .unwrap()
            .live
            .insert(req_id.clone(), (holder, Instant::now(), event));
        let frame = json!({"cmd": cmd, "headers": {"req_id": req_id}, "body": body});
        self.hub
            .lock()
            .unwrap()
            .send(Some(holder), "", Message::text(frame.to_string()));
    }

    /// Closes the holder's connection cleanly (close code 1000).
    pub fn close_holder(&self) {
        let holder = self.holder().expect("no connection holds the bot");
        let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        };
        let _ = self.hub.lock().unwrap().conns[holder]
            .tx
            .send(Message::Close(Some(close)));
    }

    pub fn subscribes(&self) -> usize {
        self.state.lock().unwrap().subscribes.len()
    }

    pub fn connections(&self) -> (usize, usize) {
        self.hub.lock().unwrap().connections()
    }
}
