//! The group registry as the group kinds use it: a key's chat (WeCom chat ids derived from
//! the key, so no retry can make a second group; DingTalk's creation noted before it is
//! asked for), registry writes that outlive a short store outage, and DingTalk's group
//! message call (`group_create`'s first message and `group_send`).

use serde_json::{Value, json};

use crate::actions::ActionError;
use crate::actions::api::dingtalk::DingTalk;
use crate::clock::now_ms;
use crate::store::{GroupRow, Store};

/// DingTalk `chat/create` and `chat/update` take at most 40 users per call.
pub const DINGTALK_CHUNK: usize = 40;

/// WeCom chat ids: at most 32 letters and digits, derived from the connection and key so a
/// retried create can only ever name the same group.
pub fn wecom_chat_id(connection: &str, key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{connection}\0{key}").as_bytes());
    let hex: String = d.iter().take(15).map(|b| format!("{b:02x}")).collect();
    format!("hg{hex}")
}

/// The registry row for a key; absent is retryable: its group_create may not have run yet.
pub async fn registered(store: &Store, via: &str, key: &str) -> Result<GroupRow, ActionError> {
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
pub fn unsure(via: &str, key: &str, name: &str, why: &str) -> ActionError {
    ActionError::permanent(format!(
        "{why}; DingTalk may have created group {name:?} for key {key:?}, so hookgate will not create \
         another. If it exists: hookgate groups set {key} --via {via} --chat-id CHATID \
         [--open-conversation-id CID]; if not: hookgate groups forget {key} --via {via}; then \
         hookgate deliveries retry with this delivery's id"
    ))
}

/// A registry write that must not be lost to a short store outage: tried for about 30 s.
pub async fn persist<F, Fut>(mut write: F) -> Result<(), crate::store::StoreError>
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

pub fn group_row(
    via: &str,
    key: &str,
    chat_id: &str,
    open_id: Option<&str>,
    name: &str,
) -> GroupRow {
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

pub async fn record(
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

/// `robot/groupMessages/send`: msgParam travels as a JSON string.
pub async fn send_dingtalk(
    d: &DingTalk,
    open_id: &str,
    message: &Value,
) -> Result<(), ActionError> {
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
