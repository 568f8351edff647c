//! `group_create`: a group chat for `key`, created once through a WeCom or DingTalk app; a
//! key that already has a group is a success doing nothing. The owner and members (user ids
//! or departments), and an optional first message (a new WeCom group shows in clients only
//! once something was said in it).

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;

use super::app::{self, AppVendor};
use super::check::{Check, RawAction};
use super::people::{self, Member, People};
use super::render::{RenderError, nonempty, text, text_opt};
use crate::template::Template;

pub const KEYS: &[&str] = &["via", "key", "name", "owner", "members", "first_message"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    pub vendor: AppVendor,
    pub key: Template,
    pub name: Template,
    pub owner: Template,
    pub members: Vec<Member>,
    /// Sent as text right after creation (a new WeCom group shows in clients only then).
    pub first_message: Option<Template>,
}

#[derive(Clone)]
pub struct Rendered {
    pub via: String,
    pub vendor: AppVendor,
    pub key: String,
    pub name: String,
    pub owner: String,
    pub members: Vec<People>,
    pub first_message: Option<String>,
}

/// What is asked for (`explain` shows it after `via`).
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCreate")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("members", &self.members)
            .field("first_message", &self.first_message)
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
        let kind = "group_create";
        let key = c.required_template(prefix, "key", &a.key, table, kind);
        let name = c.required_template(prefix, "name", &a.name, table, kind);
        let owner = c.required_template(prefix, "owner", &a.owner, table, kind);
        if a.members.is_none() {
            c.err(
                Some(table.clone()),
                format!("{prefix}.members"),
                "missing (required for kind group_create)",
            );
        }
        let members = people::members(c, &format!("{prefix}.members"), &a.members);
        let first_message = c.template(&format!("{prefix}.first_message"), &a.first_message);
        Some(Self {
            via: via?,
            vendor: vendor?,
            key: key?,
            name: name?,
            owner: owner?,
            members,
            first_message,
        })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("key".into(), self.key.source()));
        out.push(("name".into(), self.name.source()));
        out.push(("owner".into(), self.owner.source()));
        people::templates(out, "members", &self.members);
        if let Some(m) = &self.first_message {
            out.push(("first_message".into(), m.source()));
        }
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            via: self.via.clone(),
            vendor: self.vendor,
            key: nonempty("key", text(ctx, "key", &self.key)?)?,
            name: text(ctx, "name", &self.name)?,
            owner: text(ctx, "owner", &self.owner)?,
            members: people::render(ctx, "members", &self.members)?,
            first_message: text_opt(ctx, "first_message", self.first_message.as_ref())?,
        })
    }
}
