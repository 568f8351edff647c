//! DingTalk Stream mode (streams.md §1): `POST /v1.0/gateway/connections/open` for an
//! endpoint and a single-use ticket, a WebSocket to `endpoint?ticket=…`, JSON text frames
//! `{specVersion, type, headers{topic, messageId, …}, data:"<json>"}` answered by
//! `{code, headers{contentType, messageId}, message, data}`. Events are acknowledged
//! `SUCCESS` only after the store committed them (`LATER` when it could not, so DingTalk
//! pushes again); robot messages likewise, or not at all. On `SYSTEM/disconnect` a new
//! connection is opened before the old one is let go (make-before-break).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tracing::warn;

use super::{
    Answer, Backoff, Dialer, Ended, Failure, Hub, Link, Ws, answer_all, incoming, stopped,
};
use crate::config::{DingTalkStream, StreamTopic};
use crate::event::Vendor;

const OPEN_PATH: &str = "/v1.0/gateway/connections/open";
const ROBOT_TOPIC: &str = "/v1.0/im/bot/messages/get";
const CARD_TOPIC: &str = "/v1.0/card/instances/callback";
/// How long an old connection may keep delivering after `disconnect` (the server closes
/// it after 10 s).
const DRAIN: Duration = Duration::from_secs(15);

pub struct Client {
    name: String,
    config: DingTalkStream,
    hub: Arc<Hub>,
    dial: Dialer,
}

impl Link for Client {
    type Ws = Ws;

    fn name(&self) -> &str {
        &self.name
    }

    fn label(&self) -> &'static str {
        "DingTalk stream"
    }

    /// As the DingTalk SDKs: from 1 s, doubling, at most a minute.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    async fn connect(&self) -> Result<Ws, Failure> {
        self.open().await
    }

    async fn session(&self, ws: Ws, shutdown: &mut watch::Receiver<bool>) -> Ended<Ws> {
        self.run_session(ws, shutdown).await
    }

    async fn drain(&self, ws: Ws) {
        self.finish(ws).await;
    }
}

impl Client {
    pub fn new(name: String, config: DingTalkStream, hub: Arc<Hub>) -> Self {
        Self {
            dial: Dialer::new(&name),
            name,
            config,
            hub,
        }
    }

    /// Discovery (a fresh ticket every time: tickets are single-use) and the handshake.
    async fn open(&self) -> Result<Ws, Failure> {
        let subscriptions: Vec<Value> = self
            .config
            .topics
            .iter()
            .map(|t| match t {
                StreamTopic::Events => json!({"type": "EVENT", "topic": "*"}),
                StreamTopic::RobotMessages => json!({"type": "CALLBACK", "topic": ROBOT_TOPIC}),
                StreamTopic::CardCallbacks => json!({"type": "CALLBACK", "topic": CARD_TOPIC}),
            })
            .collect();
        let body = json!({
            "clientId": self.config.client_id,
            "clientSecret": self.config.client_secret.expose(),
            "subscriptions": subscriptions,
            "ua": concat!("hookgate/", env!("CARGO_PKG_VERSION")),
        });
        let answer = self
            .dial
            .http
            .post(format!("{}{OPEN_PATH}", self.config.api_base))
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("connections/open: {e}")))?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = parsed["code"].as_str().unwrap_or("");
        match status {
            200 => {}
            401 | 403 => {
                return Err(Failure::Fatal(format!(
                    "connections/open answered {status} {code} {}: check client_id and client_secret",
                    parsed["message"].as_str().unwrap_or("")
                )));
            }
            400 => {
                return Err(Failure::Fatal(format!(
                    "connections/open answered 400: {}",
                    text.chars().take(200).collect::<String>()
                )));
            }
            _ => {
                return Err(Failure::Retry(format!(
                    "connections/open answered {status}: {}",
                    text.chars().take(200).collect::<String>()
                )));
            }
        }
        let (Some(endpoint), Some(ticket)) =
            (parsed["endpoint"].as_str(), parsed["ticket"].as_str())
        else {
            return Err(Failure::Retry(format!(
                "connections/open answered without endpoint and ticket: {}",
                text.chars().take(200).collect::<String>()
            )));
        };
        // As the SDKs send it (quote_plus): unreserved characters stay as they are.
        const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let url = format!(
            "{endpoint}?ticket={}",
            percent_encoding::utf8_percent_encode(ticket, QUERY)
        );
        self.dial
            .websocket(&url)
            .await
            .map_err(|e| Failure::Retry(format!("WebSocket to {endpoint}: {e}")))
    }

    /// Reads and answers frames until the connection ends, pinging when quiet; a connection
    /// that delivers nothing (not even a pong) for two keepalive periods is given up.
    ///
    /// Frames are pipelined: up to [`Hub::in_flight`] are being stored at once (the store
    /// commits them together), each handed to the store in the order it arrived and
    /// answered, in that order, once its own commit is done.
    async fn run_session(&self, mut ws: Ws, shutdown: &mut watch::Receiver<bool>) -> Ended<Ws> {
        let every = self.config.keepalive;
        let mut tick = tokio::time::interval(every);
        tick.reset();
        let mut last_seen = Instant::now();
        let mut worked = false;
        let mut in_flight = FuturesOrdered::new();
        let window = self.hub.in_flight();
        loop {
            tokio::select! {
                frame = ws.next(), if in_flight.len() < window => {
                    last_seen = Instant::now();
                    let text = match incoming(frame, "DingTalk") {
                        Ok(Some(Message::Text(t))) => t,
                        Ok(_) => continue,
                        Err(why) => return Ended::Lost(why, worked),
                    };
                    worked = true;
                    // Queued for the store here, in arrival order; committed together.
                    in_flight.push_back(self.handle(text).await);
                }
                Some((reply, go_away)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(reply) = reply
                        && let Err(e) = ws.send(reply).await
                    {
                        return Ended::Lost(format!("write: {e}"), worked);
                    }
                    if go_away {
                        // What arrived before the disconnect is answered on this connection.
                        answer_all(&mut ws, &mut in_flight).await;
                        return Ended::GoAway(Box::new(ws));
                    }
                }
                _ = tick.tick() => {
                    if last_seen.elapsed() >= every * 2 {
                        return Ended::Lost(format!("nothing received for {} s, not even a pong: replaced", last_seen.elapsed().as_secs()), worked);
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return Ended::Lost(format!("ping: {e}"), worked);
                    }
                }
                () = stopped(shutdown) => {
                    answer_all(&mut ws, &mut in_flight).await;
                    let _ = ws.close(None).await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    /// After `disconnect`: keep answering what the old connection still delivers until it
    /// closes (or [`DRAIN`] passes).
    async fn finish(&self, mut ws: Ws) {
        let deadline = tokio::time::sleep(DRAIN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                frame = ws.next() => match incoming(frame, "DingTalk") {
                    Ok(Some(Message::Text(t))) => {
                        if let (Some(reply), _) = self.handle(t).await.await {
                            let _ = ws.send(reply).await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                () = &mut deadline => {
                    let _ = ws.close(None).await;
                    return;
                }
            }
        }
    }

    /// One frame from DingTalk: once what it carries is queued for the store, the answer to
    /// come (the reply to send, if any, and whether it asked us to go).
    async fn handle(&self, text: impl AsRef<str>) -> Answer<'_> {
        let text = text.as_ref();
        let now = |reply: Option<String>, go_away: bool| -> Answer<'_> {
            Box::pin(std::future::ready((reply.map(Message::text), go_away)))
        };
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            warn!(receiver = %self.name, frame = %text.chars().take(200).collect::<String>(), "A DingTalk stream frame that is not JSON; ignored.");
            return now(None, false);
        };
        let headers = frame["headers"].as_object().cloned().unwrap_or_default();
        let header = |k: &str| headers.get(k).and_then(Value::as_str).unwrap_or("");
        let message_id = header("messageId").to_owned();
        let data = frame["data"].as_str().unwrap_or("");
        match (frame["type"].as_str().unwrap_or(""), header("topic")) {
            ("SYSTEM", "ping") => now(Some(ack(&message_id, 200, "OK", data)), false),
            ("SYSTEM", "disconnect") => now(Some(ack(&message_id, 200, "OK", data)), true),
            ("SYSTEM", _) => now(None, false),
            ("EVENT", _) => {
                let committed = self.store(event_body(&headers, data, &message_id)).await;
                Box::pin(async move {
                    let (code, status) = match committed.await {
                        true => (200, json!({"status": "SUCCESS", "message": "success"})),
                        // DingTalk pushes it again later.
                        false => (
                            500,
                            json!({"status": "LATER", "message": "store unavailable"}),
                        ),
                    };
                    (
                        Some(Message::text(ack(
                            &message_id,
                            code,
                            "OK",
                            &status.to_string(),
                        ))),
                        false,
                    )
                })
            }
            ("CALLBACK", topic @ (ROBOT_TOPIC | CARD_TOPIC)) => {
                let committed = self.store(callback_body(topic, data, &message_id)).await;
                let robot = topic == ROBOT_TOPIC;
                Box::pin(async move {
                    if !committed.await {
                        // No answer: DingTalk pushes the callback again.
                        return (None, false);
                    }
                    let response = if robot {
                        json!({"response": null})
                    } else {
                        json!({"response": {}})
                    };
                    (
                        Some(Message::text(ack(
                            &message_id,
                            200,
                            "OK",
                            &response.to_string(),
                        ))),
                        false,
                    )
                })
            }
            (kind, topic) => {
                warn!(receiver = %self.name, kind = %kind, topic = %topic, "A DingTalk stream frame of a topic not subscribed to; answered 404.");
                now(
                    Some(ack(&message_id, 404, "topic not supported", "{}")),
                    false,
                )
            }
        }
    }

    /// Queues an event body for the store; the future it gives tells whether it is safely
    /// committed.
    async fn store(
        &self,
        body: Map<String, Value>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        let raw = Value::Object(body).to_string();
        self.hub
            .queue(&self.name, Vendor::DingTalkStream, raw)
            .await
    }
}

/// The reply frame DingTalk expects for `message_id`.
fn ack(message_id: &str, code: u16, message: &str, data: &str) -> String {
    json!({
        "code": code,
        "headers": {"contentType": "application/json", "messageId": message_id},
        "message": message,
        "data": data,
    })
    .to_string()
}

/// `data` as an object (a non-object is kept under `data`).
fn object(data: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(m)) => m,
        Ok(other) => Map::from_iter([("data".to_owned(), other)]),
        Err(_) => Map::from_iter([("data".to_owned(), Value::String(data.to_owned()))]),
    }
}

/// A stream event as the HTTP push would carry it: `EventType`, `eventId` and `CorpId` from
/// the headers, and each camelCase field also under its PascalCase name (`userId` and
/// `UserId`), so one rule matches events from either channel.
fn event_body(headers: &Map<String, Value>, data: &str, message_id: &str) -> Map<String, Value> {
    let mut body = object(data);
    let header = |k: &str| headers.get(k).cloned();
    let aliases: Vec<(String, Value)> = body
        .iter()
        .filter_map(|(k, v)| {
            let mut chars = k.chars();
            let first = chars.next()?;
            first.is_ascii_lowercase().then(|| {
                (
                    format!("{}{}", first.to_ascii_uppercase(), chars.as_str()),
                    v.clone(),
                )
            })
        })
        .collect();
    for (k, v) in aliases {
        body.entry(k).or_insert(v);
    }
    for (field, from) in [
        ("EventType", "eventType"),
        ("eventId", "eventId"),
        ("CorpId", "eventCorpId"),
        ("EventTime", "eventBornTime"),
    ] {
        if let Some(v) = header(from) {
            body.entry(field).or_insert(v);
        }
    }
    body.insert("messageId".into(), Value::String(message_id.to_owned()));
    body
}

/// A robot message (the same fields as the HTTP robot callback, `sessionWebhook` included)
/// or a card action (`EventType` `card_callback`).
fn callback_body(topic: &str, data: &str, message_id: &str) -> Map<String, Value> {
    let mut body = object(data);
    if topic == CARD_TOPIC {
        body.insert("EventType".into(), Value::String("card_callback".into()));
    }
    body.insert("messageId".into(), Value::String(message_id.to_owned()));
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Verified;
    use crate::event::Event;

    #[test]
    fn stream_events_read_like_http_pushes() {
        let headers = json!({"topic": "*", "messageId": "m1", "eventType": "user_add_org", "eventId": "e1", "eventCorpId": "dingcorp", "eventBornTime": "1683533823336"});
        let body = event_body(
            headers.as_object().unwrap(),
            r#"{"timeStamp":"1685501863357","userId":["u1"]}"#,
            "m1",
        );
        assert_eq!(body["EventType"], "user_add_org");
        assert_eq!(body["UserId"], json!(["u1"]));
        assert_eq!(body["userId"], json!(["u1"]));
        assert_eq!(body["CorpId"], "dingcorp");
        let event = Event::parse(
            "s",
            Vendor::DingTalkStream,
            Verified::new(Value::Object(body).to_string()),
            0,
        )
        .unwrap();
        assert_eq!(
            (event.kind(), event.dedupe_key()),
            ("user_add_org", "eventId=e1")
        );
    }

    #[test]
    fn acks_carry_the_message_id_and_json_data() {
        let a: Value =
            serde_json::from_str(&ack("m-1", 200, "OK", r#"{"opaque":"op-1"}"#)).unwrap();
        assert_eq!(a["headers"]["messageId"], "m-1");
        assert_eq!(a["headers"]["contentType"], "application/json");
        assert_eq!(a["data"], r#"{"opaque":"op-1"}"#);
        let robot = callback_body(ROBOT_TOPIC, r#"{"msgId":"x1","msgtype":"text"}"#, "m-2");
        let event = Event::parse(
            "s",
            Vendor::DingTalkStream,
            Verified::new(Value::Object(robot).to_string()),
            0,
        )
        .unwrap();
        assert_eq!((event.kind(), event.dedupe_key()), ("text", "msgId=x1"));
    }
}
