//! Verified plaintext → [`Event`]: the vendor's kind, a dedupe key that a vendor retry
//! reproduces exactly, and every field as JSON. Only [`crate::crypto::Verified`] input is accepted.

pub mod xml;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::crypto::Verified;

/// The vendors hookgate receives callbacks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    WeCom,
    WechatMp,
    DingTalk,
    Feishu,
    DingTalkRobot,
    /// DingTalk Stream mode: events, robot messages, card callbacks over a WebSocket.
    DingTalkStream,
    /// Feishu/Lark long connection (protobuf frames over a WebSocket).
    FeishuWs,
    /// WeCom AI bot (智能机器人) long connection.
    WecomAibot,
    /// A signed webhook from any system (low-code platforms, alerting, CI).
    Webhook,
    /// A scheduled rule's slot: made by the gateway's own clock, not received.
    Schedule,
}

impl Vendor {
    /// The vendors a receiver can be (not [`Vendor::Schedule`]).
    pub const ALL: [Vendor; 9] = [
        Self::WeCom,
        Self::WechatMp,
        Self::DingTalk,
        Self::Feishu,
        Self::DingTalkRobot,
        Self::DingTalkStream,
        Self::FeishuWs,
        Self::WecomAibot,
        Self::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WeCom => "wecom",
            Self::WechatMp => "wechat_mp",
            Self::DingTalk => "dingtalk",
            Self::Feishu => "feishu",
            Self::DingTalkRobot => "dingtalk_robot",
            Self::DingTalkStream => "dingtalk_stream",
            Self::FeishuWs => "feishu_ws",
            Self::WecomAibot => "wecom_aibot",
            Self::Webhook => "webhook",
            Self::Schedule => "schedule",
        }
    }

    /// Received over a long connection the gateway opens, not at a callback URL.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Self::DingTalkStream | Self::FeishuWs | Self::WecomAibot
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decrypted plaintext that is not the XML or JSON object its vendor sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Xml(#[from] xml::XmlError),
    #[error("JSON: {0}")]
    Json(String),
    #[error("expected a JSON object")]
    NotAnObject,
    /// PostgreSQL text cannot hold U+0000, and no vendor sends it: refused before the store,
    /// where it would fail every callback committed with it.
    #[error("a NUL character in the {0}")]
    Nul(&'static str),
}

/// What a redacted field's value becomes.
pub const REDACTED: &str = "[redacted]";

/// The receiver name scheduled events are stored under.
pub const SCHEDULE_RECEIVER: &str = "schedule";

/// The longest kind a template may give an event, in characters.
pub const MAX_KIND: usize = 128;
/// The longest dedupe key kept as written, in bytes; a longer one is stored as its SHA-256.
pub const MAX_KEY: usize = 256;

/// One verified callback, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    receiver: String,
    vendor: Vendor,
    kind: String,
    dedupe_key: String,
    received_at_ms: i64,
    fields: Map<String, Value>,
    raw: String,
}

impl Event {
    /// Parses a verified plaintext of `vendor`'s format into an event.
    pub fn parse(
        receiver: &str,
        vendor: Vendor,
        plaintext: Verified<String>,
        received_at_ms: i64,
    ) -> Result<Self, ParseError> {
        let raw = plaintext.into_inner();
        if raw.contains('\0') {
            return Err(ParseError::Nul("message"));
        }
        let fields = parse_fields(&raw)?;
        let (kind, dedupe_key) = match vendor {
            Vendor::WeCom | Vendor::WechatMp => (wecom_kind(&fields), wecom_dedupe(&fields, &raw)),
            Vendor::DingTalk => (
                text(&fields, "EventType").unwrap_or("unknown").to_owned(),
                keyed(&fields, &["eventId", "EventId"], &raw),
            ),
            Vendor::Feishu => (feishu_kind(&fields), feishu_dedupe(&fields, &raw)),
            Vendor::DingTalkRobot => (
                text(&fields, "msgtype").unwrap_or("unknown").to_owned(),
                keyed(&fields, &["msgId"], &raw),
            ),
            // Normalised by the stream client: events carry EventType and eventId, robot
            // messages msgtype and msgId, card callbacks EventType "card_callback".
            Vendor::DingTalkStream => (
                text(&fields, "EventType")
                    .or_else(|| text(&fields, "msgtype"))
                    .unwrap_or("unknown")
                    .to_owned(),
                keyed(&fields, &["eventId", "msgId", "messageId"], &raw),
            ),
            Vendor::FeishuWs => (feishu_kind(&fields), feishu_dedupe(&fields, &raw)),
            Vendor::WecomAibot => (
                match text(&fields, "msgtype") {
                    Some("event") => lookup(&fields, "event.eventtype")
                        .and_then(Value::as_str)
                        .unwrap_or("event"),
                    other => other.unwrap_or("unknown"),
                }
                .to_owned(),
                keyed(&fields, &["msgid"], &raw),
            ),
            // The receiver's own `kind` and `dedupe_key` templates may say better
            // ([`Event::retag`]).
            Vendor::Webhook => ("webhook".to_owned(), body_hash(&raw)),
            Vendor::Schedule => ("schedule".to_owned(), body_hash(&raw)),
        };
        // A JSON escape (`\u0000`) reaches the kind or key though the raw text has none.
        if kind.contains('\0') || dedupe_key.contains('\0') {
            return Err(ParseError::Nul("event kind or id"));
        }
        Ok(Self {
            receiver: receiver.to_owned(),
            vendor,
            kind,
            dedupe_key,
            received_at_ms,
            fields,
            raw,
        })
    }

    /// The event a scheduled rule's slot makes: receiver `schedule`, the rule's name as its
    /// kind, `rule@slot` (epoch seconds) as its dedupe key, so each slot is stored once however
    /// many processes or restarts reach it. Its fields: `schedule` (the rule), `slot` (RFC 3339
    /// in `tz`) and `slot_ms`.
    pub fn scheduled(
        rule: &str,
        slot: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
        now_ms: i64,
    ) -> Self {
        let local = slot.to_zoned(tz.clone());
        let mut fields = Map::new();
        fields.insert("schedule".into(), rule.into());
        fields.insert(
            "slot".into(),
            local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().into(),
        );
        fields.insert("slot_ms".into(), slot.as_millisecond().into());
        let raw = Value::Object(fields.clone()).to_string();
        Self {
            receiver: SCHEDULE_RECEIVER.to_owned(),
            vendor: Vendor::Schedule,
            kind: rule.to_owned(),
            dedupe_key: format!("{rule}@{}", slot.as_second()),
            received_at_ms: now_ms,
            fields,
            raw,
        }
    }

    /// The same event under another kind or dedupe key (a webhook receiver's templates); an
    /// empty value keeps the one it had. Both come from event data, so both are bounded: a
    /// kind is cut at [`MAX_KIND`] characters, a key longer than [`MAX_KEY`] is stored as its
    /// SHA-256 (as unique, and as stable across retries).
    pub fn retag(
        mut self,
        kind: Option<String>,
        dedupe_key: Option<String>,
    ) -> Result<Self, ParseError> {
        for (slot, value) in [(&mut self.kind, kind), (&mut self.dedupe_key, dedupe_key)] {
            match value {
                Some(v) if v.contains('\0') => return Err(ParseError::Nul("event kind or id")),
                Some(v) if !v.trim().is_empty() => *slot = v.trim().to_owned(),
                _ => {}
            }
        }
        if self.kind.chars().count() > MAX_KIND {
            self.kind = self.kind.chars().take(MAX_KIND).collect();
        }
        if self.dedupe_key.len() > MAX_KEY {
            self.dedupe_key = body_hash(&self.dedupe_key);
        }
        Ok(self)
    }

    /// Blanks every field named in `names`, at any depth, to [`REDACTED`]; if one was
    /// there, the body becomes the redacted fields as JSON (what is stored and shown). The
    /// kind and dedupe key were read before, so a retry is still known.
    pub fn redact(mut self, names: &[String]) -> Self {
        fn blank_map(map: &mut Map<String, Value>, names: &[String]) -> bool {
            let mut changed = false;
            for (key, v) in map.iter_mut() {
                if !names.iter().any(|n| n == key) {
                    changed |= blank(v, names);
                } else if !v.is_null() && v.as_str() != Some(REDACTED) {
                    *v = Value::String(REDACTED.into());
                    changed = true;
                }
            }
            changed
        }
        fn blank(value: &mut Value, names: &[String]) -> bool {
            match value {
                Value::Object(map) => blank_map(map, names),
                Value::Array(items) => items.iter_mut().fold(false, |c, v| blank(v, names) | c),
                _ => false,
            }
        }
        if !names.is_empty() && blank_map(&mut self.fields, names) {
            self.raw = Value::Object(self.fields.clone()).to_string();
        }
        self
    }

    /// For the fuzzer only (cargo-fuzz sets `cfg(fuzzing)`): parse without verification.
    #[cfg(fuzzing)]
    pub fn parse_unverified_for_fuzzing(vendor: Vendor, raw: &str) -> Result<Self, ParseError> {
        Self::parse("fuzz", vendor, Verified::new(raw.to_owned()), 0)
    }

    pub fn receiver(&self) -> &str {
        &self.receiver
    }
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }
    pub fn kind(&self) -> &str {
        &self.kind
    }
    pub fn dedupe_key(&self) -> &str {
        &self.dedupe_key
    }
    pub fn received_at_ms(&self) -> i64 {
        self.received_at_ms
    }
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
    /// The decrypted plaintext exactly as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

/// XML (WeCom and WeChat classic) or a JSON object (everything else), by the first byte.
/// The store keeps only the decrypted body and derives the fields again on reading.
pub(crate) fn parse_fields(raw: &str) -> Result<Map<String, Value>, ParseError> {
    let trimmed = raw.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.starts_with('<') {
        return Ok(xml::to_json(trimmed)?);
    }
    match serde_json::from_str(trimmed).map_err(|e| ParseError::Json(e.to_string()))? {
        Value::Object(map) => Ok(map),
        _ => Err(ParseError::NotAnObject),
    }
}

/// A field as text: strings as they are, numbers in their JSON spelling.
fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match fields.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn lookup<'a>(fields: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = fields.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// `key=value` of the first id field present, else a hash of the whole plaintext.
fn keyed(fields: &Map<String, Value>, keys: &[&str], raw: &str) -> String {
    keys.iter()
        .find_map(|k| {
            lookup(fields, k)
                .and_then(scalar)
                .map(|v| format!("{k}={v}"))
        })
        .unwrap_or_else(|| body_hash(raw))
}

fn body_hash(raw: &str) -> String {
    let digest: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
    let hex: [u8; 64] = crate::crypto::hex_lower(&digest);
    format!("sha256={}", String::from_utf8_lossy(&hex))
}

/// WeCom/WeChat: `MsgType`, or `Event`/`InfoType` with `/ChangeType`; JSON-mode bots: `msgtype`.
fn wecom_kind(fields: &Map<String, Value>) -> String {
    let base = text(fields, "InfoType")
        .or_else(|| match text(fields, "MsgType") {
            Some("event") => text(fields, "Event"),
            other => other,
        })
        .or_else(|| text(fields, "msgtype"))
        .unwrap_or("unknown");
    match text(fields, "ChangeType") {
        Some(change) => format!("{base}/{change}"),
        None => base.to_owned(),
    }
}

/// The fields that, with sender and time, tell two WeCom events of the same second apart.
const WECOM_EVENT_KEYS: &[&str] = &[
    "FromUserName",
    "CreateTime",
    "Event",
    "ChangeType",
    "InfoType",
    "SuiteId",
    "AuthCorpId",
    "TimeStamp",
    "UserID",
    "NewUserID",
    "Id",
    "TagId",
    "AddUserItems",
    "DelUserItems",
    "AddPartyItems",
    "DelPartyItems",
    "ChatId",
    "ExternalUserID",
    "UpdateDetail",
    "EventKey",
    "SpNo",
    "ApprovalInfo.SpNo",
    "ApprovalInfo.SpStatus",
    "ApprovalInfo.StatuChangeEvent",
    "JobId",
    "TaskId",
];

/// `MsgId` for messages; for events the sender, time, type and object ids (never a merge of
/// two distinct events in one second); a body hash if none of those exist.
fn wecom_dedupe(fields: &Map<String, Value>, raw: &str) -> String {
    for id in ["MsgId", "msgid"] {
        if let Some(v) = lookup(fields, id).and_then(scalar) {
            return format!("{id}={v}");
        }
    }
    let parts: Vec<String> = WECOM_EVENT_KEYS
        .iter()
        .filter_map(|k| {
            lookup(fields, k)
                .and_then(scalar)
                .map(|v| format!("{k}={v}"))
        })
        .collect();
    if parts.is_empty() {
        body_hash(raw)
    } else {
        parts.join("|")
    }
}

/// v2: `header.event_type`; v1: `event.type`.
fn feishu_kind(fields: &Map<String, Value>) -> String {
    lookup(fields, "header.event_type")
        .or_else(|| lookup(fields, "event.type"))
        .or_else(|| lookup(fields, "type"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned()
}

fn feishu_dedupe(fields: &Map<String, Value>, raw: &str) -> String {
    keyed(fields, &["header.event_id", "uuid"], raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_fields_are_blanked_at_any_depth_and_the_body_follows() {
        let xml = "<xml><ToUserName>ww1</ToUserName><MsgType>event</MsgType><Event>change_contact</Event>\
                   <ChangeType>create_user</ChangeType><UserID>zhangsan</UserID>\
                   <Mobile>13800000000</Mobile><Email>z@example.com</Email></xml>";
        let e = Event::parse("hr", Vendor::WeCom, Verified::new(xml.to_owned()), 1).unwrap();
        let key = e.dedupe_key().to_owned();
        let names = ["Mobile".to_owned(), "Email".to_owned()];
        let r = e.redact(&names);
        assert_eq!(r.fields()["Mobile"], REDACTED);
        assert_eq!(r.fields()["UserID"], "zhangsan");
        assert!(!r.raw().contains("13800000000") && !r.raw().contains("z@example.com"));
        assert_eq!(
            parse_fields(r.raw()).unwrap(),
            *r.fields(),
            "the stored body reads back"
        );
        assert_eq!(r.dedupe_key(), key, "a retry is still known");
        let json = r#"{"a":[{"mobile":"1"},{"b":{"mobile":2}}],"mobile":null,"keep":"x"}"#;
        let e = Event::parse("w", Vendor::Webhook, Verified::new(json.to_owned()), 1).unwrap();
        let r = e.redact(&["mobile".to_owned()]);
        assert_eq!(
            Value::Object(r.fields().clone()),
            serde_json::json!({"a":[{"mobile":REDACTED},{"b":{"mobile":REDACTED}}],"mobile":null,"keep":"x"})
        );
        // Nothing to blank: the body stays as received.
        let e = Event::parse("w", Vendor::Webhook, Verified::new(json.to_owned()), 1).unwrap();
        assert_eq!(e.redact(&["other".to_owned()]).raw(), json);
    }

    fn parse(vendor: Vendor, raw: &str) -> Event {
        Event::parse("r", vendor, Verified::new(raw.to_owned()), 0).unwrap()
    }

    #[test]
    fn wecom_message_and_contact_events() {
        let msg = parse(
            Vendor::WeCom,
            "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>42</MsgId></xml>",
        );
        assert_eq!((msg.kind(), msg.dedupe_key()), ("text", "MsgId=42"));
        let a = parse(
            Vendor::WeCom,
            "<xml><FromUserName>sys</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType>\
             <Event>change_contact</Event><ChangeType><![CDATA[create_user]]></ChangeType><UserID>a</UserID></xml>",
        );
        let b = parse(Vendor::WeCom, &a.raw().replace("<UserID>a", "<UserID>b"));
        assert_eq!(a.kind(), "change_contact/create_user");
        assert_ne!(a.dedupe_key(), b.dedupe_key());
        assert!(a.dedupe_key().contains("UserID=a"));
    }

    #[test]
    fn dingtalk_feishu_and_robot_keys() {
        let d = parse(
            Vendor::DingTalk,
            r#"{"EventType":"user_add_org","eventId":"e1"}"#,
        );
        assert_eq!((d.kind(), d.dedupe_key()), ("user_add_org", "eventId=e1"));
        let d2 = parse(
            Vendor::DingTalk,
            r#"{"EventType":"org_dept_create","DeptId":[1]}"#,
        );
        assert!(d2.dedupe_key().starts_with("sha256="));
        let f2 = parse(
            Vendor::Feishu,
            r#"{"schema":"2.0","header":{"event_id":"x","event_type":"im.message.receive_v1"},"event":{}}"#,
        );
        assert_eq!(
            (f2.kind(), f2.dedupe_key()),
            ("im.message.receive_v1", "header.event_id=x")
        );
        let f1 = parse(
            Vendor::Feishu,
            r#"{"uuid":"u","event":{"type":"add_user_to_chat"}}"#,
        );
        assert_eq!((f1.kind(), f1.dedupe_key()), ("add_user_to_chat", "uuid=u"));
        let r = parse(Vendor::DingTalkRobot, r#"{"msgtype":"text","msgId":"m"}"#);
        assert_eq!((r.kind(), r.dedupe_key()), ("text", "msgId=m"));
    }

    #[test]
    fn non_object_json_is_an_error() {
        let err = Event::parse("r", Vendor::Feishu, Verified::new("[1]".into()), 0).unwrap_err();
        assert_eq!(err, ParseError::NotAnObject);
    }

    /// Security review, defect 13: a signed plaintext with a NUL failed every callback
    /// committed with it on PostgreSQL (text cannot hold U+0000).
    #[test]
    fn a_nul_is_refused_before_the_store() {
        let open = |vendor, raw: &str| Event::parse("r", vendor, Verified::new(raw.into()), 0);
        assert_eq!(
            open(
                Vendor::WeCom,
                "<xml><MsgType>text</MsgType><Content>a\0b</Content></xml>"
            ),
            Err(ParseError::Nul("message"))
        );
        assert_eq!(
            open(
                Vendor::DingTalkRobot,
                r#"{"msgtype":"text","msgId":"m\u0000"}"#
            ),
            Err(ParseError::Nul("event kind or id"))
        );
    }
}
