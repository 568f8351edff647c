//! Sends to a group: WeCom `appchat/send` (local images and files uploaded first); DingTalk
//! `robot/groupMessages/send` to the group's openConversationId.

use serde_json::{Value, json};

use super::Rendered;
use crate::actions::api::dingtalk::DingTalk;
use crate::actions::api::wecom::WeCom;
use crate::actions::app::{App, AppVendor, Target};
use crate::actions::group::{registered, send_dingtalk};
use crate::actions::outbound::Outbound;
use crate::actions::{ActionError, Attempt};

impl Rendered {
    /// As `explain` shows it: the connection, then what is asked for.
    pub fn describe(&self) -> String {
        crate::actions::app::describe(&self.via, self.vendor, self)
    }

    pub async fn send(&self, app: &App<'_>, _: Attempt<'_>) -> Result<(), ActionError> {
        let via = self.via.as_str();
        match self.vendor {
            AppVendor::WeCom => {
                wecom_send(app, app.wecom(via)?, via, &self.target, &self.message).await
            }
            AppVendor::DingTalk => {
                dingtalk_send(app, app.dingtalk(via)?, via, &self.target, &self.message).await
            }
        }
    }
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
    media: &Outbound,
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
    let message = dingtalk_media(d, app.media, message.clone()).await?;
    send_dingtalk(d, &open_id, &message).await
}

/// An image or file given as a local `msgParam.path` (inside `[outbound] media_dir`):
/// uploaded as app media (at most 20 MB), then sent by its media id, the file with its name
/// and extension.
async fn dingtalk_media(
    d: &DingTalk,
    media: &Outbound,
    mut message: Value,
) -> Result<Value, ActionError> {
    let Some(path) = message["msgParam"]["path"].as_str().map(str::to_owned) else {
        return Ok(message);
    };
    let (path, bytes) = media.read_media(&path, 20 << 20).await?;
    let image = message["msgKey"] == "sampleImageMsg";
    let media_id = d
        .upload(if image { "image" } else { "file" }, &path, &bytes)
        .await?;
    let param = &mut message["msgParam"];
    if let Some(p) = param.as_object_mut() {
        p.remove("path");
    }
    if image {
        param["photoURL"] = media_id.into();
    } else {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        param["mediaId"] = media_id.into();
        if param["fileName"].is_null() {
            param["fileName"] = name.unwrap_or_default().into();
        }
        if param["fileType"].is_null() {
            param["fileType"] = ext.unwrap_or_default().into();
        }
    }
    Ok(message)
}
