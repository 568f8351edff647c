//! `hookgate simulate`: builds a URL check (or, with an event file, an event) exactly as the
//! vendor would (signed, encrypted, with `+`, `/` and `=` in the ciphertext), sends it to
//! the local listener or to the public URL through the reverse proxy, checks the reply byte
//! for byte, and says in one line what is wrong when it is wrong.

use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::config::{Credentials, MpMode, Receiver};
use crate::crypto::Freshness;
use crate::crypto::envelope::{Envelope, Signed, random_alnum};

/// What vendors leave unencoded in query values.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One request as the vendor sends it, and what the vendor needs back.
#[derive(Debug)]
pub struct Probe {
    pub what: String,
    pub method: reqwest::Method,
    /// Query string, already encoded as the vendor encodes it.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    expect: Expect,
}

#[derive(Debug)]
enum Expect {
    /// These exact bytes (the bare plaintext, "success", or nothing).
    Exact(Vec<u8>),
    /// DingTalk's encrypted "success" map, sealed for this receiver.
    DingTalkSuccess,
    /// `{"challenge": …}` with this value.
    Challenge(String),
    /// Any 200.
    Ok,
    /// A 403 with this vendor code (the robot probe, which must not store anything).
    Refused(&'static str),
}

fn nonce() -> String {
    String::from_utf8_lossy(&random_alnum()[..10]).into_owned()
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Seals until the ciphertext holds `+`, `/` and `=`, the characters proxies mangle.
fn seal_awkward(
    env: &Envelope,
    msg: &[u8],
    ts: &str,
    nonce: &str,
) -> crate::crypto::envelope::Sealed {
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

/// Builds the probe for `receiver`: its URL check, or `event` (a decrypted body) if given.
pub fn probe(receiver: &Receiver, event: Option<&str>) -> anyhow::Result<Probe> {
    let ts_s = (now_ms() / 1000).to_string();
    let ts_ms = now_ms().to_string();
    let n = nonce();
    Ok(match (&receiver.credentials, event) {
        (Credentials::WeCom { envelope, .. }, None) => {
            // Digits, sized so the ciphertext ends in "=" padding.
            let echo: String = (0..19)
                .map(|i| char::from(b'0' + ((now_ms() as u64 >> i) % 10) as u8))
                .collect();
            let sealed = seal_awkward(envelope, echo.as_bytes(), &ts_s, &n);
            Probe {
                what: "WeCom URL check (GET, echostr)".into(),
                method: reqwest::Method::GET,
                query: format!(
                    "msg_signature={}&timestamp={ts_s}&nonce={n}&echostr={}",
                    sealed.msg_signature,
                    enc(&sealed.encrypt)
                ),
                headers: vec![],
                body: vec![],
                expect: Expect::Exact(echo.into_bytes()),
            }
        }
        (Credentials::WeCom { envelope, suite }, Some(xml)) => {
            let sealed = seal_awkward(envelope, xml.as_bytes(), &ts_s, &n);
            Probe {
                what: "WeCom event (POST)".into(),
                method: reqwest::Method::POST,
                query: format!("msg_signature={}&timestamp={ts_s}&nonce={n}", sealed.msg_signature),
                headers: vec![("Content-Type".into(), "text/xml".into())],
                body: format!(
                    "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[1]]></AgentID></xml>",
                    envelope.receive_id(),
                    sealed.encrypt
                )
                .into_bytes(),
                expect: Expect::Exact(if *suite { b"success".to_vec() } else { Vec::new() }),
            }
        }
        (
            Credentials::WechatMp {
                token,
                envelope,
                mode,
            },
            event,
        ) => {
            let mut parts = [token.expose().as_bytes(), ts_s.as_bytes(), n.as_bytes()];
            let sig = String::from_utf8_lossy(&crate::crypto::envelope::signature(&mut parts))
                .into_owned();
            match (event, envelope, mode) {
                (None, _, _) => {
                    let echo = format!("{}", now_ms());
                    Probe {
                        what: "WeChat MP URL check (GET, 3-part signature)".into(),
                        method: reqwest::Method::GET,
                        query: format!("signature={sig}&echostr={echo}&timestamp={ts_s}&nonce={n}"),
                        headers: vec![],
                        body: vec![],
                        expect: Expect::Exact(echo.into_bytes()),
                    }
                }
                (Some(xml), Some(env), MpMode::Safe | MpMode::Compat) => {
                    let sealed = seal_awkward(env, xml.as_bytes(), &ts_s, &n);
                    Probe {
                        what: "WeChat MP event (POST, safe mode)".into(),
                        method: reqwest::Method::POST,
                        query: format!(
                            "signature={sig}&timestamp={ts_s}&nonce={n}&openid=simulate&encrypt_type=aes&msg_signature={}",
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
                    query: format!("signature={sig}&timestamp={ts_s}&nonce={n}&openid=simulate"),
                    headers: vec![("Content-Type".into(), "text/xml".into())],
                    body: xml.as_bytes().to_vec(),
                    expect: Expect::Exact(b"success".to_vec()),
                },
            }
        }
        (Credentials::DingTalk { envelope }, event) => {
            let plain =
                event.map_or_else(|| r#"{"EventType":"check_url"}"#.to_owned(), str::to_owned);
            let sealed = seal_awkward(envelope, plain.as_bytes(), &ts_ms, &n);
            Probe {
                what: if event.is_some() {
                    "DingTalk event (POST)"
                } else {
                    "DingTalk check_url (POST)"
                }
                .into(),
                method: reqwest::Method::POST,
                query: format!(
                    "signature={}&timestamp={ts_ms}&nonce={n}",
                    sealed.msg_signature
                ),
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: json!({"encrypt": sealed.encrypt}).to_string().into_bytes(),
                expect: Expect::DingTalkSuccess,
            }
        }
        (
            Credentials::Feishu {
                verification_token,
                encrypt_key,
            },
            event,
        ) => {
            let challenge = format!("simulate-{}", nonce());
            let plain = match event {
                Some(e) => e.to_owned(),
                None => json!({"challenge": challenge, "token": verification_token.expose(), "type": "url_verification"}).to_string(),
            };
            let (body, headers) = match encrypt_key {
                Some(key) => {
                    let mut iv = [0u8; 16];
                    iv.copy_from_slice(&random_alnum());
                    let body = json!({"encrypt": key.encrypt(&iv, plain.as_bytes())})
                        .to_string()
                        .into_bytes();
                    let sig =
                        String::from_utf8_lossy(&key.signature(&ts_s, &n, &body)).into_owned();
                    let headers = vec![
                        (
                            "Content-Type".into(),
                            "application/json; charset=utf-8".into(),
                        ),
                        ("X-Lark-Request-Timestamp".into(), ts_s.clone()),
                        ("X-Lark-Request-Nonce".into(), n.clone()),
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
        (Credentials::DingTalkRobot { app_secret }, Some(body)) => {
            let sign = crate::crypto::robot::sign(app_secret.expose(), &ts_ms);
            Probe {
                what: "DingTalk robot message (POST)".into(),
                method: reqwest::Method::POST,
                query: String::new(),
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("timestamp".into(), ts_ms),
                    ("sign".into(), sign),
                ],
                body: body.as_bytes().to_vec(),
                expect: Expect::Ok,
            }
        }
        (Credentials::DingTalkRobot { .. }, None) => Probe {
            // Robots have no URL check: a deliberately wrong signature must come back 403
            // (310000) from hookgate, which proves routing and stores nothing.
            what: "DingTalk robot routing probe (POST, wrong signature on purpose)".into(),
            method: reqwest::Method::POST,
            query: String::new(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("timestamp".into(), ts_ms),
                ("sign".into(), "aG9va2dhdGUgc2ltdWxhdGU=".into()),
            ],
            body: br#"{"msgtype":"text","text":{"content":"hookgate simulate"}}"#.to_vec(),
            expect: Expect::Refused("310000"),
        },
        (
            Credentials::DingTalkStream(_) | Credentials::FeishuWs(_) | Credentials::WecomAibot(_),
            _,
        ) => anyhow::bail!(
            "receiver {:?} ({}) connects out to the vendor and has no callback URL to simulate; \
             /readyz and /metrics show its connection",
            receiver.name,
            receiver.vendor()
        ),
    })
}

/// How one probe went: `ok` and a one-line verdict.
#[derive(Debug)]
pub struct Verdict {
    pub ok: bool,
    pub line: String,
}

/// Sends `probe` to `url` (the receiver's full URL) and judges the reply.
pub async fn run(
    client: &reqwest::Client,
    receiver: &Receiver,
    probe: &Probe,
    url: &str,
) -> Verdict {
    let full = if probe.query.is_empty() {
        url.to_owned()
    } else {
        format!(
            "{url}{}{}",
            if url.contains('?') { '&' } else { '?' },
            probe.query
        )
    };
    let mut req = client
        .request(probe.method.clone(), &full)
        .body(probe.body.clone());
    for (k, v) in &probe.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Verdict {
                ok: false,
                line: format!("cannot reach {url}: {}", e.without_url()),
            };
        }
    };
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    let ms = started.elapsed().as_millis();
    let text = String::from_utf8_lossy(&body).into_owned();
    let from_hookgate =
        text.starts_with("rejected") || text.starts_with("hookgate:") || text == "not found\n";
    let bad = |line: String| Verdict { ok: false, line };
    match (status, &probe.expect) {
        (301 | 302 | 303 | 307 | 308, _) => {
            return bad(format!(
                "redirected ({status}) to {location:?}: vendors do not follow redirects; give the vendor the final URL"
            ));
        }
        (404, _) if text == "not found\n" => {
            return bad(format!(
                "hookgate answered 404: the request reached it but not on {:?}; the proxy rewrites the path (a prefix?) or the receiver's path differs",
                receiver.path
            ));
        }
        (404, _) => {
            return bad(
                "404 from the proxy, not hookgate: this path is not routed to hookgate".into(),
            );
        }
        (502..=504, _) if !from_hookgate => {
            return bad(format!(
                "HTTP {status} from the proxy: it cannot reach hookgate (upstream address or hookgate down)"
            ));
        }
        (403, Expect::Refused(code)) if text.starts_with(&format!("rejected ({code})")) => {
            return Verdict {
                ok: true,
                line: format!(
                    "OK: {} reached hookgate's {} receiver and was refused as it must be ({ms} ms)",
                    probe.what, receiver.name
                ),
            };
        }
        (400..=499, _) if text.starts_with("rejected") => {
            // hookgate tells callers only the vendor's code; its log line has the reason.
            let why = text.trim_end();
            let hint = if why.ends_with("(-40001)") || why.ends_with("(900005)") {
                "signature mismatch: the query string or body changed on the way (a proxy re-encoding echostr: + / = must arrive as %2B %2F %3D and be decoded once), or the token differs from the vendor console's"
            } else if why.ends_with("(-40005)") || why.ends_with("(900010)") {
                "receive id mismatch: receive_id is not the id this app's messages are sealed for (CorpID / AppID / AppKey / SuiteKey)"
            } else if status == 403 {
                "the signature, token or timestamp did not pass (a clock more than the window apart?); hookgate's log line for this request says which"
            } else {
                "see hookgate's log line for this request"
            };
            return bad(format!(
                "hookgate refused it with HTTP {status}: {why} -- {hint}"
            ));
        }
        (200, _) => {}
        _ => {
            return bad(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
    }
    let judged = match &probe.expect {
        Expect::Exact(want) if body == *want => Ok(()),
        Expect::Exact(want) => Err(format!(
            "the reply is not what the vendor needs: got {:?} ({} bytes), want {:?} exactly (no quotes, BOM, newline or wrapping)",
            text.chars().take(120).collect::<String>(),
            body.len(),
            String::from_utf8_lossy(want)
        )),
        Expect::DingTalkSuccess => dingtalk_success(receiver, &body),
        Expect::Challenge(c) => match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v["challenge"] == c.as_str() => Ok(()),
            _ => Err(format!(
                "the reply must be {{\"challenge\":\"{c}\"}}; got {:?}",
                text.chars().take(120).collect::<String>()
            )),
        },
        Expect::Ok => Ok(()),
        Expect::Refused(code) => Err(format!(
            "a wrongly signed robot message was accepted (200), want 403 with {code}"
        )),
    };
    match judged {
        Ok(()) => Verdict {
            ok: true,
            line: format!(
                "OK: {} answered exactly as the vendor expects ({ms} ms)",
                probe.what
            ),
        },
        Err(e) => bad(e),
    }
}

/// The reply DingTalk needs: the map, signed, decrypting to "success".
fn dingtalk_success(receiver: &Receiver, body: &[u8]) -> Result<(), String> {
    let Credentials::DingTalk { envelope } = &receiver.credentials else {
        return Err("not a DingTalk receiver".into());
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "the reply must be the encrypted success map; got {:?}",
            String::from_utf8_lossy(body)
                .chars()
                .take(120)
                .collect::<String>()
        )
    })?;
    let (Some(sig), Some(ts), Some(nonce), Some(encrypt)) = (
        v["msg_signature"].as_str(),
        v["timeStamp"].as_str(),
        v["nonce"].as_str(),
        v["encrypt"].as_str(),
    ) else {
        return Err("the reply map lacks msg_signature, timeStamp, nonce or encrypt".into());
    };
    let signed = Signed {
        timestamp: ts,
        nonce,
        signature: sig,
    };
    let fresh = Freshness {
        now_ms: now_ms(),
        window_secs: 0,
    };
    let opened = envelope
        .open(&signed, encrypt, fresh)
        .map_err(|e| format!("the reply does not open: {e}"))?;
    if opened.into_inner().message == b"success" {
        Ok(())
    } else {
        Err("the reply decrypts to something other than \"success\"".into())
    }
}

/// The vendor's view of the receiver's URL on the local listener.
pub fn local_url(listen: std::net::SocketAddr, path: &str) -> String {
    let ip = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    format!(
        "http://{}{path}",
        std::net::SocketAddr::new(ip, listen.port())
    )
}

/// Timeout for each probe.
pub const TIMEOUT: Duration = Duration::from_secs(10);
