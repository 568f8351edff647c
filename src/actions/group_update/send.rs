//! Updates a group: WeCom `appchat/update`; DingTalk `chat/update`, members 40 a call. A
//! rename through a key is recorded in the registry.

use serde_json::json;

use super::Rendered;
use crate::actions::api::dingtalk::DingTalk;
use crate::actions::api::wecom::WeCom;
use crate::actions::app::{App, AppVendor, Target};
use crate::actions::group::{DINGTALK_CHUNK, record, registered};
use crate::actions::{ActionError, Attempt};
use crate::store::Store;

impl Rendered {
    /// As `explain` shows it: the connection, then what is asked for.
    pub fn describe(&self) -> String {
        crate::actions::app::describe(&self.via, self.vendor, self)
    }

    pub async fn send(&self, app: &App<'_>, _: Attempt<'_>) -> Result<(), ActionError> {
        let via = self.via.as_str();
        match self.vendor {
            AppVendor::WeCom => wecom_update(app, app.wecom(via)?, via, self).await,
            AppVendor::DingTalk => dingtalk_update(app, app.dingtalk(via)?, via, self).await,
        }
    }
}

/// The chat to update, and its key when the target names one.
async fn update_target<'t>(
    store: &Store,
    via: &str,
    target: &'t Target,
) -> Result<(String, Option<&'t String>), ActionError> {
    Ok(match target {
        Target::Key(k) => (registered(store, via, k).await?.chat_id, Some(k)),
        Target::ChatId(c) => (c.clone(), None),
    })
}

async fn wecom_update(
    app: &App<'_>,
    w: &WeCom,
    via: &str,
    u: &Rendered,
) -> Result<(), ActionError> {
    let (chat_id, key) = update_target(app.store, via, &u.target).await?;
    let mut body = json!({"chatid": chat_id});
    if let Some(n) = &u.name {
        body["name"] = n.as_str().into();
    }
    if let Some(o) = &u.owner {
        body["owner"] = o.as_str().into();
    }
    let add = app
        .directory
        .user_ids(app.apis, via, &u.add_members)
        .await?;
    let del = app
        .directory
        .user_ids(app.apis, via, &u.remove_members)
        .await?;
    if !add.is_empty() {
        body["add_user_list"] = add.into();
    }
    if !del.is_empty() {
        body["del_user_list"] = del.into();
    }
    w.call("/cgi-bin/appchat/update", &[], Some(&body)).await?;
    if let (Some(k), Some(n)) = (key, &u.name) {
        record(app.store, via, k, &chat_id, None, n).await?;
    }
    Ok(())
}

async fn dingtalk_update(
    app: &App<'_>,
    d: &DingTalk,
    via: &str,
    u: &Rendered,
) -> Result<(), ActionError> {
    let (chat_id, key) = update_target(app.store, via, &u.target).await?;
    let add = app
        .directory
        .user_ids(app.apis, via, &u.add_members)
        .await?;
    let del = app
        .directory
        .user_ids(app.apis, via, &u.remove_members)
        .await?;
    let mut body = json!({"chatid": chat_id});
    if let Some(n) = &u.name {
        body["name"] = n.as_str().into();
    }
    if let Some(o) = &u.owner {
        body["owner"] = o.as_str().into();
    }
    let first = |ids: &[String]| ids.iter().take(DINGTALK_CHUNK).cloned().collect::<Vec<_>>();
    body["add_useridlist"] = first(&add).into();
    body["del_useridlist"] = first(&del).into();
    d.oapi("/chat/update", &body).await?;
    for chunk in add.chunks(DINGTALK_CHUNK).skip(1) {
        d.oapi(
            "/chat/update",
            &json!({"chatid": chat_id, "add_useridlist": chunk}),
        )
        .await?;
    }
    for chunk in del.chunks(DINGTALK_CHUNK).skip(1) {
        d.oapi(
            "/chat/update",
            &json!({"chatid": chat_id, "del_useridlist": chunk}),
        )
        .await?;
    }
    if let (Some(k), Some(n)) = (key, &u.name) {
        record(app.store, via, k, &chat_id, None, n).await?;
    }
    Ok(())
}
