//! Local fakes of the vendors' stream gateways (streams.md §4) that behave as documented:
//! DingTalk's `connections/open` issuing single-use tickets (90 s) and refusing bad
//! credentials with 401 `authFailed`; a `/connect` WebSocket that checks the ticket before the
//! upgrade, pushes scripted frames (`SYSTEM/ping`, `EVENT`, `CALLBACK`, `SYSTEM/disconnect`),
//! checks every ack and pushes an unacknowledged (or `LATER`) frame again with the same
//! `messageId`; connections can be told to go silent (no frames, no pongs) or be dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
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

#[derive(Default)]
pub struct DingState {
    pub client_id: String,
    pub client_secret: String,
    /// Bodies of every `connections/open`.
    pub opens: Vec<Value>,
    /// Tickets issued: when, and whether used.
    tickets: HashMap<String, (Instant, bool)>,
    pub refused_upgrades: usize,
    conns: Vec<Conn>,
    /// Every frame the client sent: (connection, JSON).
    pub acks: Vec<(usize, Value)>,
    /// Pushed, not acknowledged with success yet: message id → (frame, last push).
    pending: HashMap<String, (Value, Instant)>,
    /// Every push: (connection, message id).
    pub pushes: Vec<(usize, String)>,
    pub redeliver_after: Duration,
}

#[derive(Clone)]
pub struct DingFake {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub state: Arc<Mutex<DingState>>,
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
                redeliver_after: Duration::from_millis(600),
                ..DingState::default()
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
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.serve(stream).await });
            }
        });
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                f.redeliver();
            }
        });
        fake
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.http)
    }

    // The handshake callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    async fn serve(&self, stream: tokio::net::TcpStream) {
        let state = self.state.clone();
        let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let ticket = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("ticket=")))
                .map(|t| {
                    percent_encoding::percent_decode_str(t)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            let mut s = state.lock().unwrap();
            let fresh = req.uri().path() == "/connect"
                && matches!(s.tickets.get(&ticket), Some((at, false)) if at.elapsed() < Duration::from_secs(90));
            if !fresh {
                s.refused_upgrades += 1;
                let mut refused = ErrorResponse::new(Some("invalid ticket".into()));
                *refused.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                return Err(refused);
            }
            s.tickets.insert(ticket, (Instant::now(), true));
            Ok(resp)
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
            return;
        };
        let (mut sink, mut read) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let silent = Arc::new(AtomicBool::new(false));
        let id = {
            let mut s = self.state.lock().unwrap();
            s.conns.push(Conn {
                tx,
                silent: silent.clone(),
                alive: true,
                going_away: false,
            });
            s.conns.len() - 1
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
                if self.state.lock().unwrap().conns[id].alive {
                    continue;
                }
                break;
            }
            let frame = tokio::select! {
                f = read.next() => f,
                () = tokio::time::sleep(Duration::from_millis(50)) => continue,
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    let mut s = self.state.lock().unwrap();
                    let id_acked = v["headers"]["messageId"].as_str().unwrap_or("").to_owned();
                    let data: Value = v["data"]
                        .as_str()
                        .and_then(|d| serde_json::from_str(d).ok())
                        .unwrap_or(Value::Null);
                    let later = data["status"] == "LATER";
                    if v["code"] == 200 && !later {
                        s.pending.remove(&id_acked);
                    }
                    s.acks.push((id, v));
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        self.state.lock().unwrap().conns[id].alive = false;
        writer.abort();
    }

    fn send(&self, conn: Option<usize>, frame: &Value) -> usize {
        let mut s = self.state.lock().unwrap();
        let id = conn
            .or_else(|| {
                s.conns
                    .iter()
                    .rposition(|c| c.alive && !c.going_away && !c.silent.load(Ordering::SeqCst))
            })
            .expect("no live connection to push to");
        let message_id = frame["headers"]["messageId"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let _ = s.conns[id].tx.send(Message::text(frame.to_string()));
        s.pushes.push((id, message_id));
        id
    }

    /// Pushes an event frame (on the newest live connection), redelivered until acked.
    pub fn push_event(&self, message_id: &str, event_type: &str, event_id: &str, data: Value) {
        let frame = json!({
            "specVersion": "1.0", "type": "EVENT",
            "headers": {"topic": "*", "messageId": message_id, "contentType": "application/json",
                        "time": "1693221579964", "eventType": event_type, "eventId": event_id,
                        "eventCorpId": "dingcorp", "eventBornTime": "1683533823336"},
            "data": data.to_string(),
        });
        self.push_tracked(None, frame);
    }

    /// The same on a given connection.
    pub fn push_event_on(&self, conn: usize, message_id: &str, event_id: &str, data: Value) {
        let frame = json!({
            "specVersion": "1.0", "type": "EVENT",
            "headers": {"topic": "*", "messageId": message_id, "contentType": "application/json",
                        "eventType": "user_add_org", "eventId": event_id},
            "data": data.to_string(),
        });
        self.push_tracked(Some(conn), frame);
    }

    pub fn push_robot(&self, message_id: &str, data: Value) {
        let frame = json!({
            "specVersion": "1.0", "type": "CALLBACK",
            "headers": {"topic": "/v1.0/im/bot/messages/get", "messageId": message_id,
                        "contentType": "application/json", "time": "1690362102194"},
            "data": data.to_string(),
        });
        self.push_tracked(None, frame);
    }

    fn push_tracked(&self, conn: Option<usize>, frame: Value) {
        let message_id = frame["headers"]["messageId"].as_str().unwrap().to_owned();
        self.state
            .lock()
            .unwrap()
            .pending
            .insert(message_id, (frame.clone(), Instant::now()));
        self.send(conn, &frame);
    }

    pub fn ping(&self, opaque: &str) {
        let frame = json!({
            "specVersion": "1.0", "type": "SYSTEM",
            "headers": {"topic": "ping", "messageId": format!("ping-{opaque}"), "contentType": "application/json"},
            "data": json!({"opaque": opaque}).to_string(),
        });
        self.send(None, &frame);
    }

    /// `SYSTEM/disconnect` on `conn`: nothing new is pushed there; it closes after `close_after`.
    pub fn disconnect(&self, conn: usize, close_after: Duration) {
        let frame = json!({
            "specVersion": "1.0", "type": "SYSTEM",
            "headers": {"topic": "disconnect", "messageId": format!("disc-{conn}"), "contentType": "application/json"},
            "data": "{\"reason\":\"connection is expired\"}",
        });
        self.send(Some(conn), &frame);
        self.state.lock().unwrap().conns[conn].going_away = true;
        let state = self.state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(close_after).await;
            let s = state.lock().unwrap();
            let _ = s.conns[conn].tx.send(Message::Close(None));
        });
    }

    /// The connection stops sending and reading (a half-dead socket).
    pub fn silence(&self, conn: usize) {
        self.state.lock().unwrap().conns[conn]
            .silent
            .store(true, Ordering::SeqCst);
    }

    /// Connections ever accepted, and how many are still open.
    pub fn connections(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.conns.len(), s.conns.iter().filter(|c| c.alive).count())
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

    pub fn pushes_of(&self, message_id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .pushes
            .iter()
            .filter(|(_, m)| m == message_id)
            .count()
    }

    /// Pushes again whatever waited longer than `redeliver_after` for a success ack.
    fn redeliver(&self) {
        let due: Vec<Value> = {
            let mut s = self.state.lock().unwrap();
            let after = s.redeliver_after;
            s.pending
                .values_mut()
                .filter(|(_, at)| at.elapsed() >= after)
                .map(|(frame, at)| {
                    *at = Instant::now();
                    frame.clone()
                })
                .collect()
        };
        for frame in due {
            let live = {
                let s = self.state.lock().unwrap();
                s.conns
                    .iter()
                    .any(|c| c.alive && !c.going_away && !c.silent.load(Ordering::SeqCst))
            };
            if live {
                self.send(None, &frame);
            }
        }
    }
}
