//! One probe per vendor, built as the vendor builds its request: signed, encrypted (with
//! `+`, `/` and `=` in the ciphertext, the characters proxies mangle), with what the vendor
//! needs back.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use super::{Expect, Probe};
use crate::clock::now_ms;
use base64::Engine;

use crate::config::{AuthAt, MpMode, Password, WebhookAuth};
use crate::crypto::envelope::{Envelope, Sealed, random_alnum};
use crate::crypto::feishu::FeishuKey;
use crate::crypto::webhook::{self, Algorithm, Encoding};
use crate::secret::Secret;

/// What vendors leave unencoded in query values.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The request's time and nonce, in the forms vendors use.
pub(super) struct Stamp {
    /// Unix seconds.
    pub s: String,
    /// Unix milliseconds (DingTalk).
    pub ms: String,
    pub nonce: String,
}

impl Stamp {
    pub(super) fn now() -> Self {
        Self {
            s: (now_ms() / 1000).to_string(),
            ms: now_ms().to_string(),
            nonce: nonce(),
        }
    }
}

fn nonce() -> String {
    String::from_utf8_lossy(&random_alnum()[..10]).into_owned()
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Seals until the ciphertext holds `+`, `/` and `=`, the characters proxies mangle.
fn seal_awkward(env: &Envelope, msg: &[u8], ts: &str, nonce: &str) -> Sealed {
    let mut sealed = env.seal(0, msg, ts, nonce);
    for _ in 0..500 {
        if sealed.encrypt.contains('+')
            && sealed.encrypt.contains('/')
            && sealed.encrypt.ends_with('=')
        {
            break;
        }
        sealed = env.seal(0, msg, ts, nonce);
    }
    sealed
}

/// WeCom's URL check (GET with `echostr`) or an event (POST).
pub(super) fn wecom(envelope: &Envelope, suite: bool, event: Option<&str>, t: &Stamp) -> Probe {
    let (ts, n) = (&t.s, &t.nonce);
    let Some(xml) = event else {
        // Digits, sized so the ciphertext ends in "=" padding.
        let echo: String = (0..19)
            .map(|i| char::from(b'0' + ((now_ms() as u64 >> i) % 10) as u8))
            .collect();
        let sealed = seal_awkward(envelope, echo.as_bytes(), ts, n);
        return Probe {
            what: "WeCom URL check (GET, echostr)".into(),
            method: reqwest::Method::GET,
            query: format!(
                "msg_signature={}&timestamp={ts}&nonce={n}&echostr={}",
                sealed.msg_signature,
                enc(&sealed.encrypt)
            ),
            headers: vec![],
            body: vec![],
            expect: Expect::Exact(echo.into_bytes()),
        };
    };
    let sealed = seal_awkward(envelope, xml.as_bytes(), ts, n);
    Probe {
        what: "WeCom event (POST)".into(),
        method: reqwest::Method::POST,
        query: format!("msg_signature={}&timestamp={ts}&nonce={n}", sealed.msg_signature),
        headers: vec![("Content-Type".into(), "text/xml".into())],
        body: format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[1]]></AgentID></xml>",
            envelope.receive_id(),
            sealed.encrypt
        )
        .into_bytes(),
        expect: Expect::Exact(if suite { b"success".to_vec() } else { Vec::new() }),
    }
}

/// WeChat MP's URL check (3-part signature) or an event, sealed in safe and compatible mode.
pub(super) fn wechat_mp(
    token: &Secret<String>,
    envelope: Option<&Envelope>,
    mode: MpMode,
    event: Option<&str>,
    t: &Stamp,
) -> Probe {
    let (ts, n) = (&t.s, &t.nonce);
    let mut parts = [token.expose().as_bytes(), ts.as_bytes(), n.as_bytes()];
    let sig = String::from_utf8_lossy(&crate::crypto::envelope::signature(&mut parts)).into_owned();
    match (event, envelope, mode) {
        (None, _, _) => {
            let echo = format!("{}", now_ms());
            Probe {
                what: "WeChat MP URL check (GET, 3-part signature)".into(),
                method: reqwest::Method::GET,
                query: format!("signature={sig}&echostr={echo}&timestamp={ts}&nonce={n}"),
                headers: vec![],
                body: vec![],
                expect: Expect::Exact(echo.into_bytes()),
            }
        }
        (Some(xml), Some(env), MpMode::Safe | MpMode::Compat) => {
            let sealed = seal_awkward(env, xml.as_bytes(), ts, n);
            Probe {
                what: "WeChat MP event (POST, safe mode)".into(),
                method: reqwest::Method::POST,
                query: format!(
                    "signature={sig}&timestamp={ts}&nonce={n}&openid=simulate&encrypt_type=aes&msg_signature={}",
                    sealed.msg_signature
                ),
                headers: vec![("Content-Type".into(), "text/xml".into())],
                body: format!("<xml><ToUserName><![CDATA[gh_simulate]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>", sealed.encrypt).into_bytes(),
                expect: Expect::Exact(b"success".to_vec()),
            }
        }
        (Some(xml), _, _) => Probe {
            what: "WeChat MP event (POST, plaintext)".into(),
            method: reqwest::Method::POST,
            query: format!("signature={sig}&timestamp={ts}&nonce={n}&openid=simulate"),
            headers: vec![("Content-Type".into(), "text/xml".into())],
            body: xml.as_bytes().to_vec(),
            expect: Expect::Exact(b"success".to_vec()),
        },
    }
}

/// DingTalk's `check_url` or an event, answered by the sealed "success" map.
pub(super) fn dingtalk(envelope: &Envelope, event: Option<&str>, t: &Stamp) -> Probe {
    let (ts, n) = (&t.ms, &t.nonce);
    let plain = event.map_or_else(|| r#"{"EventType":"check_url"}"#.to_owned(), str::to_owned);
    let sealed = seal_awkward(envelope, plain.as_bytes(), ts, n);
    Probe {
        what: if event.is_some() {
            "DingTalk event (POST)"
        } else {
            "DingTalk check_url (POST)"
        }
        .into(),
        method: reqwest::Method::POST,
        query: format!(
            "signature={}&timestamp={ts}&nonce={n}",
            sealed.msg_signature
        ),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: json!({"encrypt": sealed.encrypt}).to_string().into_bytes(),
        expect: Expect::DingTalkSuccess,
    }
}

/// Feishu's `url_verification` (answered with its challenge) or an event; encrypted and
/// signed when the receiver has an Encrypt Key.
pub(super) fn feishu(
    verification_token: &Secret<String>,
    encrypt_key: Option<&FeishuKey>,
    event: Option<&str>,
    t: &Stamp,
) -> Probe {
    let challenge = format!("simulate-{}", nonce());
    let plain = match event {
        // Feishu puts the app's verification token in every event (v2: `header.token`).
        Some(e) => match serde_json::from_str::<serde_json::Value>(e) {
            Ok(mut v) => {
                let token = json!(verification_token.expose());
                if let Some(header) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
                    header.insert("token".into(), token);
                } else if let Some(map) = v.as_object_mut() {
                    map.insert("token".into(), token);
                }
                v.to_string()
            }
            Err(_) => e.to_owned(),
        },
        None => json!({"challenge": challenge, "token": verification_token.expose(), "type": "url_verification"}).to_string(),
    };
    let (body, headers) = match encrypt_key {
        Some(key) => {
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&random_alnum());
            let body = json!({"encrypt": key.encrypt(&iv, plain.as_bytes())})
                .to_string()
                .into_bytes();
            let sig = String::from_utf8_lossy(&key.signature(&t.s, &t.nonce, &body)).into_owned();
            let headers = vec![
                (
                    "Content-Type".into(),
                    "application/json; charset=utf-8".into(),
                ),
                ("X-Lark-Request-Timestamp".into(), t.s.clone()),
                ("X-Lark-Request-Nonce".into(), t.nonce.clone()),
                ("X-Lark-Signature".into(), sig),
            ];
            (body, headers)
        }
        None => (
            plain.into_bytes(),
            vec![("Content-Type".into(), "application/json".into())],
        ),
    };
    Probe {
        what: if event.is_some() {
            "Feishu event (POST)"
        } else {
            "Feishu url_verification (POST)"
        }
        .into(),
        method: reqwest::Method::POST,
        query: String::new(),
        headers,
        body,
        expect: if event.is_some() {
            Expect::Ok
        } else {
            Expect::Challenge(challenge)
        },
    }
}

/// A DingTalk robot message, signed; without one, a routing probe with a wrong signature.
pub(super) fn dingtalk_robot(app_secret: &Secret<String>, body: Option<&str>, t: &Stamp) -> Probe {
    let Some(body) = body else {
        // Robots have no URL check: a deliberately wrong signature must come back 403
        // (310000) from hookgate, which proves routing and stores nothing.
        return Probe {
            what: "DingTalk robot routing probe (POST, wrong signature on purpose)".into(),
            method: reqwest::Method::POST,
            query: String::new(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("timestamp".into(), t.ms.clone()),
                ("sign".into(), "aG9va2dhdGUgc2ltdWxhdGU=".into()),
            ],
            body: br#"{"msgtype":"text","text":{"content":"hookgate simulate"}}"#.to_vec(),
            expect: Expect::Refused(Some("310000")),
        };
    };
    let sign = crate::crypto::robot::sign(app_secret.expose(), &t.ms);
    Probe {
        what: "DingTalk robot message (POST)".into(),
        method: reqwest::Method::POST,
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("timestamp".into(), t.ms.clone()),
            ("sign".into(), sign),
        ],
        body: body.as_bytes().to_vec(),
        expect: Expect::Ok,
    }
}

/// A webhook: without an event, a request that must be refused (or, with `auth = "none"`, a
/// bare GET), which stores nothing; with one, the event signed as the receiver's `auth`
/// asks (the first secret).
/// A webhook request that stores nothing: refused for want of a signature, or with
/// `auth = "none"` a bare GET.
fn webhook_routing(auth: &WebhookAuth) -> Probe {
    match auth {
        WebhookAuth::None => Probe {
            what: "webhook routing probe (GET)".into(),
            method: reqwest::Method::GET,
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            expect: Expect::Ok,
        },
        _ => Probe {
            what: "webhook routing probe (POST, unsigned on purpose)".into(),
            method: reqwest::Method::POST,
            query: String::new(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"hookgate":"simulate"}"#.to_vec(),
            expect: Expect::Refused(None),
        },
    }
}

/// Why simulate cannot sign for `auth`, if it cannot.
fn unsignable(auth: &WebhookAuth) -> Option<&'static str> {
    match auth {
        // What a recipe digests (nonces, times, header names) is the platform's to choose.
        WebhookAuth::Recipe(_) => Some("unsigned: simulate cannot sign a recipe"),
        WebhookAuth::Basic { users }
            if !users
                .iter()
                .any(|u| matches!(u.password, Password::Plain(_))) =>
        {
            Some("without credentials: the config holds only password hashes")
        }
        _ => None,
    }
}

pub(super) fn webhook(auth: &WebhookAuth, body: Option<&str>, t: &Stamp) -> Probe {
    let Some(body) = body else {
        return webhook_routing(auth);
    };
    if let Some(why) = unsignable(auth) {
        let mut probe = webhook_routing(auth);
        probe.what =
            format!("webhook routing probe (POST, {why}; send a real event from the platform)");
        return probe;
    }
    let content_type = if body.trim_start().starts_with('<') {
        "application/xml"
    } else {
        "application/json"
    };
    let mut probe = Probe {
        what: "webhook event (POST)".into(),
        method: reqwest::Method::POST,
        query: String::new(),
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.as_bytes().to_vec(),
        expect: Expect::Ok,
    };
    sign_webhook(&mut probe, auth, body, t);
    probe
}

/// Adds what `auth` asks of a sender to `probe`, signed over `body` at `t`.
fn sign_webhook(probe: &mut Probe, auth: &WebhookAuth, body: &str, t: &Stamp) {
    let mut carry = |at: &AuthAt, value: String| match at {
        AuthAt::Header(h) => probe.headers.push((h.clone(), value)),
        AuthAt::Query(q) => {
            probe.query = format!("{q}={}", utf8_percent_encode(&value, QUERY_VALUE));
        }
    };
    match auth {
        WebhookAuth::None => {}
        WebhookAuth::Token {
            at,
            prefix,
            secrets,
        } => carry(at, format!("{prefix}{}", secrets[0].expose())),
        WebhookAuth::Hmac {
            at,
            prefix,
            algorithm,
            encoding,
            secrets,
        } => {
            let mac = webhook::hmac(
                *algorithm,
                secrets[0].expose().as_bytes(),
                &[body.as_bytes()],
            );
            let sig = match encoding {
                Encoding::Hex => hex::encode(mac),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
            };
            carry(at, format!("{prefix}{sig}"));
        }
        WebhookAuth::Recipe(_) => {}
        WebhookAuth::Basic { users } => {
            // One with a plain password (checked above).
            let Some((name, password)) = users.iter().find_map(|u| match &u.password {
                Password::Plain(p) => Some((&u.name, p)),
                Password::Bcrypt(_) => None,
            }) else {
                return;
            };
            let pair = format!("{name}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            probe
                .headers
                .push(("Authorization".into(), format!("Basic {encoded}")));
        }
        WebhookAuth::StandardWebhooks { keys } => {
            let id = format!("msg_hookgate_simulate_{}", t.nonce);
            let parts: [&[u8]; 5] = [id.as_bytes(), b".", t.s.as_bytes(), b".", body.as_bytes()];
            let mac = webhook::hmac(Algorithm::Sha256, keys[0].expose(), &parts);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac);
            probe.headers.push(("webhook-id".into(), id));
            probe
                .headers
                .push(("webhook-timestamp".into(), t.s.clone()));
            probe
                .headers
                .push(("webhook-signature".into(), format!("v1,{sig}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ingress::{HeaderList, Method, Request, open};

    /// What `simulate` sends a webhook receiver is what that receiver accepts (signed as its
    /// `auth` asks) or refuses (the probe without an event).
    #[test]
    fn webhook_probes_are_signed_as_the_receiver_checks() {
        for auth in [
            "auth = \"standard_webhooks\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
            "auth = \"hmac\"\nauth_header = \"X-Sig\"\nprefix = \"sha1=\"\nalgorithm = \"sha1\"\nsecret = \"s\"",
            "auth = \"hmac\"\nauth_query = \"sig\"\nencoding = \"base64\"\nsecret = \"s\"",
            "auth = \"token\"\nauth_query = \"key\"\nsecret = \"a+b/c=\"",
            "auth = \"token\"\nauth_header = \"Authorization\"\nprefix = \"Bearer \"\nsecret = \"t\"",
            "auth = \"basic\"\nusers = [\"yida:pw\"]",
            "auth = \"none\"",
        ] {
            let src = format!(
                "[[receivers]]\nname = \"w\"\nvendor = \"webhook\"\npath = \"/w\"\n{auth}\n\
                 [[rules]]\nname = \"r\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"x\"\n"
            );
            let config = crate::config::parse(&src, &|_| None).unwrap();
            let r = &config.receivers[0];
            let send = |probe: &super::Probe| {
                let headers: Vec<(&str, &str)> = probe
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let method = if probe.method == reqwest::Method::GET {
                    Method::Get
                } else {
                    Method::Post
                };
                open(
                    r,
                    &Request {
                        method,
                        query: &probe.query,
                        headers: &HeaderList(&headers),
                        body: &probe.body,
                        now_ms: crate::clock::now_ms(),
                        peer: None,
                    },
                )
            };
            let signed = crate::simulate::probe(r, Some(r#"{"kind":"test"}"#)).unwrap();
            let accepted = send(&signed).unwrap_or_else(|e| panic!("{auth}: {e}"));
            assert!(accepted.event.is_some(), "{auth}");
            let routing = crate::simulate::probe(r, None).unwrap();
            let answer = send(&routing);
            if auth.contains("none") {
                assert!(answer.unwrap().event.is_none(), "a bare GET stores nothing");
            } else {
                assert_eq!(answer.unwrap_err().status(), 403, "{auth}");
            }
        }
    }
}
