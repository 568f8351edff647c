//! WeCom (企业微信) app API: `gettoken` with corp id + app secret, then JSON calls with
//! `?access_token=`. Errors are HTTP 200 with `errcode`; 40014/42001/41001 refresh the token
//! and retry once; -1 (busy) is retried later; 45009/45033 pause; 60020 names the fix.

use std::time::Duration;

use serde_json::Value;

use super::token::TokenCache;
use super::{errcode, errmsg, json_answer};
use crate::actions::ActionError;
use crate::actions::connection::WeComConnection;
use crate::store::Store;

pub struct WeCom {
    pub name: String,
    pub conn: WeComConnection,
    http: reqwest::Client,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    token: TokenCache,
}

/// Token answers that mean "get a new token and try again".
const TOKEN_EXPIRED: &[i64] = &[40014, 42001, 41001];

impl WeCom {
    pub fn new(
        name: &str,
        conn: WeComConnection,
        http: reqwest::Client,
        store: Store,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let key = super::token::key("wecom", &conn.corp_id, conn.secret.expose());
        Self {
            name: name.to_owned(),
            conn,
            http,
            metrics,
            token: TokenCache::new(key, store),
        }
    }

    async fn fetch_token(&self) -> Result<(String, i64), ActionError> {
        self.metrics.token_refresh(&self.name);
        let req = self
            .http
            .get(format!("{}/cgi-bin/gettoken", self.conn.api_base))
            .query(&[
                ("corpid", self.conn.corp_id.as_str()),
                ("corpsecret", self.conn.secret.expose().as_str()),
            ])
            .timeout(Duration::from_secs(15));
        let (_, body) = json_answer(req).await?;
        match errcode(&body) {
            0 => {
                let token = body["access_token"].as_str().unwrap_or_default().to_owned();
                if token.is_empty() {
                    return Err(ActionError::retryable(
                        "gettoken: no access_token in the answer",
                    ));
                }
                Ok((token, body["expires_in"].as_i64().unwrap_or(7200)))
            }
            40001 | 40013 | 40091 | 41002 | 41004 => Err(ActionError::permanent(format!(
                "WeCom rejected connections.{}: corp_id or secret is wrong (errcode {}: {})",
                self.name,
                errcode(&body),
                errmsg(&body)
            ))),
            _ => Err(self.error("gettoken", &body)),
        }
    }

    /// A failed answer as an action error, classified.
    pub fn error(&self, api: &str, body: &Value) -> ActionError {
        let code = errcode(body);
        self.metrics.vendor_error(&self.name, &code.to_string());
        let reason = format!("WeCom {api}: errcode {code}: {}", errmsg(body));
        let error = match code {
            -1 => ActionError::retryable(reason),
            45009 | 45033 => ActionError::throttled(reason, Duration::from_secs(60)),
            60020 => ActionError::permanent(format!(
                "{reason} -- WeCom refuses this server's IP: add the gateway's egress IP to the \
                 app's trusted IPs (应用管理 → 企业可信IP), or send the calls through a proxy with a \
                 trusted fixed IP ([outbound] proxy, or proxy in connections.{0})",
                self.name
            )),
            48002 => ActionError::permanent(format!(
                "{reason} -- the app has no permission for this API (connections.{})",
                self.name
            )),
            _ => ActionError::permanent(reason),
        };
        error.with_errcode(code)
    }

    /// Calls `path` with the token; refreshes and retries once if the token was stale.
    /// `body` None is a GET with `query`, Some a POST of JSON.
    pub async fn call(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ActionError> {
        for attempt in 0..2 {
            let token = self.token.get(|| self.fetch_token()).await?;
            let url = format!("{}{path}", self.conn.api_base);
            let req = match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            }
            .query(&[("access_token", token.as_str())])
            .query(query)
            .timeout(Duration::from_secs(30));
            let (_, answer) = json_answer(req).await?;
            let code = errcode(&answer);
            if code == 0 {
                return Ok(answer);
            }
            if TOKEN_EXPIRED.contains(&code) && attempt == 0 {
                tracing::info!(connection = %self.name, errcode = code, "WeCom access token stale; refreshing.");
                self.token.invalidate(&token).await;
                continue;
            }
            return Err(self.error(path, &answer));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Uploads a temporary media file (`media/upload?type=image|file`); returns its media_id.
    /// Uploads `bytes` (read by the caller from `path`, whose name WeCom shows) as app media.
    pub async fn upload(
        &self,
        kind: &str,
        path: &std::path::Path,
        bytes: &[u8],
    ) -> Result<String, ActionError> {
        for attempt in 0..2 {
            let token = self.token.get(|| self.fetch_token()).await?;
            let url = format!("{}/cgi-bin/media/upload", self.conn.api_base);
            match super::upload_media(&self.http, url, &token, kind, path, bytes).await? {
                Ok(media_id) => return Ok(media_id),
                Err(answer) if TOKEN_EXPIRED.contains(&errcode(&answer)) && attempt == 0 => {
                    self.token.invalidate(&token).await;
                }
                Err(answer) => return Err(self.error("media/upload", &answer)),
            }
        }
        unreachable!("the loop returns on its second pass")
    }
}
