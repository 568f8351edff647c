//! What each vendor's callback means. One file per vendor: read the request, verify and decrypt
//! it through [`crate::crypto`], build the [`Event`] and the vendor-exact reply.
//! Pure and synchronous (no sockets, no store), so tests and fuzzers call it directly.

mod dingtalk;
mod dingtalk_robot;
mod feishu;
mod guard;
mod query;
mod webhook;
mod wechat_mp;
mod wecom;

use std::borrow::Cow;

use crate::config::{Credentials, Receiver};
use crate::crypto::{OpenError, Verified};
use crate::event::{Event, Vendor};

pub use guard::{Guard, Guards};
pub use query::Query;
#[cfg(feature = "server")]
pub(crate) use webhook::basic_matches;

/// The HTTP methods a receiver distinguishes (HEAD is answered like GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// Header lookup by lowercase name; the server implements it for hyper's `HeaderMap`.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
    /// Every header that is text, names lowercase (a webhook receiver's templates see them).
    fn all(&self) -> Vec<(String, String)>;
}

/// Headers as a list of name/value pairs (tests, fuzzers, tools).
pub struct HeaderList<'a>(pub &'a [(&'a str, &'a str)]);

impl Headers for HeaderList<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
            .collect()
    }
}

/// One callback request as the server read it.
pub struct Request<'a> {
    pub method: Method,
    /// The raw query string, without `?`, still percent-encoded.
    pub query: &'a str,
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
    /// Wall-clock time of receipt, Unix milliseconds.
    pub now_ms: i64,
    /// The address the connection came from (a proxy's, behind one), when known.
    pub peer: Option<std::net::IpAddr>,
}

/// The reply to send once the event (if any) is durably stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    pub fn empty() -> Self {
        Self::text(Vec::new())
    }
}

/// A callback that passed every check.
#[derive(Debug)]
pub struct Accepted {
    pub reply: Reply,
    /// `None` for URL checks and hints, which are answered but not stored.
    pub event: Option<Event>,
}

/// A callback refused, with the vendor's own error code where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    pub error: OpenError,
    pub code: Option<i32>,
}

impl Rejected {
    pub fn status(&self) -> u16 {
        self.error.http_status()
    }
}

/// Opens one request for `receiver` with no memory of earlier requests (tests, fuzzers,
/// tools); the server uses [`open_with`] and the receiver's [`Guard`].
pub fn open(receiver: &Receiver, req: &Request<'_>) -> Result<Accepted, Rejected> {
    open_with(receiver, &Guard::default(), req)
}

/// Opens one request for `receiver`; `guard` is what the receiver remembers between requests
/// (used robot signs, the unsigned-decrypt budget).
pub fn open_with(
    receiver: &Receiver,
    guard: &Guard,
    req: &Request<'_>,
) -> Result<Accepted, Rejected> {
    let vendor = receiver.vendor();
    if req.method == Method::Get && req.query.is_empty() {
        return Ok(Accepted {
            reply: hint(),
            event: None,
        });
    }
    let result = match &receiver.credentials {
        Credentials::WeCom { envelope, suite } => wecom::open(receiver, envelope, *suite, req),
        Credentials::WechatMp {
            token,
            envelope,
            mode,
        } => wechat_mp::open(receiver, token, envelope.as_ref(), *mode, req),
        Credentials::DingTalk { envelope } => dingtalk::open(receiver, envelope, req),
        Credentials::Feishu {
            verification_token,
            encrypt_key,
        } => feishu::open(
            receiver,
            verification_token,
            encrypt_key.as_deref(),
            guard,
            req,
        ),
        Credentials::DingTalkRobot { app_secret } => {
            dingtalk_robot::open(receiver, app_secret, guard, req)
        }
        Credentials::Webhook(w) => webhook::open(receiver, w, guard, req),
        // Never routed: stream receivers have no path.
        Credentials::DingTalkStream(_) | Credentials::FeishuWs(_) | Credentials::WecomAibot(_) => {
            Err(OpenError::Method)
        }
    };
    result.map_err(|error| Rejected::new(vendor, error))
}

impl Rejected {
    /// A refusal with the vendor's own code for `error`.
    pub fn new(vendor: Vendor, error: OpenError) -> Self {
        let code = match vendor {
            Vendor::WeCom | Vendor::WechatMp => error.wxbiz_code(),
            Vendor::DingTalk => error.dingtalk_code(),
            // DingTalk robots report every security failure as errcode 310000.
            Vendor::DingTalkRobot => matches!(
                error,
                OpenError::BadSignature
                    | OpenError::StaleTimestamp { .. }
                    | OpenError::Replayed
                    | OpenError::Unauthenticated(_)
            )
            .then_some(310000),
            Vendor::Feishu
            | Vendor::DingTalkStream
            | Vendor::FeishuWs
            | Vendor::WecomAibot
            | Vendor::Webhook
            | Vendor::Schedule => None,
        };
        Self { error, code }
    }
}

/// An event from the operator's own file (`hookgate explain`), as the receiver would have
/// stored it: nothing is verified; a webhook receiver's body rules and templates apply.
pub fn unverified_event(
    receiver: &Receiver,
    text: String,
    now_ms: i64,
) -> Result<Event, OpenError> {
    let event = match &receiver.credentials {
        Credentials::Webhook(w) => webhook::from_file(receiver, w, &text, now_ms),
        _ => Event::parse(
            &receiver.name,
            receiver.vendor(),
            Verified::new(text),
            now_ms,
        )
        .map_err(|e| OpenError::malformed("event file", e)),
    }?;
    // As the intake stores it: rules see the redacted event.
    Ok(event.redact(&receiver.redact))
}

/// The robot `timestamp`/`sign` use of an accepted DingTalk robot request, for the store's
/// shared memory of used pairs; `None` for every other receiver.
pub fn sign_use(receiver: &Receiver, req: &Request<'_>) -> Option<crate::crypto::robot::SignUse> {
    match receiver.credentials {
        Credentials::DingTalkRobot { .. } => dingtalk_robot::sign_use(receiver, req).ok(),
        _ => None,
    }
}

/// What a person who opens the URL in a browser sees: that it is hookgate, nothing about
/// which receiver or vendor (the log line of the request names them).
fn hint() -> Reply {
    Reply::text(
        "hookgate: this is a callback URL. \
         The vendor calls it with signed requests; a bare GET does nothing.\n",
    )
}

/// A required query parameter, or the first present of several spellings.
fn param<'q>(q: &'q Query<'_>, names: &[&'static str]) -> Result<&'q str, OpenError> {
    names
        .iter()
        .find_map(|n| q.get(n))
        .ok_or(OpenError::Missing(names[0]))
}

fn require_post(req: &Request<'_>) -> Result<(), OpenError> {
    match req.method {
        Method::Post => Ok(()),
        _ => Err(OpenError::Method),
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, OpenError> {
    String::from_utf8(bytes).map_err(|_| OpenError::NotUtf8)
}

/// Parses a verified plaintext into an event of `receiver`.
fn event(
    receiver: &Receiver,
    plaintext: Verified<String>,
    now_ms: i64,
) -> Result<Event, OpenError> {
    Event::parse(&receiver.name, receiver.vendor(), plaintext, now_ms)
        .map_err(|e| OpenError::malformed("decrypted message", e))
}

/// A body that must be a JSON object.
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, OpenError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(OpenError::malformed("body", "not a JSON object")),
        Err(e) => Err(OpenError::malformed("body", e)),
    }
}

fn str_field<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    key: &'static str,
) -> Result<&'a str, OpenError> {
    map.get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or(OpenError::Missing(key))
}

/// Lossy text for log lines about a body that is not what it should be.
pub fn preview(body: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(&body[..body.len().min(64)])
}

/// Which receiver setting to check for this failure, for the log line: an
/// undecryptable body is a wrong `encoding_aes_key` far more often than an attack.
pub fn setting_hint(error: &OpenError, vendor: Vendor) -> Option<&'static str> {
    let feishu = matches!(vendor, Vendor::Feishu);
    Some(match error {
        OpenError::Unauthenticated(inner) => return setting_hint(inner, vendor),
        OpenError::BadSignature => match vendor {
            Vendor::Feishu => {
                "check encrypt_key (the app's Encrypt Key), or a proxy changing the body"
            }
            Vendor::DingTalkRobot => "check app_secret (the robot's AppSecret)",
            Vendor::Webhook => {
                "check the receiver's secret (or secrets), algorithm and encoding against the sender's"
            }
            _ => "check token (the console's Token), or a proxy changing the query string or body",
        },
        OpenError::Base64
        | OpenError::CipherLength(_)
        | OpenError::Padding
        | OpenError::IllegalBuffer
        | OpenError::NotUtf8 => {
            if feishu {
                "check encrypt_key (the app's Encrypt Key)"
            } else {
                "check encoding_aes_key (the console's EncodingAESKey / aes_key; while rotating, set previous_encoding_aes_key to the old one)"
            }
        }
        OpenError::ReceiveId { .. } => {
            "check receive_id (WeCom: the CorpID, or the SuiteID for a suite; WeChat: the AppID; DingTalk: the AppKey, or the SuiteKey)"
        }
        OpenError::BadToken => "check verification_token (the app's Verification Token)",
        OpenError::StaleTimestamp { .. } => {
            "check this server's clock (NTP), or widen timestamp_window"
        }
        OpenError::PlaintextRefused => {
            "the vendor sends plaintext: set its console to encrypted (安全模式), or mode = \"compat\""
        }
        _ => return None,
    })
}

#[cfg(test)]
mod hint_tests {
    use super::*;

    /// The newcomer's walk-through: a wrong EncodingAESKey logged only `invalid PKCS#7
    /// padding (-40007)`, with no word on which setting to check.
    #[test]
    fn each_rejection_names_the_setting_to_check() {
        let padding = OpenError::Unauthenticated(Box::new(OpenError::Padding));
        assert!(
            setting_hint(&padding, Vendor::WeCom)
                .unwrap()
                .contains("encoding_aes_key")
        );
        assert!(
            setting_hint(&padding, Vendor::Feishu)
                .unwrap()
                .contains("encrypt_key")
        );
        assert!(
            setting_hint(&OpenError::BadSignature, Vendor::DingTalk)
                .unwrap()
                .starts_with("check token")
        );
        let stale = OpenError::StaleTimestamp {
            timestamp: "1".into(),
            window_secs: 300,
        };
        assert!(
            setting_hint(&stale, Vendor::WeCom)
                .unwrap()
                .contains("clock")
        );
        let id = OpenError::ReceiveId { got: "x".into() };
        assert!(
            setting_hint(&id, Vendor::WeCom)
                .unwrap()
                .contains("receive_id")
        );
        assert_eq!(setting_hint(&OpenError::Method, Vendor::WeCom), None);
    }
}
