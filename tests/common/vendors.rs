//! A local fake of the vendors' robot APIs that enforces their contracts (protocols.md §4,
//! §6): DingTalk `robot/send` (access_token, 加签 timestamp + sign within one hour, body
//! shapes, 20 a minute → 130101), WeCom `webhook/send` and `webhook/upload_media` (key,
//! content limits, image MD5, media ids, 20 a minute → 45009), Feishu `bot/v2/hook` (sign in
//! the body, shapes, rate → 9499). Errors are HTTP 200 with an errcode, as the vendors do.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

#[derive(Default)]
pub struct State {
    /// DingTalk access_token → 加签 secret (None: no signing).
    pub dingtalk: HashMap<String, Option<String>>,
    /// WeCom robot keys.
    pub wecom: Vec<String>,
    /// Feishu hook token → signing secret.
    pub feishu: HashMap<String, Option<String>>,
    /// Messages a minute each robot accepts before its throttle errcode.
    pub per_minute: usize,
    /// Errcodes to answer next for a token, before looking at the request.
    pub scripted: HashMap<String, VecDeque<i64>>,
    /// Every accepted message: (vendor, token, body).
    pub accepted: Vec<(String, String, Value)>,
    /// Every answer given: (token, errcode).
    pub answers: Vec<(String, i64)>,
    pub media: HashMap<String, Vec<u8>>,
    /// Send times per token, for the rate limit.
    pub sent: HashMap<String, VecDeque<Instant>>,
}

#[derive(Clone)]
pub struct Vendors {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Vendors {
    pub async fn start(state: State) -> Vendors {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let v = Vendors {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                per_minute: if state.per_minute == 0 {
                    20
                } else {
                    state.per_minute
                },
                ..state
            })),
        };
        let state = v.state.clone();
        super::http_server(listener, move |parts, body| {
            let answer = handle(&state, &parts.uri, &parts.headers, &body);
            (200, "application/json", answer.to_string())
        });
        v
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn accepted(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn answers(&self) -> Vec<(String, i64)> {
        self.state.lock().unwrap().answers.clone()
    }
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn now_ms() -> i64 {
    super::now_ms()
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn handle(
    state: &Mutex<State>,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Value {
    let mut s = state.lock().unwrap();
    let q = query(uri);
    let path = uri.path().to_owned();
    let (vendor, token, code_key) = if path == "/robot/send" {
        (
            "dingtalk",
            q.get("access_token").cloned().unwrap_or_default(),
            "errcode",
        )
    } else if path == "/cgi-bin/webhook/send" || path == "/cgi-bin/webhook/upload_media" {
        (
            "wecom",
            q.get("key").cloned().unwrap_or_default(),
            "errcode",
        )
    } else if let Some(t) = path.strip_prefix("/open-apis/bot/v2/hook/") {
        ("feishu", t.to_owned(), "code")
    } else {
        return json!({"errcode": 404, "errmsg": "no such api"});
    };
    let answer = |s: &mut State, code: i64, msg: &str| {
        s.answers.push((token.clone(), code));
        if code_key == "code" {
            json!({"code": code, "msg": msg, "data": {}})
        } else {
            json!({"errcode": code, "errmsg": msg})
        }
    };
    if let Some(code) = s.scripted.get_mut(&token).and_then(VecDeque::pop_front) {
        return answer(&mut s, code, "scripted");
    }
    if path == "/cgi-bin/webhook/upload_media" {
        if !s.wecom.contains(&token) {
            return answer(&mut s, 93000, "invalid webhook url");
        }
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(boundary) = ctype.split("boundary=").nth(1) else {
            return answer(&mut s, 40005, "invalid file type");
        };
        let text = String::from_utf8_lossy(body);
        if q.get("type").map(String::as_str) != Some("file") || !text.contains("name=\"media\"") {
            return answer(&mut s, 40005, "invalid media type");
        }
        let start = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(0);
        let end_marker = format!("\r\n--{boundary}--");
        let end = body
            .windows(end_marker.len())
            .rposition(|w| w == end_marker.as_bytes())
            .unwrap_or(body.len());
        let id = format!("media{}", s.media.len() + 1);
        s.media.insert(id.clone(), body[start..end].to_vec());
        s.answers.push((token.clone(), 0));
        return json!({"errcode": 0, "errmsg": "ok", "type": "file", "media_id": id, "created_at": "1700000000"});
    }
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return answer(&mut s, 40035, "invalid json");
    };
    // Credentials and signatures.
    match vendor {
        "dingtalk" => {
            let Some(secret) = s.dingtalk.get(&token).cloned() else {
                return answer(&mut s, 300001, "token is not exist");
            };
            if let Some(secret) = secret {
                let (Some(ts), Some(sign)) = (q.get("timestamp"), q.get("sign")) else {
                    return answer(&mut s, 310000, "sign not match");
                };
                let ts_ms: i64 = ts.parse().unwrap_or(0);
                if (now_ms() - ts_ms).abs() > 3_600_000 {
                    return answer(&mut s, 310000, "invalid timestamp");
                }
                if *sign != hmac_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes()) {
                    return answer(&mut s, 310000, "sign not match");
                }
            }
        }
        "wecom" => {
            if !s.wecom.contains(&token) {
                return answer(&mut s, 93000, "invalid webhook url");
            }
        }
        _ => {
            let Some(secret) = s.feishu.get(&token).cloned() else {
                return answer(
                    &mut s,
                    19001,
                    "param invalid: incoming webhook access token invalid",
                );
            };
            if let Some(secret) = secret {
                let ts = msg["timestamp"].as_str().unwrap_or("");
                let secs: i64 = ts.parse().unwrap_or(0);
                let sign_ok = msg["sign"].as_str()
                    == Some(hmac_b64(format!("{ts}\n{secret}").as_bytes(), b"").as_str());
                if (now_ms() / 1000 - secs).abs() > 3600 || !sign_ok {
                    return answer(
                        &mut s,
                        19021,
                        "sign match fail or timestamp is not within one hour from current time",
                    );
                }
            }
        }
    }
    if let Some(problem) = shape_problem(vendor, &msg, &s.media) {
        return answer(
            &mut s,
            if vendor == "feishu" { 19002 } else { 40035 },
            &problem,
        );
    }
    // The vendor's rate limit.
    let per_minute = s.per_minute;
    let sent = s.sent.entry(token.clone()).or_default();
    let now = Instant::now();
    while sent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        sent.pop_front();
    }
    if sent.len() >= per_minute {
        let code = match vendor {
            "dingtalk" => 130101,
            "wecom" => 45009,
            _ => 9499,
        };
        return answer(&mut s, code, "send too fast");
    }
    sent.push_back(now);
    s.accepted.push((vendor.to_owned(), token.clone(), msg));
    answer(&mut s, 0, "ok")
}

fn has(v: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| v.get(*k).is_some_and(|x| !x.is_null()))
}

fn shape_problem(vendor: &str, m: &Value, media: &HashMap<String, Vec<u8>>) -> Option<String> {
    let t = m[if vendor == "feishu" {
        "msg_type"
    } else {
        "msgtype"
    }]
    .as_str()
    .unwrap_or("");
    let ok = match (vendor, t) {
        ("dingtalk", "text") => has(&m["text"], &["content"]),
        ("dingtalk", "markdown") => has(&m["markdown"], &["title", "text"]),
        ("dingtalk", "link") => has(&m["link"], &["title", "text", "messageUrl"]),
        ("dingtalk", "actionCard") => {
            let c = &m["actionCard"];
            has(c, &["title", "text"])
                && (has(c, &["singleTitle", "singleURL"])
                    || c["btns"].as_array().is_some_and(|b| {
                        !b.is_empty() && b.iter().all(|b| has(b, &["title", "actionURL"]))
                    }))
        }
        ("dingtalk", "feedCard") => m["feedCard"]["links"].as_array().is_some_and(|l| {
            !l.is_empty() && l.iter().all(|l| has(l, &["title", "messageURL", "picURL"]))
        }),
        ("wecom", "text") => m["text"]["content"]
            .as_str()
            .is_some_and(|c| c.len() <= 2048),
        ("wecom", "markdown") => m["markdown"]["content"]
            .as_str()
            .is_some_and(|c| c.len() <= 4096),
        ("wecom", "news") => m["news"]["articles"].as_array().is_some_and(|a| {
            (1..=8).contains(&a.len()) && a.iter().all(|a| has(a, &["title", "url"]))
        }),
        ("wecom", "image") => {
            let b64 = m["image"]["base64"].as_str().unwrap_or("");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            use md5::Digest;
            let md5: String = md5::Md5::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            !bytes.is_empty() && m["image"]["md5"].as_str() == Some(md5.as_str())
        }
        ("wecom", "file") => m["file"]["media_id"]
            .as_str()
            .is_some_and(|id| media.contains_key(id)),
        ("feishu", "text") => has(&m["content"], &["text"]),
        ("feishu", "post") => m["content"]["post"].is_object(),
        ("feishu", "interactive") => m["card"].is_object(),
        _ => false,
    };
    (!ok).then(|| format!("bad {t:?} message"))
}
