//! Shared by the `*_open` targets: one receiver per vendor, and fuzz bytes split into a
//! request (method byte, query, header values, body).

use hookgate::config::{self, Receiver};
use hookgate::ingress::{self, HeaderList, Method, Request};

pub const RECEIVERS: &str = r#"
[[receivers]]
name = "wecom"
vendor = "wecom"
path = "/wecom"
token = "QDG6eK"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
receive_id = "wx5823bf96d3bd56c7"
timestamp_window = 0

[[receivers]]
name = "mp"
vendor = "wechat_mp"
path = "/mp"
token = "weixin"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
receive_id = "wxbad0b45542aa0b5e"
mode = "compat"
timestamp_window = 0

[[receivers]]
name = "ding"
vendor = "dingtalk"
path = "/ding"
token = "123456"
encoding_aes_key = "1234567890123456789012345678901234567890123"
receive_id = "dingsnotzck6pm5veliw"
timestamp_window = 0

[[receivers]]
name = "lark"
vendor = "feishu"
path = "/lark"
verification_token = "vtoken_xxx"
encrypt_key = "gwFeishuEncryptKey123"
timestamp_window = 0

[[receivers]]
name = "bot"
vendor = "dingtalk_robot"
path = "/bot"
app_secret = "secret"
timestamp_window = 0
"#;

pub fn receiver(name: &str) -> Receiver {
    let config = config::parse(RECEIVERS, &|_| None).expect("fuzz config is valid");
    config.receivers.into_iter().find(|r| r.name == name).expect("receiver exists")
}

/// `method byte ‖ query ‖ 0 ‖ timestamp ‖ 0 ‖ nonce ‖ 0 ‖ signature ‖ 0 ‖ body`.
pub fn run(receiver: &Receiver, data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(5, |b| *b == 0);
    let mut next = || std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let (query, ts, nonce, sig) = (next(), next(), next(), next());
    let body = rest.rsplit(|b| *b == 0).next().unwrap_or_default();
    // An empty value means the header is absent: the unsigned paths (Feishu's URL check,
    // a robot without `sign`) are fuzzed too.
    let headers: Vec<(&str, &str)> = [
        ("timestamp", ts),
        ("sign", sig),
        ("X-Lark-Request-Timestamp", ts),
        ("X-Lark-Request-Nonce", nonce),
        ("X-Lark-Signature", sig),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    let method = match m % 3 {
        0 => Method::Get,
        1 => Method::Post,
        _ => Method::Other,
    };
    let headers = HeaderList(&headers);
    let req = Request { method, query, headers: &headers, body, now_ms: 0, peer: None };
    let _ = ingress::open(receiver, &req);
}
