//! Feishu/Lark long connection (streams.md §2): `POST /callback/ws/endpoint` for a WebSocket
//! URL (its query carries `device_id` and `service_id`) and the client config, then binary
//! protobuf frames (`pbbp2.Frame`). The client pings (CONTROL `type=ping`) and adopts the
//! config a `pong` carries; DATA frames (`type=event`), reassembled from their fragments,
//! are stored and acknowledged by echoing the frame with payload `{"code":200}` within 3 s
//! (`{"code":500}` when the store could not commit: Feishu pushes again). Events are
//! pipelined as DingTalk's are: up to [`Hub::in_flight`] being stored at once, each acked in
//! arrival order once its own commit is done. Unlike the SDKs, a connection whose pongs stop
//! is replaced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use super::{
    Answer, Backoff, Dialer, Ended, Failure, Hub, Link, Ws, answer_all, incoming, stopped,
};
use crate::config::FeishuWs;
use crate::event::Vendor;

const ENDPOINT_PATH: &str = "/callback/ws/endpoint";
/// Fragments of a message that do not all arrive within this are dropped (as the SDKs do).
const FRAGMENTS_TTL: Duration = Duration::from_secs(5);
/// Feishu's "connection limit exceeded" in the `Handshake-Autherrcode` header.
const EXCEED_CONN_LIMIT: &str = "1000040350";

/// Fragments of messages being reassembled: message id → (first seen, parts by `seq`).
type Fragments = HashMap<String, (Instant, Vec<Option<Vec<u8>>>)>;

/// `pbbp2.Frame` (proto2), as the official SDKs define it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    /// 0 control, 1 data.
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

impl Frame {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// A CONTROL ping for `service`.
    pub fn ping(service: i32) -> Frame {
        Frame {
            seq_id: 0,
            log_id: 0,
            service,
            method: 0,
            headers: vec![Header {
                key: "type".into(),
                value: "ping".into(),
            }],
            payload_encoding: None,
            payload_type: None,
            payload: None,
            log_id_new: None,
        }
    }

    /// The ack of a data frame: the frame itself with `biz_rt` added and `payload` replaced.
    pub fn ack(&self, code: u16, handled_in: Duration) -> Frame {
        let mut ack = self.clone();
        ack.headers.push(Header {
            key: "biz_rt".into(),
            value: handled_in.as_millis().to_string(),
        });
        ack.payload = Some(json!({ "code": code }).to_string().into_bytes());
        ack
    }
}

/// What the endpoint and pongs configure (seconds).
#[derive(Debug, Clone, Copy)]
struct ClientConfig {
    ping_interval: Duration,
    reconnect_interval: Duration,
}

impl ClientConfig {
    fn from_json(v: &Value, current: ClientConfig) -> ClientConfig {
        let secs = |k: &str, d: Duration| {
            v[k].as_u64()
                .filter(|s| *s > 0)
                .map_or(d, Duration::from_secs)
        };
        ClientConfig {
            ping_interval: secs("PingInterval", current.ping_interval),
            reconnect_interval: secs("ReconnectInterval", current.reconnect_interval),
        }
    }
}

pub struct Client {
    name: String,
    config: FeishuWs,
    hub: Arc<Hub>,
    dial: Dialer,
    /// The latest client config from the server (pongs may change it).
    client_config: std::sync::Mutex<ClientConfig>,
}

/// A connection with what its URL said.
pub struct Conn {
    ws: Ws,
    service: i32,
}

impl Link for Client {
    type Ws = Conn;

    fn name(&self) -> &str {
        &self.name
    }

    fn label(&self) -> &'static str {
        "Feishu long connection"
    }

    /// From 1 s, doubling, capped at the server's `ReconnectInterval` (2 min by default).
    fn backoff(&self) -> Backoff {
        let cap = self.client_config().reconnect_interval;
        Backoff::new(Duration::from_secs(1), cap.max(Duration::from_secs(1)))
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        self.open().await
    }

    async fn session(&self, conn: Conn, shutdown: &mut watch::Receiver<bool>) -> Ended<Conn> {
        self.run_session(conn, shutdown).await
    }

    async fn drain(&self, conn: Conn) {
        drop(conn);
    }
}

impl Client {
    pub fn new(name: String, config: FeishuWs, hub: Arc<Hub>) -> Self {
        Self {
            dial: Dialer::new(&name),
            name,
            config,
            hub,
            client_config: std::sync::Mutex::new(ClientConfig {
                ping_interval: Duration::from_secs(120),
                reconnect_interval: Duration::from_secs(120),
            }),
        }
    }

    fn client_config(&self) -> ClientConfig {
        *self.client_config.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn configure(&self, v: &Value) {
        let mut c = self.client_config.lock().unwrap_or_else(|p| p.into_inner());
        *c = ClientConfig::from_json(v, *c);
    }

    async fn open(&self) -> Result<Conn, Failure> {
        let answer = self
            .dial
            .http
            .post(format!("{}{ENDPOINT_PATH}", self.config.api_base))
            .header("locale", "zh")
            .json(
                &json!({"AppID": self.config.app_id, "AppSecret": self.config.app_secret.expose()}),
            )
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("ws/endpoint: {e}")))?;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let code = body["code"].as_i64().unwrap_or(-1);
        let msg = body["msg"].as_str().unwrap_or("");
        if status != 200 {
            return Err(Failure::Retry(format!(
                "ws/endpoint answered HTTP {status}: {msg}"
            )));
        }
        match code {
            0 => {}
            // "system busy" and "internal error": the SDKs retry.
            1 | 1_000_040_343 => {
                return Err(Failure::Retry(format!("ws/endpoint code {code}: {msg}")));
            }
            _ => {
                return Err(Failure::Fatal(format!(
                    "ws/endpoint code {code}: {msg} (check app_id and app_secret; long connections are for self-built apps)"
                )));
            }
        }
        let url = body["data"]["URL"].as_str().unwrap_or("").to_owned();
        self.configure(&body["data"]["ClientConfig"]);
        let query: HashMap<String, String> = url::Url::parse(&url)
            .map_err(|e| Failure::Retry(format!("ws/endpoint URL {url:?}: {e}")))?
            .query_pairs()
            .into_owned()
            .collect();
        let service = query
            .get("service_id")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::Retry("ws/endpoint URL without service_id".into()))?;
        match self.dial.websocket(&url).await {
            Ok(ws) => Ok(Conn { ws, service }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let h = |k: &str| {
                    resp.headers()
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let why = format!(
                    "handshake refused: {} {} (autherrcode {})",
                    h("Handshake-Status"),
                    h("Handshake-Msg"),
                    h("Handshake-Autherrcode")
                );
                let status = h("Handshake-Status");
                if (status == "514" && h("Handshake-Autherrcode") == EXCEED_CONN_LIMIT)
                    || status == "403"
                {
                    Err(Failure::Fatal(why))
                } else {
                    Err(Failure::Retry(why))
                }
            }
            Err(e) => Err(Failure::Retry(format!("WebSocket: {e}"))),
        }
    }

    async fn run_session(
        &self,
        mut conn: Conn,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended<Conn> {
        let every = self.config.keepalive;
        let mut last_seen = Instant::now();
        // Ping at once, then every PingInterval (as the server sets it, at most keepalive).
        let mut last_ping = Instant::now() - every;
        let mut worked = false;
        let mut fragments = Fragments::new();
        let mut in_flight = FuturesOrdered::new();
        let window = self.hub.in_flight();
        loop {
            tokio::select! {
                frame = conn.ws.next(), if in_flight.len() < window => {
                    last_seen = Instant::now();
                    let bytes = match incoming(frame, "Feishu") {
                        Ok(Some(Message::Binary(b))) => b,
                        Ok(_) => continue,
                        Err(why) => return Ended::Lost(why, worked),
                    };
                    let Ok(frame) = Frame::decode(bytes.as_ref()) else {
                        warn!(receiver = %self.name, "A Feishu frame that is not pbbp2; ignored.");
                        continue;
                    };
                    if let Some(answer) = self.handle(frame, &mut fragments).await {
                        worked = true;
                        // Queued for the store here, in arrival order; committed together.
                        in_flight.push_back(answer);
                    }
                }
                Some((ack, _)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(ack) = ack
                        && let Err(e) = conn.ws.send(ack).await
                    {
                        return Ended::Lost(format!("write: {e}"), worked);
                    }
                }
                () = tokio::time::sleep_until(
                    (last_ping + every.min(self.client_config().ping_interval))
                        .min(last_seen + every * 2)
                        .into(),
                ) => {
                    if last_seen.elapsed() >= every * 2 {
                        return Ended::Lost(format!("no pong or frame for {} s: replaced", last_seen.elapsed().as_secs()), worked);
                    }
                    fragments.retain(|_, (at, _)| at.elapsed() < FRAGMENTS_TTL);
                    last_ping = Instant::now();
                    let ping = Frame::ping(conn.service).encode_to_vec();
                    if let Err(e) = conn.ws.send(Message::Binary(ping.into())).await {
                        return Ended::Lost(format!("ping: {e}"), worked);
                    }
                }
                () = stopped(shutdown) => {
                    answer_all(&mut conn.ws, &mut in_flight).await;
                    let _ = conn.ws.close(None).await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    /// One frame: once a whole event is queued for the store, its ack to come (`None` for
    /// control frames, fragments of a message not yet whole, and frames not acknowledged).
    async fn handle(&self, frame: Frame, fragments: &mut Fragments) -> Option<Answer<'_>> {
        let started = Instant::now();
        match (frame.method, frame.header("type")) {
            (0, Some("pong")) => {
                if let Some(p) = frame.payload.as_deref().filter(|p| !p.is_empty())
                    && let Ok(v) = serde_json::from_slice::<Value>(p)
                {
                    debug!(receiver = %self.name, config = %v, "Feishu sent a new client config.");
                    self.configure(&v);
                }
                None
            }
            (0, _) => None,
            (1, Some("event")) => {
                let payload = reassemble(&frame, fragments)?;
                let raw = String::from_utf8_lossy(&payload).into_owned();
                let committed = self.hub.queue(&self.name, Vendor::FeishuWs, raw).await;
                Some(Box::pin(async move {
                    let code = if committed.await { 200 } else { 500 };
                    let ack = frame.ack(code, started.elapsed()).encode_to_vec();
                    (Some(Message::Binary(ack.into())), false)
                }))
            }
            (1, kind) => {
                // Old-style card callbacks do not come over the long connection; the SDKs
                // leave such frames unanswered too.
                warn!(receiver = %self.name, kind = ?kind, "A Feishu data frame of a type not handled; not acknowledged.");
                None
            }
            _ => None,
        }
    }
}

/// The whole payload once every fragment of the frame's message is in; `None` before.
fn reassemble(frame: &Frame, fragments: &mut Fragments) -> Option<Vec<u8>> {
    let sum: usize = frame
        .header("sum")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let payload = frame.payload.clone().unwrap_or_default();
    if sum <= 1 {
        return Some(payload);
    }
    let seq: usize = frame.header("seq").and_then(|s| s.parse().ok())?;
    let id = frame.header("message_id").unwrap_or("").to_owned();
    let (_, parts) = fragments
        .entry(id.clone())
        .or_insert_with(|| (Instant::now(), vec![None; sum.min(1024)]));
    *parts.get_mut(seq)? = Some(payload);
    if parts.iter().all(Option::is_some) {
        let (_, parts) = fragments.remove(&id)?;
        return Some(parts.into_iter().flatten().flatten().collect());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The bytes lark-oapi 1.7.5 sent (streams.md §2.3).
    #[test]
    fn frames_encode_byte_for_byte_as_the_sdk() {
        assert_eq!(
            hex(&Frame::ping(33_554_678).encode_to_vec()),
            "0800100018f681801020002a0c0a0474797065120470696e67"
        );
        let mut data = Frame::ping(33_554_678);
        data.method = 1;
        data.headers = [
            ("type", "event"),
            ("message_id", "m-1"),
            ("sum", "2"),
            ("seq", "0"),
            ("trace_id", "trace-1"),
        ]
        .into_iter()
        .map(|(k, v)| Header {
            key: k.into(),
            value: v.into(),
        })
        .collect();
        let mut ack = data.ack(200, Duration::ZERO);
        ack.payload = Some(b"{\"code\": 200}".to_vec());
        assert_eq!(
            hex(&ack.encode_to_vec()),
            "0800100018f681801020012a0d0a047479706512056576656e742a110a0a6d6573736167655f696412036d2d312a080a0373756d1201322a080a037365711201302a130a0874726163655f6964120774726163652d312a0b0a0662697a5f7274120130420d7b22636f6465223a203230307d"
        );
        assert_eq!(Frame::decode(ack.encode_to_vec().as_slice()).unwrap(), ack);
    }

    #[test]
    fn fragments_are_joined_in_order_whatever_order_they_come_in() {
        let part = |seq: &str, body: &str| Frame {
            method: 1,
            headers: [
                ("type", "event"),
                ("message_id", "m"),
                ("sum", "2"),
                ("seq", seq),
            ]
            .into_iter()
            .map(|(k, v)| Header {
                key: k.into(),
                value: v.into(),
            })
            .collect(),
            payload: Some(body.as_bytes().to_vec()),
            ..Frame::ping(1)
        };
        let mut parts = HashMap::new();
        assert_eq!(reassemble(&part("1", "world\"}"), &mut parts), None);
        assert_eq!(
            reassemble(&part("0", "{\"hello\":\""), &mut parts).as_deref(),
            Some(&b"{\"hello\":\"world\"}"[..])
        );
        assert!(parts.is_empty());
    }
}
