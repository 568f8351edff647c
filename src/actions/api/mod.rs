//! Vendor app APIs (WeCom, DingTalk) for the actions that act as an app rather than a robot:
//! managed access tokens (`token`), one client per `[connections.*]` (`wecom`, `dingtalk`)
//! that refreshes and retries once on an expired-token answer and classifies errcodes.

pub mod dingtalk;
pub mod token;
pub mod wecom;

use std::collections::HashMap;
use std::sync::Arc;

use std::collections::BTreeMap;

use crate::actions::ActionError;
use crate::actions::connection::Connection;
use crate::actions::error::{status_line, transport};
use crate::store::Store;

/// Every vendor app connection of the config, by name.
#[derive(Default)]
pub struct Apis {
    pub wecom: HashMap<String, Arc<wecom::WeCom>>,
    pub dingtalk: HashMap<String, Arc<dingtalk::DingTalk>>,
}

impl Apis {
    pub fn new(
        connections: &BTreeMap<String, Connection>,
        http: &reqwest::Client,
        own: &HashMap<String, reqwest::Client>,
        store: &Store,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Self {
        let mut apis = Apis::default();
        for (name, c) in connections {
            // A connection with a proxy of its own (or none) has a client of its own.
            let http = own.get(name).unwrap_or(http);
            match c {
                Connection::WeCom(w) => {
                    apis.wecom.insert(
                        name.clone(),
                        Arc::new(wecom::WeCom::new(
                            name,
                            w.clone(),
                            http.clone(),
                            store.clone(),
                            metrics.clone(),
                        )),
                    );
                }
                Connection::DingTalk(d) => {
                    apis.dingtalk.insert(
                        name.clone(),
                        Arc::new(dingtalk::DingTalk::new(
                            name,
                            d.clone(),
                            http.clone(),
                            store.clone(),
                            metrics.clone(),
                        )),
                    );
                }
                Connection::Smtp(_) | Connection::Sql(_) => {}
            }
        }
        apis
    }
}

/// A vendor answer as JSON: 5xx and 429 are retried, other non-2xx statuses are not (their
/// body is returned with the status for the caller to read), transport failures are retried.
pub(crate) async fn json_answer(
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, serde_json::Value), ActionError> {
    json_call(req).await.map_err(|e| e.error)
}

/// A failed vendor call, and whether the vendor may have carried it out all the same: the
/// request went out and nothing answered that it did not (a timeout, a cut connection, a
/// gateway timeout, a garbled answer).
pub(crate) struct CallError {
    pub error: ActionError,
    pub maybe_done: bool,
}

impl CallError {
    pub fn not_done(error: ActionError) -> Self {
        Self {
            error,
            maybe_done: false,
        }
    }
}

/// [`json_answer`], saying whether a failure may have been carried out anyway.
pub(crate) async fn json_call(
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, serde_json::Value), CallError> {
    let fail = |error, maybe_done| CallError { error, maybe_done };
    let resp = req.send().await.map_err(|e| {
        // URLs carry secrets (corpsecret, access_token): the line names the host only.
        let sent = !(e.is_builder() || e.is_connect());
        if e.is_builder() {
            fail(ActionError::permanent(transport(&e)), false)
        } else {
            fail(ActionError::retryable(transport(&e)), sent)
        }
    })?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| fail(ActionError::retryable(transport(&e)), true))?;
    let line = || {
        status_line(
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            &text,
        )
    };
    // A 407 is the egress proxy's credentials: fixed in the config, then it goes through.
    if status.is_server_error() || matches!(status.as_u16(), 407 | 429) {
        return Err(fail(ActionError::retryable(line()), status.as_u16() == 504));
    }
    match serde_json::from_str(&text) {
        Ok(v) => Ok((status, v)),
        Err(_) if status.is_success() => Err(fail(
            ActionError::retryable(format!("not JSON: {}", snippet(&text))),
            true,
        )),
        Err(_) => Err(fail(ActionError::permanent(line()), false)),
    }
}

/// One media upload (`media/upload?type=` with the token, the file as multipart `media`):
/// the media id if the answer has errcode 0, else the answer for the caller to classify
/// (a stale token is refreshed by the caller, once).
pub(crate) async fn upload_media(
    http: &reqwest::Client,
    url: String,
    token: &str,
    kind: &str,
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<Result<String, serde_json::Value>, ActionError> {
    let (content_type, body) = multipart("media", path, bytes);
    let req = http
        .post(url)
        .query(&[("access_token", token), ("type", kind)])
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .timeout(std::time::Duration::from_secs(60));
    let (_, answer) = json_answer(req).await?;
    if errcode(&answer) != 0 {
        return Ok(Err(answer));
    }
    answer["media_id"]
        .as_str()
        .map(|id| Ok(id.to_owned()))
        .ok_or_else(|| ActionError::retryable("media/upload: no media_id in the answer"))
}

pub(crate) fn snippet(text: &str) -> String {
    crate::actions::error::snippet(text)
}

/// `errcode` of an oapi-style answer; -2 when absent.
pub(crate) fn errcode(body: &serde_json::Value) -> i64 {
    body.get("errcode")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(-2)
}

pub(crate) fn errmsg(body: &serde_json::Value) -> String {
    let msg = body
        .get("errmsg")
        .or_else(|| body.get("message"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    snippet(msg)
}

/// A one-file `multipart/form-data` body (WeCom media uploads): (content type, body).
pub(crate) fn multipart(field: &str, path: &std::path::Path, bytes: &[u8]) -> (String, Vec<u8>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\r', '\n'], "_"))
        .unwrap_or_else(|| "file".into());
    let boundary = format!("hookgate{:016x}", rand::random::<u64>());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"; \
         filelength={}\r\nContent-Type: application/octet-stream\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
