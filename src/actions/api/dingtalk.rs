//! DingTalk (钉钉) app API, both generations: the old `oapi` (`gettoken?appkey&appsecret`,
//! `?access_token=`, errcode in HTTP 200) and v1.0 (`oauth2/accessToken`, header
//! `x-acs-dingtalk-access-token`, errors as HTTP 4xx `{code, message}`). Each has its own
//! managed token; a stale one (40014/42001, `InvalidAuthentication`) is refreshed once.

use std::time::Duration;

use serde_json::{Value, json};

use super::token::TokenCache;
use super::{CallError, errcode, errmsg, json_answer, json_call, snippet};
use crate::actions::ActionError;
use crate::actions::connection::DingTalkConnection;
use crate::store::Store;

pub struct DingTalk {
    pub name: String,
    pub conn: DingTalkConnection,
    http: reqwest::Client,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    old_token: TokenCache,
    new_token: TokenCache,
}

const OLD_TOKEN_EXPIRED: &[i64] = &[40014, 42001, 41001];

impl DingTalk {
    pub fn new(
        name: &str,
        conn: DingTalkConnection,
        http: reqwest::Client,
        store: Store,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let secret = conn.app_secret.expose().clone();
        Self {
            name: name.to_owned(),
            old_token: TokenCache::new(
                super::token::key("dingtalk-oapi", &conn.app_key, &secret),
                store.clone(),
            ),
            new_token: TokenCache::new(
                super::token::key("dingtalk-api", &conn.app_key, &secret),
                store,
            ),
            conn,
            http,
            metrics,
        }
    }

    fn wrong_secret(&self, detail: &str) -> ActionError {
        ActionError::permanent(format!(
            "DingTalk rejected connections.{}: app_key or app_secret is wrong ({detail})",
            self.name
        ))
    }

    async fn fetch_old_token(&self) -> Result<(String, i64), ActionError> {
        self.metrics.token_refresh(&self.name);
        let req = self
            .http
            .get(format!("{}/gettoken", self.conn.api_base))
            .query(&[
                ("appkey", self.conn.app_key.as_str()),
                ("appsecret", self.conn.app_secret.expose().as_str()),
            ])
            .timeout(Duration::from_secs(15));
        let (_, body) = json_answer(req).await?;
        match errcode(&body) {
            0 => Ok((
                body["access_token"].as_str().unwrap_or_default().to_owned(),
                body["expires_in"].as_i64().unwrap_or(7200),
            )),
            40089 | 40001 | 40013 | 40096 => {
                Err(self.wrong_secret(&format!("errcode {}: {}", errcode(&body), errmsg(&body))))
            }
            _ => Err(self.old_error("gettoken", &body)),
        }
    }

    async fn fetch_new_token(&self) -> Result<(String, i64), ActionError> {
        self.metrics.token_refresh(&self.name);
        let req = self
            .http
            .post(format!(
                "{}/v1.0/oauth2/accessToken",
                self.conn.new_api_base
            ))
            .json(&json!({"appKey": self.conn.app_key, "appSecret": self.conn.app_secret.expose()}))
            .timeout(Duration::from_secs(15));
        let (status, body) = json_answer(req).await?;
        match body["accessToken"].as_str() {
            Some(t) if status.is_success() => {
                Ok((t.to_owned(), body["expireIn"].as_i64().unwrap_or(7200)))
            }
            _ if matches!(status.as_u16(), 400 | 401 | 403) => {
                Err(self.wrong_secret(&snippet(&body.to_string())))
            }
            _ => Err(ActionError::retryable(format!(
                "oauth2/accessToken: HTTP {status}: {}",
                snippet(&body.to_string())
            ))),
        }
    }

    /// An old-API failure, classified.
    pub fn old_error(&self, api: &str, body: &Value) -> ActionError {
        let code = errcode(body);
        self.metrics.vendor_error(&self.name, &code.to_string());
        let reason = format!("DingTalk {api}: errcode {code}: {}", errmsg(body));
        let error = match code {
            -1 => ActionError::retryable(reason),
            // 调用过于频繁 / QPS limits.
            88 | 90002 | 90018 | 130101 => ActionError::throttled(reason, Duration::from_secs(60)),
            60011 | 60020 => ActionError::permanent(format!(
                "{reason} -- check the app's permissions and IP allow-list (connections.{})",
                self.name
            )),
            _ => ActionError::permanent(reason),
        };
        error.with_errcode(code)
    }

    /// POST to an old `oapi` path with `?access_token=`.
    pub async fn oapi(&self, path: &str, body: &Value) -> Result<Value, ActionError> {
        self.oapi_call(path, body).await.map_err(|e| e.error)
    }

    /// Any API with the managed token (the `api` action): a v1.0/v2.0 path goes to the new
    /// API host with the token header, any other to `oapi` with `?access_token=`. GET
    /// without a body.
    pub async fn request(
        &self,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Value, ActionError> {
        if path.starts_with("/v1.0/") || path.starts_with("/v2.0/") {
            self.new_call(path, query, body).await
        } else {
            self.old_call(path, query, body).await.map_err(|e| e.error)
        }
    }

    /// [`Self::oapi`] for a call that must not be repeated blindly (chat/create): a failure
    /// says whether DingTalk may have carried it out anyway.
    pub(crate) async fn oapi_call(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.old_call(path, &[], Some(body)).await
    }

    async fn old_call(
        &self,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        for attempt in 0..2 {
            let token = self
                .old_token
                .get(|| self.fetch_old_token())
                .await
                .map_err(CallError::not_done)?;
            let url = format!("{}{path}", self.conn.api_base);
            let req = match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            }
            .query(&[("access_token", token.as_str())])
            .query(query)
            .timeout(Duration::from_secs(30));
            let (_, answer) = json_call(req).await?;
            let code = errcode(&answer);
            if code == 0 {
                return Ok(answer);
            }
            if OLD_TOKEN_EXPIRED.contains(&code) && attempt == 0 {
                tracing::info!(connection = %self.name, errcode = code, "DingTalk access token stale; refreshing.");
                self.old_token.invalidate(&token).await;
                continue;
            }
            return Err(CallError::not_done(self.old_error(path, &answer)));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Uploads `bytes` (read by the caller from `path`, whose name DingTalk keeps) as app
    /// media (`media/upload?type=image|file`, old API); returns its media_id.
    pub async fn upload(
        &self,
        kind: &str,
        path: &std::path::Path,
        bytes: &[u8],
    ) -> Result<String, ActionError> {
        for attempt in 0..2 {
            let token = self.old_token.get(|| self.fetch_old_token()).await?;
            let url = format!("{}/media/upload", self.conn.api_base);
            match super::upload_media(&self.http, url, &token, kind, path, bytes).await? {
                Ok(media_id) => return Ok(media_id),
                Err(answer) if OLD_TOKEN_EXPIRED.contains(&errcode(&answer)) && attempt == 0 => {
                    self.old_token.invalidate(&token).await;
                }
                Err(answer) => return Err(self.old_error("media/upload", &answer)),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// POST to a v1.0 path with the token header.
    pub async fn api(&self, path: &str, body: &Value) -> Result<Value, ActionError> {
        self.new_call(path, &[], Some(body)).await
    }

    async fn new_call(
        &self,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Value, ActionError> {
        for attempt in 0..2 {
            let token = self.new_token.get(|| self.fetch_new_token()).await?;
            let url = format!("{}{path}", self.conn.new_api_base);
            let req = match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            }
            .header("x-acs-dingtalk-access-token", token.as_str())
            .query(query)
            .timeout(Duration::from_secs(30));
            let (status, answer) = json_answer(req).await?;
            if status.is_success() {
                return Ok(answer);
            }
            let code = answer["code"].as_str().unwrap_or("").to_owned();
            self.metrics.vendor_error(&self.name, &code);
            let reason = format!("DingTalk {path}: HTTP {status} {code}: {}", errmsg(&answer));
            if (status.as_u16() == 401 || code == "InvalidAuthentication") && attempt == 0 {
                tracing::info!(connection = %self.name, "DingTalk v1.0 access token stale; refreshing.");
                self.new_token.invalidate(&token).await;
                continue;
            }
            let lower = code.to_ascii_lowercase();
            if lower.contains("toofast") || lower.contains("too.fast") || lower.contains("throttl")
            {
                return Err(ActionError::throttled(reason, Duration::from_secs(60)));
            }
            return Err(ActionError::permanent(reason));
        }
        unreachable!("the loop returns on its second pass")
    }
}
