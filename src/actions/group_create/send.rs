//! Creates the group: one per key, in every process on the store (a lock on the key is held
//! until the registry write).

use serde_json::json;

use super::Rendered;
use crate::actions::api::dingtalk::DingTalk;
use crate::actions::api::wecom::WeCom;
use crate::actions::app::{App, AppVendor};
use crate::actions::group::{
    DINGTALK_CHUNK, group_row, persist, record, send_dingtalk, unsure, wecom_chat_id,
};
use crate::actions::people::People;
use crate::actions::{ActionError, Attempt};
use crate::store::{Store, StoreLock};

impl Rendered {
    /// As `explain` shows it: the connection, then what is asked for.
    pub fn describe(&self) -> String {
        crate::actions::app::describe(&self.via, self.vendor, self)
    }

    pub async fn send(&self, app: &App<'_>, attempt: Attempt<'_>) -> Result<(), ActionError> {
        let via = self.via.as_str();
        match self.vendor {
            AppVendor::WeCom => wecom_create(app, app.wecom(via)?, via, self, attempt).await,
            AppVendor::DingTalk => {
                dingtalk_create(app, app.dingtalk(via)?, via, self, attempt).await
            }
        }
    }
}

fn check_group(
    name: &str,
    owner: &str,
    members: &[String],
    max_name: usize,
    range: (usize, usize),
    vendor: &str,
) -> Result<(), ActionError> {
    let chars = name.chars().count();
    if chars == 0 || chars > max_name {
        return Err(ActionError::permanent(format!(
            "{vendor} group names are 1..={max_name} characters; {name:?} has {chars}"
        )));
    }
    if !members.iter().any(|m| m == owner) {
        return Err(ActionError::permanent(format!(
            "the owner {owner:?} is not among the members"
        )));
    }
    if members.len() < range.0 || members.len() > range.1 {
        return Err(ActionError::permanent(format!(
            "{vendor} groups take {}..={} members; this one has {}",
            range.0,
            range.1,
            members.len()
        )));
    }
    Ok(())
}

/// The members of a group to create, owner first if not among them, and the lock on the
/// key, to hold until the registry write: in every process on the store, deliveries for one
/// key (two events of one item, on two replicas) create one group. `None` when the key
/// already has a group (one group per key: nothing to do).
async fn new_group_users(
    app: &App<'_>,
    via: &str,
    key: &str,
    owner: &str,
    members: &[People],
) -> Result<Option<(StoreLock, Vec<String>)>, ActionError> {
    let creating = app
        .store
        .lock(&format!("group:{via}:{key}"))
        .await
        .map_err(|e| ActionError::retryable(format!("group lock: {e}")))?;
    match app
        .store
        .group(via, key)
        .await
        .map_err(|e| ActionError::retryable(format!("group registry: {e}")))?
    {
        Some(g) if g.chat_id.is_empty() => {
            let why = "an earlier attempt sent chat/create and stopped before recording the answer";
            return Err(unsure(via, key, &g.name, why));
        }
        Some(_) => return Ok(None),
        None => {}
    }
    let mut users = app.directory.user_ids(app.apis, via, members).await?;
    if !users.iter().any(|u| u == owner) {
        users.insert(0, owner.to_owned());
    }
    Ok(Some((creating, users)))
}

async fn wecom_create(
    app: &App<'_>,
    w: &WeCom,
    via: &str,
    c: &Rendered,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    let Some((_creating, users)) = new_group_users(app, via, &c.key, &c.owner, &c.members).await?
    else {
        return Ok(());
    };
    check_group(&c.name, &c.owner, &users, 50, (2, 500), "WeCom")?;
    let chat_id = wecom_chat_id(via, &c.key);
    let body = json!({"name": c.name, "owner": c.owner, "userlist": users, "chatid": chat_id});
    match w.call("/cgi-bin/appchat/create", &[], Some(&body)).await {
        Ok(_) => {}
        // Created by an earlier attempt that stopped before the registry: the same group.
        Err(e) if e.errcode == Some(86215) => {}
        Err(e) => return Err(e),
    }
    if let Some(text) = &c.first_message {
        let msg =
            json!({"chatid": chat_id, "msgtype": "text", "text": {"content": text}, "safe": 0});
        w.call("/cgi-bin/appchat/send", &[], Some(&msg)).await?;
    }
    record(app.store, via, &c.key, &chat_id, None, &c.name).await?;
    tracing::info!(connection = %via, key = %c.key, chat_id = %chat_id, delivery = attempt.delivery_id, "Group created.");
    Ok(())
}

async fn dingtalk_create(
    app: &App<'_>,
    d: &DingTalk,
    via: &str,
    c: &Rendered,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    let (key, name) = (c.key.as_str(), c.name.as_str());
    let Some((_creating, mut users)) = new_group_users(app, via, key, &c.owner, &c.members).await?
    else {
        return Ok(());
    };
    check_group(name, &c.owner, &users, 20, (1, 1000), "DingTalk")?;
    // The owner goes in the first call; the rest are added 40 at a time.
    let owner_pos = users.iter().position(|u| *u == c.owner).unwrap_or(0);
    users.swap(0, owner_pos);
    let (first, rest) = users.split_at(users.len().min(DINGTALK_CHUNK));
    let (chat_id, open_id) =
        dingtalk_chat_create(app.store, d, via, key, name, &c.owner, first).await?;
    for chunk in rest.chunks(DINGTALK_CHUNK) {
        d.oapi(
            "/chat/update",
            &json!({"chatid": chat_id, "add_useridlist": chunk}),
        )
        .await?;
    }
    if let (Some(text), Some(open)) = (&c.first_message, &open_id) {
        send_dingtalk(
            d,
            open,
            &json!({"msgKey": "sampleText", "msgParam": {"content": text}}),
        )
        .await?;
    }
    tracing::info!(connection = %via, key = %key, chat_id = %chat_id, delivery = attempt.delivery_id, "Group created.");
    Ok(())
}

/// `chat/create` with the owner and the first members, noted in the registry before it is
/// asked for and recorded after: DingTalk picks the id and the call is not idempotent, so no
/// later attempt (on any replica, after any crash) can create a second group for the key.
/// The chat id and openConversationId.
async fn dingtalk_chat_create(
    store: &Store,
    d: &DingTalk,
    via: &str,
    key: &str,
    name: &str,
    owner: &str,
    first: &[String],
) -> Result<(String, Option<String>), ActionError> {
    record(store, via, key, "", None, name).await?;
    let create = json!({"name": name, "owner": owner, "useridlist": first});
    let answer = match d.oapi_call("/chat/create", &create).await {
        Ok(answer) => answer,
        Err(e) if e.maybe_done => return Err(unsure(via, key, name, &e.error.reason)),
        Err(e) => {
            // Refused, or never reached DingTalk: nothing was created.
            if let Err(f) = persist(|| async { store.forget_group(via, key).await.map(drop) }).await
            {
                tracing::error!(connection = %via, key = %key, error = %f, "Could not clear the group's creation note; the next attempt will ask for a check.");
            }
            return Err(e.error);
        }
    };
    let chat_id = answer["chatid"].as_str().unwrap_or_default().to_owned();
    if chat_id.is_empty() {
        return Err(unsure(
            via,
            key,
            name,
            "chat/create answered without a chatid",
        ));
    }
    let open_id = answer["openConversationId"].as_str().map(str::to_owned);
    let row = group_row(via, key, &chat_id, open_id.as_deref(), name);
    if let Err(e) = persist(|| store.put_group(row.clone())).await {
        let why = format!(
            "created chat {chat_id} (openConversationId {open_id:?}) but could not record it: {e}"
        );
        return Err(unsure(via, key, name, &why));
    }
    Ok((chat_id, open_id))
}
