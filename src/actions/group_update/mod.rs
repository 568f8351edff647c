//! `group_update`: renames a group, changes its owner, adds or removes members; the group is
//! a `group_create` key (looked up in the registry) or a vendor chat id.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;

use super::app::{self, AppVendor, GroupTarget, Target};
use super::check::{Check, RawAction};
use super::people::{self, Member, People};
use super::render::{RenderError, text_opt};
use crate::template::Template;

pub const KEYS: &[&str] = &[
    "via",
    "key",
    "chat_id",
    "name",
    "owner",
    "add_members",
    "remove_members",
];

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    pub vendor: AppVendor,
    pub target: GroupTarget,
    pub name: Option<Template>,
    pub owner: Option<Template>,
    pub add_members: Vec<Member>,
    pub remove_members: Vec<Member>,
}

#[derive(Clone)]
pub struct Rendered {
    pub via: String,
    pub vendor: AppVendor,
    pub target: Target,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub add_members: Vec<People>,
    pub remove_members: Vec<People>,
}

/// What is asked for (`explain` shows it after `via`).
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupUpdate")
            .field("target", &self.target)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("add_members", &self.add_members)
            .field("remove_members", &self.remove_members)
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
        let name = c.template(&format!("{prefix}.name"), &a.name);
        let owner = c.template(&format!("{prefix}.owner"), &a.owner);
        let add_members = people::members(c, &format!("{prefix}.add_members"), &a.add_members);
        let remove_members =
            people::members(c, &format!("{prefix}.remove_members"), &a.remove_members);
        if name.is_none() && owner.is_none() && add_members.is_empty() && remove_members.is_empty()
        {
            c.err(
                Some(table.clone()),
                prefix,
                "group_update needs name, owner, add_members or remove_members",
            );
        }
        Some(Self {
            via: via?,
            vendor: vendor?,
            target: target?,
            name,
            owner,
            add_members,
            remove_members,
        })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        self.target.templates(out);
        if let Some(n) = &self.name {
            out.push(("name".into(), n.source()));
        }
        if let Some(o) = &self.owner {
            out.push(("owner".into(), o.source()));
        }
        people::templates(out, "add_members", &self.add_members);
        people::templates(out, "remove_members", &self.remove_members);
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            via: self.via.clone(),
            vendor: self.vendor,
            target: self.target.render(ctx)?,
            // An optional form field left empty changes nothing.
            name: text_opt(ctx, "name", self.name.as_ref())?.filter(|n| !n.trim().is_empty()),
            owner: text_opt(ctx, "owner", self.owner.as_ref())?.filter(|o| !o.trim().is_empty()),
            add_members: people::render(ctx, "add_members", &self.add_members)?,
            remove_members: people::render(ctx, "remove_members", &self.remove_members)?,
        })
    }
}
