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
        Err(e) => return unreached(&e),
    };
    let status = resp.status().as_u16();
    let outcome = resp
        .headers()
        .get(crate::server::OUTCOME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
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
        outcome,
    };
    reply.judge(receiver, probe)
}

/// No HTTP answer: a certificate not trusted here is told apart from a connection that
/// failed, since only the second can be the proxy's doing.
fn unreached(e: &reqwest::Error) -> Verdict {
    let line = crate::actions::error::transport(e);
    if line.contains("certificate") {
        return Verdict {
            ok: false,
            line: format!(
                "cannot reach {line}: this machine does not trust the server's TLS certificate. \
                 Vendors accept only certificates from public CAs (and a name matching the URL); \
                 for a certificate of your own CA, --ca-file checks everything else"
            ),
            untrusted: true,
        };
    }
    Verdict::bad(format!("cannot reach {line}"))
}

/// `text` (an event file) with new ids where the vendor puts them, so the gateway stores
/// it rather than taking it for the earlier one: WeCom/WeChat `MsgId` and `CreateTime`,
/// DingTalk `eventId`/`msgId`, Feishu `header.event_id`/`uuid`, a webhook's `id`-like
/// fields; a JSON body with none gets a `hookgate_fresh` field (its hash is its key).
/// Refuses when the receiver's dedupe key does not change (a webhook `dedupe_key` template
/// over other fields).
pub fn freshen(receiver: &Receiver, text: &str) -> Result<String, String> {
    let id = format!("{:016x}", rand::random::<u64>());
    let now = crate::clock::now_ms();
    let key = |t: &str| {
        crate::ingress::unverified_event(receiver, t.to_owned(), now)
            .map(|e| e.dedupe_key().to_owned())
            .map_err(|e| format!("the event file does not parse: {e}"))
    };
    // The body as it was, and with new ids (JSON is compared in one spelling).
    let (before, fresh) = if text.trim_start().starts_with('<') {
        let mut out = text.to_owned();
        for (tag, value) in [
            ("MsgId", (rand::random::<u64>() >> 1).to_string()),
            ("MsgID", (rand::random::<u64>() >> 1).to_string()),
            ("CreateTime", (now / 1000).to_string()),
        ] {
            out = replace_element(&out, tag, &value);
        }
        (text.to_owned(), out)
    } else {
        let mut v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("the event file is neither XML nor JSON: {e}"))?;
        let before = v.to_string();
        if let Some(map) = v.as_object_mut() {
            let mut replaced = false;
            for key in [
                "eventId",
                "EventId",
                "msgId",
                "msgid",
                "messageId",
                "event_id",
                "uuid",
                "id",
            ] {
                if map.get(key).is_some_and(|f| f.is_string() || f.is_number()) {
                    map.insert(key.into(), id.clone().into());
                    replaced = true;
                }
            }
            if let Some(header) = map.get_mut("header").and_then(|h| h.as_object_mut())
                && header.contains_key("event_id")
            {
                header.insert("event_id".into(), id.clone().into());
                header.insert("create_time".into(), now.to_string().into());
                replaced = true;
            }
            // No id of its own (DingTalk's approval events): the body itself is the key.
            if !replaced {
                map.insert("hookgate_fresh".into(), id.clone().into());
            }
        }
        (before, v.to_string())
    };
    if key(&fresh)? == key(&before)? {
        return Err(format!(
            "--fresh found no id that receiver {:?}'s dedupe key depends on; change the id in the file instead",
            receiver.name
        ));
    }
    Ok(fresh)
}

/// `xml` with the text of every `<tag>` element set to `value` (CDATA or not).
fn replace_element(xml: &str, tag: &str, value: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = start + open.len();
        let Some(end) = rest[after..].find(&close) else {
            break;
        };
        out.push_str(&rest[..after]);
        out.push_str(value);
        out.push_str(&close);
        rest = &rest[after + end + close.len()..];
    }
    out.push_str(rest);
    out
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
