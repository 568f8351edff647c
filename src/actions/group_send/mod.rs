//! `group_send`: a message to a group through the app (WeCom `appchat/send`: msgtype + its
//! object, local images and files uploaded first; DingTalk `robot/groupMessages/send`:
//! `{ msgKey, msgParam }`). The group is a `group_create` key or a vendor chat id.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;

use super::app::{self, AppVendor, GroupTarget, Target};
use super::check::{Check, RawAction};
use super::render::{RenderError, json};
use crate::template::JsonTemplate;

pub const KEYS: &[&str] = &["via", "key", "chat_id", "message"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    pub vendor: AppVendor,
    pub target: GroupTarget,
    pub message: JsonTemplate,
}

#[derive(Clone)]
pub struct Rendered {
    pub via: String,
    pub vendor: AppVendor,
    pub target: Target,
    pub message: serde_json::Value,
}

/// What is asked for (`explain` shows it after `via`).
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSend")
            .field("target", &self.target)
            .field("message", &self.message)
            .finish()
    }
}

impl Spec {
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let (via, vendor) = app::via(c, prefix, a, table);
        let target = GroupTarget::validate(c, prefix, a, table);
        let message = app::message(c, prefix, a, table, vendor, true)?;
        let spec = Self {
            via: via?,
            vendor: vendor?,
            target: target?,
            message,
        };
        c.media_paths(prefix, &spec.message, &a.message);
        Some(spec)
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        self.target.templates(out);
        self.message.templates("message".into(), out);
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            via: self.via.clone(),
            vendor: self.vendor,
            target: self.target.render(ctx)?,
            message: json(ctx, "message", &self.message)?,
        })
    }
}
