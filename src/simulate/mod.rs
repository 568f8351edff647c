//! `hookgate simulate`: builds a URL check (or, with an event file, an event) exactly as the
//! vendor would (`probes.rs`: signed, encrypted, with `+`, `/` and `=` in the ciphertext),
//! sends it to the local listener or to the public URL through the reverse proxy, checks the
//! reply byte for byte, and says in one line what is wrong when it is wrong (`verdict.rs`).

mod probes;
mod verdict;

use std::time::{Duration, Instant};

use crate::config::{Credentials, Receiver};

pub use verdict::Verdict;

/// A receiver that has no callback URL to probe.
#[derive(Debug, thiserror::Error)]
#[error(
    "receiver {name:?} ({vendor}) connects out to the vendor and has no callback URL to simulate; \
     /readyz and /metrics show its connection"
)]
pub struct NoCallbackUrl {
    name: String,
    vendor: &'static str,
}

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
    /// A 403 with this vendor code, or none (the robot and webhook probes, which must not
    /// store anything).
    Refused(Option<&'static str>),
}

/// Builds the probe for `receiver`: its URL check, or `event` (a decrypted body) if given.
pub fn probe(receiver: &Receiver, event: Option<&str>) -> Result<Probe, NoCallbackUrl> {
    let t = probes::Stamp::now();
    Ok(match &receiver.credentials {
        Credentials::WeCom { envelope, suite } => probes::wecom(envelope, *suite, event, &t),
        Credentials::WechatMp {
            token,
            envelope,
            mode,
        } => probes::wechat_mp(token, envelope.as_ref(), *mode, event, &t),
        Credentials::DingTalk { envelope } => probes::dingtalk(envelope, event, &t),
        Credentials::Feishu {
            verification_token,
            encrypt_key,
        } => probes::feishu(verification_token, encrypt_key.as_deref(), event, &t),
        Credentials::DingTalkRobot { app_secret } => probes::dingtalk_robot(app_secret, event, &t),
        Credentials::Webhook(w) => probes::webhook(&w.auth, event, &t),
        Credentials::DingTalkStream(_) | Credentials::FeishuWs(_) | Credentials::WecomAibot(_) => {
            return Err(NoCallbackUrl {
                name: receiver.name.clone(),
                vendor: receiver.vendor().as_str(),
            });
        }
    })
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
        Err(e) => return Verdict::bad(format!("cannot reach {url}: {}", e.without_url())),
    };
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    let reply = verdict::Reply {
        status,
        location,
        body,
        ms: started.elapsed().as_millis(),
    };
    reply.judge(receiver, probe)
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
