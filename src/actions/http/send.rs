//! Sends an `http` action. The delivery id goes in
//! `X-Hookgate-Delivery` (an idempotency key: a retried or re-run delivery keeps it); with a
//! secret, `X-Hookgate-Signature: sha256=<hex HMAC-SHA256 of the body>`. A status the action
//! counts as success returns `{"status", "body"}` (JSON when it parses, else text; at most
//! 1 MiB read).

use std::time::Duration;

use hmac::{KeyInit, Mac};

use super::Rendered;
use crate::actions::error::{status_line, transport};
use crate::actions::outbound::Outbound;
use crate::actions::{ActionError, Attempt, Disposition};

impl Rendered {
    /// As `explain` shows it: the request, without the secret.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.url);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        if self.secret.is_some() {
            s.push_str("X-Hookgate-Signature: sha256=<hmac of the body>\n");
        }
        s.push_str(&format!("\n{}", self.body));
        s
    }

    /// Sends it with `plain`, or through `[outbound]`'s confined client when its host came
    /// from the event.
    pub async fn send(
        &self,
        outbound: &Outbound,
        plain: &reqwest::Client,
        a: Attempt<'_>,
    ) -> Result<serde_json::Value, ActionError> {
        let client = outbound
            .http(&self.url, self.host_from_template, plain)
            .await?;
        send(client, self, a).await
    }
}

/// The most of an answer kept (a lookup's, not a download).
const MAX_ANSWER: usize = 1 << 20;

async fn send(
    client: &reqwest::Client,
    h: &Rendered,
    a: Attempt<'_>,
) -> Result<serde_json::Value, ActionError> {
    let method = reqwest::Method::from_bytes(h.method.as_bytes())
        .map_err(|_| ActionError::permanent(format!("bad method {:?}", h.method)))?;
    let mut req = client
        .request(method, &h.url)
        .timeout(h.timeout)
        .header("X-Hookgate-Delivery", a.delivery_id.to_string())
        .header(
            reqwest::header::CONTENT_TYPE,
            if h.json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            },
        );
    for (k, v) in &h.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(sig) = signature(h)? {
        req = req.header("X-Hookgate-Signature", sig);
    }
    if !h.body.is_empty() || h.json {
        req = req.body(h.body.clone());
    }
    let resp = req.send().await.map_err(|e| {
        // The URL may carry a token (`?key=`, `?access_token=`): the line names its host only.
        // Bad URLs never work; everything else (refused, reset, timeout) may next time.
        if e.is_builder() {
            ActionError::permanent(transport(&e))
        } else {
            ActionError::retryable(transport(&e))
        }
    })?;
    let status = resp.status();
    if h.success.contains(status.as_u16()) {
        return answer(resp, h).await;
    }
    if status.is_redirection() {
        // Not followed: a redirect would carry the body and headers to another host.
        return Err(ActionError::permanent(format!(
            "HTTP {status}: redirected to {}; hookgate does not follow redirects, so point the action at the final URL",
            location(&resp)
        )));
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().await.unwrap_or_default();
    let reason = status_line(
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        &body,
    );
    // A 407 is the egress proxy's credentials: fixed in the config, then it goes through.
    let retryable = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    let disposition = if retryable {
        Disposition::Retry { after: retry_after }
    } else {
        Disposition::Permanent
    };
    Err(ActionError {
        disposition,
        reason,
        errcode: None,
    })
}

/// `sha256=<hex HMAC-SHA256 of the body>` with the action's secret, if it has one.
fn signature(h: &Rendered) -> Result<Option<String>, ActionError> {
    let Some(secret) = &h.secret else {
        return Ok(None);
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|e| ActionError::permanent(format!("secret: {e}")))?;
    mac.update(h.body.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Some(format!("sha256={sig}")))
}

/// A successful answer as the action's result: `{"status", "body"}`, the body JSON when it
/// parses (then `keep` picks from it), else text.
async fn answer(
    mut resp: reqwest::Response,
    h: &Rendered,
) -> Result<serde_json::Value, ActionError> {
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    if h.method != "HEAD" {
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            ActionError::retryable(format!("reading the answer: {}", e.without_url()))
        })? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(ActionError::permanent(format!(
                    "HTTP {status}: the answer is larger than {} KiB",
                    MAX_ANSWER / 1024
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
    }
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => match &h.keep {
            Some(path) => super::pick(v, path),
            None => v,
        },
        Err(_) if bytes.is_empty() => serde_json::Value::Null,
        Err(_) => String::from_utf8_lossy(&bytes).into_owned().into(),
    };
    Ok(serde_json::json!({ "status": status, "body": body }))
}

/// The `Location` of a redirect, without its query (it may carry a token).
fn location(resp: &reqwest::Response) -> String {
    let Some(value) = resp.headers().get(reqwest::header::LOCATION) else {
        return "nowhere (no Location)".to_owned();
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let shown = text.split(['?', '#']).next().unwrap_or_default();
    format!("{:?}", shown.chars().take(200).collect::<String>())
}
