//! Vendor-app actions through a WeCom or DingTalk connection: `group_create` (one group per
//! key: WeCom chat ids are derived from the key, so no retry can make a second group; the
//! group registry in the store maps key → chat id), `group_update`, `group_send` (WeCom
//! `appchat/send`, DingTalk `robot/groupMessages/send`) and `notify` (work notifications).
//! People may be user ids or departments, resolved through the directory when the action runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ActionError, Attempt};
use crate::actions::api::Apis;
use crate::actions::api::dingtalk::DingTalk;
use crate::actions::api::wecom::WeCom;
use crate::clock::now_ms;
use crate::config::AppVendor;
use crate::rules::{AppOp, People, RenderedApp, Target};
use crate::store::{GroupRow, Store};

/// How long a department's member list is reused.
const DIRECTORY_TTL: Duration = Duration::from_secs(60);
/// DingTalk `chat/create` and `chat/update` take at most 40 users per call.
const DINGTALK_CHUNK: usize = 40;

/// A person from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub userid: String,
    pub name: String,
    /// Empty when the vendor does not show it (WeCom apps made after 2022-06-20).
    pub email: String,
}

/// (connection, department, recursive).
type DepartmentKey = (String, String, bool);

type Entry = Arc<tokio::sync::Mutex<Option<(Instant, Vec<Person>)>>>;

/// Department member lists, cached briefly; one lookup per department however many
/// deliveries ask at once (each entry's async lock is held across its fetch).
#[derive(Default)]
pub(super) struct Directory {
    cache: Mutex<HashMap<DepartmentKey, Entry>>,
}

impl Directory {
    /// The members of a department (and its sub-departments if `recursive`).
    pub(super) async fn members(
        &self,
        apis: &Apis,
        via: &str,
        dept: &str,
        recursive: bool,
    ) -> Result<Vec<Person>, ActionError> {
        let key = (via.to_owned(), dept.to_owned(), recursive);
        let entry = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut cached = entry.lock().await;
        if let Some((at, people)) = &*cached
            && at.elapsed() < DIRECTORY_TTL
        {
            return Ok(people.clone());
        }
        let people = if let Some(w) = apis.wecom.get(via) {
            wecom_members(w, dept, recursive).await?
        } else if let Some(d) = apis.dingtalk.get(via) {
            dingtalk_members(d, dept, recursive).await?
        } else {
            return Err(ActionError::permanent(format!(
                "no wecom or dingtalk connection named {via:?}"
            )));
        };
        *cached = Some((Instant::now(), people.clone()));
        Ok(people)
    }

    /// User ids for a people list, departments expanded, duplicates dropped, order kept.
    pub(super) async fn user_ids(
        &self,
        apis: &Apis,
        via: &str,
        people: &[People],
    ) -> Result<Vec<String>, ActionError> {
        let mut out: Vec<String> = Vec::new();
        for p in people {
            match p {
                People::User(u) => out.push(u.clone()),
                People::Department {
                    id,
                    via: dir_via,
                    recursive,
                } => {
                    let dir = dir_via.as_deref().unwrap_or(via);
                    out.extend(
                        self.members(apis, dir, id, *recursive)
                            .await?
                            .into_iter()
                            .map(|p| p.userid),
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|u| seen.insert(u.clone()));
        Ok(out)
    }
}

async fn wecom_members(w: &WeCom, dept: &str, recursive: bool) -> Result<Vec<Person>, ActionError> {
    let answer = w
        .call(
            "/cgi-bin/user/list",
            &[
                ("department_id", dept.to_owned()),
                ("fetch_child", u8::from(recursive).to_string()),
            ],
            None,
        )
        .await?;
    Ok(answer["userlist"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|u| Person {
                    userid: u["userid"].as_str().unwrap_or_default().to_owned(),
                    name: u["name"].as_str().unwrap_or_default().to_owned(),
                    email: [&u["email"], &u["biz_mail"]]
                        .iter()
                        .find_map(|e| e.as_str().filter(|e| !e.is_empty()))
                        .unwrap_or_default()
                        .to_owned(),
                })
                .filter(|p| !p.userid.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

async fn dingtalk_members(
    d: &DingTalk,
    dept: &str,
    recursive: bool,
) -> Result<Vec<Person>, ActionError> {
    let mut depts = vec![dept.to_owned()];
    if recursive {
        let mut i = 0;
        while i < depts.len() {
            let id: i64 = depts[i].parse().map_err(|_| {
                ActionError::permanent(format!("department {:?} is not a number", depts[i]))
            })?;
            let sub = d
                .oapi("/topapi/v2/department/listsub", &json!({"dept_id": id}))
                .await?;
            for s in sub["result"].as_array().into_iter().flatten() {
                if let Some(n) = s["dept_id"].as_i64() {
                    depts.push(n.to_string());
                }
            }
            i += 1;
        }
    }
    let mut out = Vec::new();
    for dept in depts {
        let id: i64 = dept
            .parse()
            .map_err(|_| ActionError::permanent(format!("department {dept:?} is not a number")))?;
        let mut cursor = 0i64;
        loop {
            let page = d
                .oapi(
                    "/topapi/v2/user/list",
                    &json!({"dept_id": id, "cursor": cursor, "size": 100, "language": "zh_CN", "contain_access_limit": false}),
                )
                .await?;
            let result = &page["result"];
            for u in result["list"].as_array().into_iter().flatten() {
                out.push(Person {
                    userid: u["userid"].as_str().unwrap_or_default().to_owned(),
                    name: u["name"].as_str().unwrap_or_default().to_owned(),
                    email: [&u["org_email"], &u["email"]]
                        .iter()
                        .find_map(|e| e.as_str().filter(|e| !e.is_empty()))
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            match (result["has_more"].as_bool(), result["next_cursor"].as_i64()) {
                (Some(true), Some(next)) if next > cursor => cursor = next,
                _ => break,
            }
        }
    }
    Ok(out)
}

/// WeCom chat ids: at most 32 letters and digits, derived from the connection and key so a
/// retried create can only ever name the same group.
pub fn wecom_chat_id(connection: &str, key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{connection}\0{key}").as_bytes());
    let hex: String = d.iter().take(15).map(|b| format!("{b:02x}")).collect();
    format!("hg{hex}")
}

pub(super) async fn run(
    apis: &Apis,
    store: &Store,
    directory: &Directory,
    media: &super::outbound::Outbound,
    a: &RenderedApp,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    match a.vendor {
        AppVendor::WeCom => {
            let w = apis.wecom.get(&a.via).ok_or_else(|| {
                ActionError::permanent(format!("no wecom connection named {:?}", a.via))
            })?;
            wecom(w, apis, store, directory, media, a, attempt).await
        }
        AppVendor::DingTalk => {
            let d = apis.dingtalk.get(&a.via).ok_or_else(|| {
                ActionError::permanent(format!("no dingtalk connection named {:?}", a.via))
            })?;
            dingtalk(d, apis, store, directory, a, attempt).await
        }
    }
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
    apis: &Apis,
    store: &Store,
    directory: &Directory,
    a: &RenderedApp,
    key: &str,
    owner: &str,
    members: &[People],
) -> Result<Option<(crate::store::StoreLock, Vec<String>)>, ActionError> {
    let creating = store
        .lock(&format!("group:{}:{key}", a.via))
        .await
        .map_err(|e| ActionError::retryable(format!("group lock: {e}")))?;
    match store
        .group(&a.via, key)
        .await
        .map_err(|e| ActionError::retryable(format!("group registry: {e}")))?
    {
        Some(g) if g.chat_id.is_empty() => {
            let why = "an earlier attempt sent chat/create and stopped before recording the answer";
            return Err(unsure(&a.via, key, &g.name, why));
        }
        Some(_) => return Ok(None),
        None => {}
    }
    let mut users = directory.user_ids(apis, &a.via, members).await?;
    if !users.iter().any(|u| u == owner) {
        users.insert(0, owner.to_owned());
    }
    Ok(Some((creating, users)))
}

async fn wecom(
    w: &WeCom,
    apis: &Apis,
    store: &Store,
    directory: &Directory,
    media: &super::outbound::Outbound,
    a: &RenderedApp,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    match &a.op {
        AppOp::GroupCreate {
            key,
            name,
            owner,
            members,
            first_message,
        } => {
            let Some((_creating, users)) =
                new_group_users(apis, store, directory, a, key, owner, members).await?
            else {
                return Ok(());
            };
            check_group(name, owner, &users, 50, (2, 500), "WeCom")?;
            let chat_id = wecom_chat_id(&a.via, key);
            let body = json!({"name": name, "owner": owner, "userlist": users, "chatid": chat_id});
            match w.call("/cgi-bin/appchat/create", &[], Some(&body)).await {
                Ok(_) => {}
                // Created by an earlier attempt that stopped before the registry: the same group.
                Err(e) if e.errcode == Some(86215) => {}
                Err(e) => return Err(e),
            }
            if let Some(text) = first_message {
                let msg = json!({"chatid": chat_id, "msgtype": "text", "text": {"content": text}, "safe": 0});
                w.call("/cgi-bin/appchat/send", &[], Some(&msg)).await?;
            }
            record(store, &a.via, key, &chat_id, None, name).await?;
            tracing::info!(connection = %a.via, key = %key, chat_id = %chat_id, delivery = attempt.delivery_id, "Group created.");
            Ok(())
        }
        AppOp::GroupUpdate {
            target,
            name,
            owner,
            add_members,
            remove_members,
        } => {
            let (chat_id, key) = match target {
                Target::Key(k) => (registered(store, &a.via, k).await?.chat_id, Some(k)),
                Target::ChatId(c) => (c.clone(), None),
            };
            let mut body = json!({"chatid": chat_id});
            if let Some(n) = name {
                body["name"] = n.clone().into();
            }
            if let Some(o) = owner {
                body["owner"] = o.clone().into();
            }
            let add = directory.user_ids(apis, &a.via, add_members).await?;
            let del = directory.user_ids(apis, &a.via, remove_members).await?;
            if !add.is_empty() {
                body["add_user_list"] = add.into();
            }
            if !del.is_empty() {
                body["del_user_list"] = del.into();
            }
            w.call("/cgi-bin/appchat/update", &[], Some(&body)).await?;
            if let (Some(k), Some(n)) = (key, name) {
                record(store, &a.via, k, &chat_id, None, n).await?;
            }
            Ok(())
        }
        AppOp::GroupSend { target, message } => {
            let chat_id = match target {
                Target::Key(k) => registered(store, &a.via, k).await?.chat_id,
                Target::ChatId(c) => c.clone(),
            };
            let mut body = wecom_media(w, media, message.clone()).await?;
            body["chatid"] = chat_id.into();
            w.call("/cgi-bin/appchat/send", &[], Some(&body))
                .await
                .map(drop)
        }
        AppOp::Notify {
            users,
            departments,
            message,
        } => {
            let agent = w.conn.agent_id.ok_or_else(|| {
                ActionError::permanent(format!("notify needs agent_id in connections.{}", a.via))
            })?;
            let users = directory.user_ids(apis, &a.via, users).await?;
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
    }
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

async fn dingtalk(
    d: &DingTalk,
    apis: &Apis,
    store: &Store,
    directory: &Directory,
    a: &RenderedApp,
    attempt: Attempt<'_>,
) -> Result<(), ActionError> {
    match &a.op {
        AppOp::GroupCreate {
            key,
            name,
            owner,
            members,
            first_message,
        } => {
            let Some((_creating, mut users)) =
                new_group_users(apis, store, directory, a, key, owner, members).await?
            else {
                return Ok(());
            };
            check_group(name, owner, &users, 20, (1, 1000), "DingTalk")?;
            // The owner goes in the first call; the rest are added 40 at a time.
            let owner_pos = users.iter().position(|u| u == owner).unwrap_or(0);
            users.swap(0, owner_pos);
            let (first, rest) = users.split_at(users.len().min(DINGTALK_CHUNK));
            // DingTalk picks the id and chat/create is not idempotent: the registry notes the
            // creation before it is asked for, so no later attempt (on any replica, after any
            // crash) can create a second group for the key.
            record(store, &a.via, key, "", None, name).await?;
            let create = json!({"name": name, "owner": owner, "useridlist": first});
            let answer = match d.oapi_call("/chat/create", &create).await {
                Ok(answer) => answer,
                Err(e) if e.maybe_done => {
                    return Err(unsure(&a.via, key, name, &e.error.reason));
                }
                Err(e) => {
                    // Refused, or never reached DingTalk: nothing was created.
                    if let Err(f) =
                        persist(|| async { store.forget_group(&a.via, key).await.map(drop) }).await
                    {
                        tracing::error!(connection = %a.via, key = %key, error = %f, "Could not clear the group's creation note; the next attempt will ask for a check.");
                    }
                    return Err(e.error);
                }
            };
            let chat_id = answer["chatid"].as_str().unwrap_or_default().to_owned();
            if chat_id.is_empty() {
                return Err(unsure(
                    &a.via,
                    key,
                    name,
                    "chat/create answered without a chatid",
                ));
            }
            let open_id = answer["openConversationId"].as_str().map(str::to_owned);
            let row = group_row(&a.via, key, &chat_id, open_id.as_deref(), name);
            if let Err(e) = persist(|| store.put_group(row.clone())).await {
                let why = format!(
                    "created chat {chat_id} (openConversationId {open_id:?}) but could not record it: {e}"
                );
                return Err(unsure(&a.via, key, name, &why));
            }
            for chunk in rest.chunks(DINGTALK_CHUNK) {
                d.oapi(
                    "/chat/update",
                    &json!({"chatid": chat_id, "add_useridlist": chunk}),
                )
                .await?;
            }
            if let (Some(text), Some(open)) = (first_message, &open_id) {
                send_dingtalk(
                    d,
                    open,
                    &json!({"msgKey": "sampleText", "msgParam": {"content": text}}),
                )
                .await?;
            }
            tracing::info!(connection = %a.via, key = %key, chat_id = %chat_id, delivery = attempt.delivery_id, "Group created.");
            Ok(())
        }
        AppOp::GroupUpdate {
            target,
            name,
            owner,
            add_members,
            remove_members,
        } => {
            let (chat_id, key) = match target {
                Target::Key(k) => (registered(store, &a.via, k).await?.chat_id, Some(k)),
                Target::ChatId(c) => (c.clone(), None),
            };
            let add = directory.user_ids(apis, &a.via, add_members).await?;
            let del = directory.user_ids(apis, &a.via, remove_members).await?;
            let mut body = json!({"chatid": chat_id});
            if let Some(n) = name {
                body["name"] = n.clone().into();
            }
            if let Some(o) = owner {
                body["owner"] = o.clone().into();
            }
            body["add_useridlist"] = add
                .iter()
                .take(DINGTALK_CHUNK)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            body["del_useridlist"] = del
                .iter()
                .take(DINGTALK_CHUNK)
                .cloned()
                .collect::<Vec<_>>()
                .into();
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
            if let (Some(k), Some(n)) = (key, name) {
                record(store, &a.via, k, &chat_id, None, n).await?;
            }
            Ok(())
        }
        AppOp::GroupSend { target, message } => {
            let open_id = match target {
                Target::Key(k) => registered(store, &a.via, k)
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
        AppOp::Notify {
            users,
            departments,
            message,
        } => {
            let agent = d.conn.agent_id.ok_or_else(|| {
                ActionError::permanent(format!("notify needs agent_id in connections.{}", a.via))
            })?;
            let users = directory.user_ids(apis, &a.via, users).await?;
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
