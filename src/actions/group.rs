//! Group chats through a WeCom or DingTalk app: `group_create` (one group per key: WeCom chat
//! ids are derived from the key, so no retry can make a second group; DingTalk's creation is
//! noted in the registry before it is asked for), `group_update` and `group_send` (WeCom
//! `appchat/send`, DingTalk `robot/groupMessages/send`). The group registry in the store maps
//! each key to its chat.

use serde_json::{Value, json};

use super::App;
use super::{ActionError, Attempt};
use crate::actions::api::dingtalk::DingTalk;
use crate::actions::api::wecom::WeCom;
use crate::clock::now_ms;
use crate::config::AppVendor;
use crate::rules::{AppOp, People, RenderedApp, Target};
use crate::store::{GroupRow, Store, StoreLock};

/// DingTalk `chat/create` and `chat/update` take at most 40 users per call.
const DINGTALK_CHUNK: usize = 40;

/// A group action of `a` (`group_create`, `group_update`, `group_send`; `notify` goes on to
/// its own module).
pub(super) async fn run(
    app: &App<'_>,
    a: &RenderedApp,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    let via = a.via.as_str();
    match &a.op {
        AppOp::GroupCreate {
            key,
            name,
            owner,
            members,
            first_message,
        } => {
            let c = Create {
                key,
                name,
                owner,
                members,
                first_message: first_message.as_deref(),
            };
            match a.vendor {
                AppVendor::WeCom => wecom_create(app, app.wecom(via)?, via, c, attempt).await,
                AppVendor::DingTalk => {
                    dingtalk_create(app, app.dingtalk(via)?, via, c, attempt).await
                }
            }
        }
        AppOp::GroupUpdate {
            target,
            name,
            owner,
            add_members,
            remove_members,
        } => {
            let u = Update {
                target,
                name: name.as_deref(),
                owner: owner.as_deref(),
                add_members,
                remove_members,
            };
            match a.vendor {
                AppVendor::WeCom => wecom_update(app, app.wecom(via)?, via, u).await,
                AppVendor::DingTalk => dingtalk_update(app, app.dingtalk(via)?, via, u).await,
            }
        }
        AppOp::GroupSend { target, message } => match a.vendor {
            AppVendor::WeCom => wecom_send(app, app.wecom(via)?, via, target, message).await,
            AppVendor::DingTalk => {
                dingtalk_send(app, app.dingtalk(via)?, via, target, message).await
            }
        },
        AppOp::Notify { .. } => super::notify::run(app, a, attempt).await,
    }
}

/// What `group_create` asks for, rendered.
struct Create<'a> {
    key: &'a str,
    name: &'a str,
    owner: &'a str,
    members: &'a [People],
    first_message: Option<&'a str>,
}

/// What `group_update` asks for, rendered.
struct Update<'a> {
    target: &'a Target,
    name: Option<&'a str>,
    owner: Option<&'a str>,
    add_members: &'a [People],
    remove_members: &'a [People],
}

/// WeCom chat ids: at most 32 letters and digits, derived from the connection and key so a
/// retried create can only ever name the same group.
pub fn wecom_chat_id(connection: &str, key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{connection}\0{key}").as_bytes());
    let hex: String = d.iter().take(15).map(|b| format!("{b:02x}")).collect();
    format!("hg{hex}")
}

/// The registry row for a key; absent is retryable: its group_create may not have run yet.
async fn registered(store: &Store, via: &str, key: &str) -> Result<GroupRow, ActionError> {
    match store
        .group(via, key)
        .await
        .map_err(|e| ActionError::retryable(format!("group registry: {e}")))?
    {
        Some(g) if !g.chat_id.is_empty() => Ok(g),
        Some(_) => Err(ActionError::retryable(format!(
            "group for key {key:?} is being created (or its creation is unsure: hookgate groups show {key})"
        ))),
        None => Err(ActionError::retryable(format!(
            "no group for key {key:?} yet (group_create has not run)"
        ))),
    }
}

/// A DingTalk group that may exist without hookgate knowing its id (chat/create went out, its
/// answer did not come back or was not recorded). Creating it again could make a second group
/// for the key, so the delivery stops here and says how to settle it.
fn unsure(via: &str, key: &str, name: &str, why: &str) -> ActionError {
    ActionError::permanent(format!(
        "{why}; DingTalk may have created group {name:?} for key {key:?}, so hookgate will not create \
         another. If it exists: hookgate groups set {key} --via {via} --chat-id CHATID \
         [--open-conversation-id CID]; if not: hookgate groups forget {key} --via {via}; then \
         hookgate deliveries retry with this delivery's id"
    ))
}

/// A registry write that must not be lost to a short store outage: tried for about 30 s.
async fn persist<F, Fut>(mut write: F) -> Result<(), crate::store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let mut tries = 0;
    loop {
        match write().await {
            Err(e) if tries < 10 => {
                tries += 1;
                tracing::warn!(error = %e, "Group registry write failed; trying again in 3 s.");
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            }
            done => return done,
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
    c: Create<'_>,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    let Some((_creating, users)) = new_group_users(app, via, c.key, c.owner, c.members).await?
    else {
        return Ok(());
    };
    check_group(c.name, c.owner, &users, 50, (2, 500), "WeCom")?;
    let chat_id = wecom_chat_id(via, c.key);
    let body = json!({"name": c.name, "owner": c.owner, "userlist": users, "chatid": chat_id});
    match w.call("/cgi-bin/appchat/create", &[], Some(&body)).await {
        Ok(_) => {}
        // Created by an earlier attempt that stopped before the registry: the same group.
        Err(e) if e.errcode == Some(86215) => {}
        Err(e) => return Err(e),
    }
    if let Some(text) = c.first_message {
        let msg =
            json!({"chatid": chat_id, "msgtype": "text", "text": {"content": text}, "safe": 0});
        w.call("/cgi-bin/appchat/send", &[], Some(&msg)).await?;
    }
    record(app.store, via, c.key, &chat_id, None, c.name).await?;
    tracing::info!(connection = %via, key = %c.key, chat_id = %chat_id, delivery = attempt.delivery_id, "Group created.");
    Ok(())
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
    u: Update<'_>,
) -> Result<(), ActionError> {
    let (chat_id, key) = update_target(app.store, via, u.target).await?;
    let mut body = json!({"chatid": chat_id});
    if let Some(n) = u.name {
        body["name"] = n.into();
    }
    if let Some(o) = u.owner {
        body["owner"] = o.into();
    }
    let add = app.directory.user_ids(app.apis, via, u.add_members).await?;
    let del = app
        .directory
        .user_ids(app.apis, via, u.remove_members)
        .await?;
    if !add.is_empty() {
        body["add_user_list"] = add.into();
    }
    if !del.is_empty() {
        body["del_user_list"] = del.into();
    }
    w.call("/cgi-bin/appchat/update", &[], Some(&body)).await?;
    if let (Some(k), Some(n)) = (key, u.name) {
        record(app.store, via, k, &chat_id, None, n).await?;
    }
    Ok(())
}

async fn wecom_send(
    app: &App<'_>,
    w: &WeCom,
    via: &str,
    target: &Target,
    message: &Value,
) -> Result<(), ActionError> {
    let chat_id = match target {
        Target::Key(k) => registered(app.store, via, k).await?.chat_id,
        Target::ChatId(c) => c.clone(),
    };
    let mut body = wecom_media(w, app.media, message.clone()).await?;
    body["chatid"] = chat_id.into();
    w.call("/cgi-bin/appchat/send", &[], Some(&body))
        .await
        .map(drop)
}

/// `image`/`file` given as a local `path` (inside `[outbound] media_dir`): upload it (app
/// media, at most WeCom's 2 MB for images and 20 MB for files) and send its media_id.
async fn wecom_media(
    w: &WeCom,
    media: &super::outbound::Outbound,
    mut message: Value,
) -> Result<Value, ActionError> {
    for (kind, max) in [("image", 2 << 20), ("file", 20 << 20)] {
        if message["msgtype"] == kind
            && let Some(path) = message[kind]["path"].as_str().map(str::to_owned)
        {
            let (path, bytes) = media.read_media(&path, max).await?;
            let media_id = w.upload(kind, &path, &bytes).await?;
            message[kind] = json!({ "media_id": media_id });
        }
    }
    message["safe"] = message.get("safe").cloned().unwrap_or(0.into());
    Ok(message)
}

fn group_row(via: &str, key: &str, chat_id: &str, open_id: Option<&str>, name: &str) -> GroupRow {
    let now = now_ms();
    GroupRow {
        connection: via.to_owned(),
        key: key.to_owned(),
        chat_id: chat_id.to_owned(),
        open_conversation_id: open_id.map(str::to_owned),
        name: name.to_owned(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

async fn record(
    store: &Store,
    via: &str,
    key: &str,
    chat_id: &str,
    open_id: Option<&str>,
    name: &str,
) -> Result<(), ActionError> {
    store
        .put_group(group_row(via, key, chat_id, open_id, name))
        .await
        .map_err(|e| ActionError::retryable(format!("group registry: {e}")))
}

async fn dingtalk_create(
    app: &App<'_>,
    d: &DingTalk,
    via: &str,
    c: Create<'_>,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    let (key, name) = (c.key, c.name);
    let Some((_creating, mut users)) = new_group_users(app, via, key, c.owner, c.members).await?
    else {
        return Ok(());
    };
    check_group(name, c.owner, &users, 20, (1, 1000), "DingTalk")?;
    // The owner goes in the first call; the rest are added 40 at a time.
    let owner_pos = users.iter().position(|u| u == c.owner).unwrap_or(0);
    users.swap(0, owner_pos);
    let (first, rest) = users.split_at(users.len().min(DINGTALK_CHUNK));
    let (chat_id, open_id) =
        dingtalk_chat_create(app.store, d, via, key, name, c.owner, first).await?;
    for chunk in rest.chunks(DINGTALK_CHUNK) {
        d.oapi(
            "/chat/update",
            &json!({"chatid": chat_id, "add_useridlist": chunk}),
        )
        .await?;
    }
    if let (Some(text), Some(open)) = (c.first_message, &open_id) {
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

async fn dingtalk_update(
    app: &App<'_>,
    d: &DingTalk,
    via: &str,
    u: Update<'_>,
) -> Result<(), ActionError> {
    let (chat_id, key) = update_target(app.store, via, u.target).await?;
    let add = app.directory.user_ids(app.apis, via, u.add_members).await?;
    let del = app
        .directory
        .user_ids(app.apis, via, u.remove_members)
        .await?;
    let mut body = json!({"chatid": chat_id});
    if let Some(n) = u.name {
        body["name"] = n.into();
    }
    if let Some(o) = u.owner {
        body["owner"] = o.into();
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
    if let (Some(k), Some(n)) = (key, u.name) {
        record(app.store, via, k, &chat_id, None, n).await?;
    }
    Ok(())
}

async fn dingtalk_send(
    app: &App<'_>,
    d: &DingTalk,
    via: &str,
    target: &Target,
    message: &Value,
) -> Result<(), ActionError> {
    let open_id = match target {
        Target::Key(k) => registered(app.store, via, k)
            .await?
            .open_conversation_id
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "the registry has no openConversationId for group {k:?}"
                ))
            })?,
        Target::ChatId(c) => c.clone(),
    };
    send_dingtalk(d, &open_id, message).await
}

/// `robot/groupMessages/send`: msgParam travels as a JSON string.
async fn send_dingtalk(d: &DingTalk, open_id: &str, message: &Value) -> Result<(), ActionError> {
    let param = match &message["msgParam"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let body = json!({
        "robotCode": d.conn.robot_code,
        "openConversationId": open_id,
        "msgKey": message["msgKey"],
        "msgParam": param,
    });
    d.api("/v1.0/robot/groupMessages/send", &body)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wecom_chat_ids_are_short_alphanumeric_and_stable() {
        let a = super::wecom_chat_id("corp", "item-42");
        assert_eq!(a, super::wecom_chat_id("corp", "item-42"));
        assert_ne!(a, super::wecom_chat_id("corp", "item-43"));
        assert_ne!(a, super::wecom_chat_id("other", "item-42"));
        assert!(
            a.len() <= 32 && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{a}"
        );
    }
}
