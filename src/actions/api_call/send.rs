//! Calls a vendor API for an `api` action through the connection's client (token managed,
//! refreshed once when stale, errcodes classified); `explain` shows the call without the
//! token.

use super::Rendered;
use crate::actions::ActionError;
use crate::actions::app::{App, AppVendor};

impl Rendered {
    /// As `explain` shows it: the call and its body.
    pub fn describe(&self) -> String {
        let query: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!("{} {}", self.method, self.path);
        if !query.is_empty() {
            s.push_str(&format!("?{}", query.join("&")));
        }
        s.push_str(&format!(" via {} (the access token added)\n", self.via));
        if let Some(j) = &self.json {
            s.push_str(&serde_json::to_string_pretty(j).unwrap_or_default());
        }
        s
    }

    pub async fn send(&self, app: &App<'_>) -> Result<serde_json::Value, ActionError> {
        let body = match (&self.json, self.method.as_str()) {
            (Some(j), _) => Some(j.clone()),
            (None, "POST") => Some(serde_json::json!({})),
            (None, _) => None,
        };
        let answer = match self.vendor {
            AppVendor::WeCom => {
                let query: Vec<(&str, String)> = self
                    .params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                app.wecom(&self.via)?
                    .call(&self.path, &query, body.as_ref())
                    .await?
            }
            AppVendor::DingTalk => {
                app.dingtalk(&self.via)?
                    .request(&self.path, &self.params, body.as_ref())
                    .await?
            }
        };
        Ok(match &self.keep {
            Some(path) => crate::actions::http::pick(answer, path),
            None => answer,
        })
    }
}
