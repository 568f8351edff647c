//! Sends a work notification: WeCom `message/send` (`touser`/`toparty` joined with `|`),
//! DingTalk `asyncsend_v2`; departments in `users` are listed through the directory.

use serde_json::json;

use super::Rendered;
use crate::actions::app::{App, AppVendor};
use crate::actions::{ActionError, Attempt};

impl Rendered {
    /// As `explain` shows it: the connection, then what is asked for.
    pub fn describe(&self) -> String {
        crate::actions::app::describe(&self.via, self.vendor, self)
    }

    pub async fn send(&self, app: &App<'_>, attempt: Attempt<'_>) -> Result<(), ActionError> {
        send(app, self, attempt).await
    }
}

async fn send(app: &App<'_>, a: &Rendered, attempt: Attempt<'_>) -> Result<(), ActionError> {
    let (users, departments, message) = (&a.users, &a.departments, &a.message);
    match a.vendor {
        AppVendor::WeCom => {
            let w = app.wecom(&a.via)?;
            let agent = w.conn.agent_id.ok_or_else(|| no_agent(&a.via))?;
            let users = app.directory.user_ids(app.apis, &a.via, users).await?;
            let mut body = message.clone();
            body["touser"] = users.join("|").into();
            body["toparty"] = departments.join("|").into();
            body["agentid"] = agent.into();
            let answer = w.call("/cgi-bin/message/send", &[], Some(&body)).await?;
            let invalid = answer["invaliduser"].as_str().unwrap_or("");
            if !invalid.is_empty() {
                tracing::warn!(connection = %a.via, invalid_users = %invalid, delivery = attempt.delivery_id, "WeCom did not deliver the notification to some users.");
            }
            Ok(())
        }
        AppVendor::DingTalk => {
            let d = app.dingtalk(&a.via)?;
            let agent = d.conn.agent_id.ok_or_else(|| no_agent(&a.via))?;
            let users = app.directory.user_ids(app.apis, &a.via, users).await?;
            let mut body = json!({"agent_id": agent, "msg": message});
            if !users.is_empty() {
                body["userid_list"] = users.join(",").into();
            }
            if !departments.is_empty() {
                body["dept_id_list"] = departments.join(",").into();
            }
            d.oapi("/topapi/message/corpconversation/asyncsend_v2", &body)
                .await
                .map(drop)
        }
    }
}

fn no_agent(via: &str) -> ActionError {
    ActionError::permanent(format!("notify needs agent_id in connections.{via}"))
}
