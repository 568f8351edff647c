//! Fuzzes the webhook receiver's open path: JSON, form and XML bodies, the `kind`,
//! `dedupe_key` and `reply` templates over them, a signature recipe and a URL check.
#![no_main]

use std::sync::LazyLock;

use hookgate::config::{self, Receiver};
use hookgate::ingress::{self, HeaderList, Method, Request};
use libfuzzer_sys::fuzz_target;

const RECEIVERS: &str = r#"
[[receivers]]
name = "open"
vendor = "webhook"
path = "/open"
auth = "none"
kind = "{{ op }}{{ status }}{{ headers['x-kind'] }}"
dedupe_key = "{{ id }}{{ query.d }}"
reply = '{"success":true,"id":"{{ id }}"}'

[[receivers]]
name = "recipe"
vendor = "webhook"
path = "/recipe"
auth = "recipe"
auth_header = "X-Sig"
algorithm = "sha1"
secrets = ["old", "s3cret"]
recipe = "{{ query.nonce }}:{{ body }}:{{ secret }}:{{ query.timestamp }}"
timestamp = "{{ query.timestamp }}"
timestamp_window = 0
url_check = '{"code":0,"msg":"ok"}'
"#;

static RECEIVERS_PARSED: LazyLock<Vec<Receiver>> = LazyLock::new(|| {
    config::parse(RECEIVERS, &|_| None)
        .expect("fuzz config is valid")
        .receivers
});

// `selector ‖ query ‖ 0 ‖ signature ‖ 0 ‖ body`; the selector picks the content type, the
// receiver and the method.
fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0);
    let mut next = || std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let (query, sig) = (next(), next());
    let body = rest.rsplit(|b| *b == 0).next().unwrap_or_default();
    let content_type = match sel % 3 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        _ => "text/xml",
    };
    let headers = [("content-type", content_type), ("x-sig", sig), ("x-kind", sig)];
    let receiver = &RECEIVERS_PARSED[usize::from(sel & 4 != 0)];
    let method = if sel & 8 == 0 { Method::Post } else { Method::Get };
    let headers = HeaderList(&headers);
    let req = Request { method, query, headers: &headers, body, now_ms: 0, peer: None };
    let _ = ingress::open(receiver, &req);
});
