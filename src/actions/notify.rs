//! `notify`: a work notification to people and departments through a WeCom app
//! (`message/send`) or a DingTalk app (`asyncsend_v2`).

use serde_json::json;

use super::App;
use super::{ActionError, Attempt};
use crate::config::AppVendor;
use crate::rules::{AppOp, RenderedApp};

pub(super) async fn run(
    app: &App<'_>,
    a: &RenderedApp,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    let AppOp::Notify {
        users,
        departments,
        message,
    } = &a.op
    else {
        return Err(ActionError::permanent("not a notify action"));
    };
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
