//! Group robots: DingTalk custom robots (加签: `timestamp` + `sign` query parameters),
//! WeCom group robots (`key`; images inlined as base64 + MD5, files uploaded through
//! `upload_media` first) and Feishu custom bots (`timestamp` + `sign` in the body). Vendors
//! report errors as HTTP 200 with a non-zero `errcode` (`code` for Feishu); throttling
//! answers (DingTalk 130101, WeCom 45009, Feishu 9499/11232) pause that webhook and defer
//! the delivery. Each webhook also keeps to its per-minute budget before sending; budgets and
//! pauses live in the store, so replicas on one database share them.

use std::time::Duration;

use base64::Engine;
use md5::Digest;

use super::{Rendered, RobotVendor};
use crate::actions::outbound::Outbound;
use crate::actions::{ActionError, Attempt, Disposition};
use crate::clock::now_ms;
use crate::store::Store;

/// WeCom limits: image 2 MB before encoding, upload 20 MB.
const WECOM_IMAGE_MAX: u64 = 2 * 1024 * 1024;
const WECOM_FILE_MAX: u64 = 20 * 1024 * 1024;

/// The webhook without its query (which holds the token): the limiter key and what logs show.
pub fn webhook_key(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let token: String = u
                .query_pairs()
                .filter(|(k, _)| k == "access_token" || k == "key")
                .map(|(_, v)| v.into_owned())
                .collect();
            u.set_query(None);
            // Distinct robots share a path; tell them apart without showing the token.
            let tag = md5::Md5::digest(token.as_bytes());
            format!("{u}#{:02x}{:02x}{:02x}", tag[0], tag[1], tag[2])
        }
        Err(_) => "invalid webhook".into(),
    }
}

impl Rendered {
    /// As `explain` shows it: the webhook without its token.
    pub fn describe(&self) -> String {
        let mut s = format!("POST {}\n", webhook_key(&self.webhook));
        if self.secret.is_some() {
            s.push_str("(signed with the robot's secret)\n");
        }
        s.push_str(&serde_json::to_string_pretty(&self.message).unwrap_or_default());
        s
    }

    pub async fn send(
        &self,
        outbound: &Outbound,
        store: &Store,
        a: Attempt<'_>,
    ) -> Result<(), ActionError> {
        send(outbound, store, self, a).await
    }
}

async fn send(
    outbound: &Outbound,
    store: &Store,
    r: &Rendered,
    a: Attempt<'_>,
) -> Result<(), ActionError> {
    // Where the webhook may go is settled before anything else (the budget included).
    let (_, client) = outbound
        .robot(r.vendor.kind(), r.vendor.hosts(), &r.webhook)
        .await?;
    let key = webhook_key(&r.webhook);
    let wait = store
        .rate_take(&key, r.per_minute, now_ms())
        .await
        .map_err(|e| ActionError::retryable(format!("rate limit: {e}")))?;
    if let Some(wait) = wait {
        return Err(ActionError::throttled(
            format!("{key}: per-minute budget used"),
            Duration::from_millis(u64::try_from(wait).unwrap_or(1)),
        ));
    }
    let result = match r.vendor {
        RobotVendor::DingTalk => dingtalk(client, r).await,
        RobotVendor::WeCom => wecom(client, outbound, r).await,
        RobotVendor::Feishu => feishu(client, r).await,
    };
    if let Err(ActionError {
        disposition: Disposition::Throttled(pause),
        ..
    }) = &result
    {
        let pause = *pause;
        let until = now_ms() + i64::try_from(pause.as_millis()).unwrap_or(i64::MAX / 4);
        if let Err(e) = store.rate_pause(&key, until).await {
            tracing::warn!(webhook = %key, error = %e, "Could not record the pause in the store.");
        }
        tracing::warn!(webhook = %key, pause_s = pause.as_secs(), delivery = a.delivery_id, "Robot throttled by the vendor; pausing this webhook.");
    }
    result
}

async fn dingtalk(client: &reqwest::Client, r: &Rendered) -> Result<(), ActionError> {
    let mut url =
        url::Url::parse(&r.webhook).map_err(|e| ActionError::permanent(format!("webhook: {e}")))?;
    if let Some(secret) = &r.secret {
        let ts = now_ms().to_string();
        let sign = crate::crypto::robot::sign(secret.expose(), &ts);
        url.query_pairs_mut()
            .append_pair("timestamp", &ts)
            .append_pair("sign", &sign);
    }
    let body = post_json(client, url.as_str(), &r.message).await?;
    match errcode(&body, "errcode") {
        0 => Ok(()),
        // "send too fast": the vendor's own limit; DingTalk blocks for 10 minutes.
        130101 => Err(ActionError::throttled(
            describe(&body),
            Duration::from_secs(600),
        )),
        -1 => Err(ActionError::retryable(describe(&body))),
        _ => Err(ActionError::permanent(describe(&body))),
    }
}

async fn wecom(
    client: &reqwest::Client,
    outbound: &Outbound,
    r: &Rendered,
) -> Result<(), ActionError> {
    let mut message = r.message.clone();
    match message.get("msgtype").and_then(|t| t.as_str()) {
        Some("image") => {
            let path = file_path(&message, "image")?;
            let (_, bytes) = outbound.read_media(&path, WECOM_IMAGE_MAX).await?;
            message["image"] = serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "md5": md5::Md5::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>(),
            });
        }
        Some("file") => {
            let path = file_path(&message, "file")?;
            let (path, bytes) = outbound.read_media(&path, WECOM_FILE_MAX).await?;
            let media_id = wecom_upload(client, &r.webhook, &path, &bytes).await?;
            message["file"] = serde_json::json!({ "media_id": media_id });
        }
        _ => {}
    }
    let body = post_json(client, &r.webhook, &message).await?;
    wecom_result(&body)
}

fn wecom_result(body: &serde_json::Value) -> Result<(), ActionError> {
    match errcode(body, "errcode") {
        0 => Ok(()),
        45009 => Err(ActionError::throttled(
            describe(body),
            Duration::from_secs(60),
        )),
        -1 => Err(ActionError::retryable(describe(body))),
        _ => Err(ActionError::permanent(describe(body))),
    }
}

fn file_path(message: &serde_json::Value, field: &str) -> Result<String, ActionError> {
    message[field]["path"]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(Into::into)
        .ok_or_else(|| ActionError::permanent(format!("{field}.path rendered empty")))
}

/// `webhook/upload_media?key=…&type=file`, multipart field `media`; returns the media_id.
async fn wecom_upload(
    client: &reqwest::Client,
    webhook: &str,
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<String, ActionError> {
    let mut url =
        url::Url::parse(webhook).map_err(|e| ActionError::permanent(format!("webhook: {e}")))?;
    let upload_path = url.path().replace("/webhook/send", "/webhook/upload_media");
    url.set_path(&upload_path);
    url.query_pairs_mut().append_pair("type", "file");
    let (content_type, body) = crate::actions::api::multipart("media", path, bytes);
    let resp = client
        .post(url.as_str())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(transport)?;
    let body = json_body(resp).await?;
    wecom_result(&body)?;
    body["media_id"].as_str().map(str::to_owned).ok_or_else(|| {
        ActionError::retryable(format!("upload_media: no media_id in {}", describe(&body)))
    })
}

async fn feishu(client: &reqwest::Client, r: &Rendered) -> Result<(), ActionError> {
    let mut message = r.message.clone();
    if let Some(secret) = &r.secret {
        let ts = (now_ms() / 1000).to_string();
        message["sign"] = crate::crypto::robot::feishu_bot_sign(secret.expose(), &ts).into();
        message["timestamp"] = ts.into();
    }
    let body = post_json(client, &r.webhook, &message).await?;
    let code = if body.get("code").is_some() {
        errcode(&body, "code")
    } else {
        errcode(&body, "StatusCode")
    };
    match code {
        0 => Ok(()),
        9499 | 11232 => Err(ActionError::throttled(
            describe(&body),
            Duration::from_secs(60),
        )),
        _ => Err(ActionError::permanent(describe(&body))),
    }
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    message: &serde_json::Value,
) -> Result<serde_json::Value, ActionError> {
    let resp = client
        .post(url)
        .json(message)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(transport)?;
    json_body(resp).await
}

/// A vendor answer: 5xx and 429 are retried, other non-200 statuses are not, and a 200 must
/// carry JSON.
async fn json_body(resp: reqwest::Response) -> Result<serde_json::Value, ActionError> {
    let status = resp.status();
    let text = resp.text().await.map_err(transport)?;
    if !status.is_success() {
        let reason = crate::actions::error::status_line(
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            &text,
        );
        return Err(
            if status.is_server_error() || matches!(status.as_u16(), 407 | 429) {
                ActionError::retryable(reason)
            } else {
                ActionError::permanent(reason)
            },
        );
    }
    serde_json::from_str(&text).map_err(|_| {
        ActionError::retryable(format!(
            "not JSON: {}",
            crate::actions::error::snippet(&text)
        ))
    })
}

fn transport(e: reqwest::Error) -> ActionError {
    // The URL holds the robot's token: the line names the host only.
    if e.is_builder() {
        ActionError::permanent(crate::actions::error::transport(&e))
    } else {
        ActionError::retryable(crate::actions::error::transport(&e))
    }
}

/// The error code; a missing or non-numeric one is -2 (not success, not "busy").
fn errcode(body: &serde_json::Value, key: &str) -> i64 {
    body.get(key)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(-2)
}

fn describe(body: &serde_json::Value) -> String {
    body.to_string().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_keys_hide_tokens_but_tell_robots_apart() {
        let a = webhook_key("https://oapi.dingtalk.com/robot/send?access_token=SECRET1");
        let b = webhook_key("https://oapi.dingtalk.com/robot/send?access_token=SECRET2");
        assert!(!a.contains("SECRET") && a.starts_with("https://oapi.dingtalk.com/robot/send#"));
        assert_ne!(a, b);
    }
}
