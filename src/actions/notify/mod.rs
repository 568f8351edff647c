//! `notify`: a work notification to people and departments through a WeCom app
//! (`message/send`) or a DingTalk app (`asyncsend_v2`); the app needs its `agent_id`.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;

use super::app::{self, AppVendor};
use super::check::{Check, RawAction};
use super::people::{self, Member, People, addresses};
use super::render::{RenderError, json, text};
use crate::template::{JsonTemplate, Template};

pub const KEYS: &[&str] = &["via", "users", "departments", "message"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    pub vendor: AppVendor,
    pub users: Vec<Member>,
    /// Department ids (templates) the vendor fans out itself.
    pub departments: Vec<Template>,
    pub message: JsonTemplate,
}

#[derive(Clone)]
pub struct Rendered {
    pub via: String,
    pub vendor: AppVendor,
    pub users: Vec<People>,
    pub departments: Vec<String>,
    pub message: serde_json::Value,
}

/// What is asked for (`explain` shows it after `via`).
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify")
            .field("users", &self.users)
            .field("departments", &self.departments)
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
        let users = people::members(c, &format!("{prefix}.users"), &a.users);
        let departments = c.template_list(&format!("{prefix}.departments"), &a.departments);
        if users.is_empty() && departments.is_empty() {
            c.err(
                Some(table.clone()),
                format!("{prefix}.users"),
                "notify needs users or departments",
            );
        }
        let message = app::message(c, prefix, a, table, vendor, false)?;
        let spec = Self {
            via: via?,
            vendor: vendor?,
            users,
            departments,
            message,
        };
        c.media_paths(prefix, &spec.message, &a.message);
        Some(spec)
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        people::templates(out, "users", &self.users);
        for (i, d) in self.departments.iter().enumerate() {
            out.push((format!("departments[{i}]"), d.source()));
        }
        self.message.templates("message".into(), out);
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        let departments = self
            .departments
            .iter()
            .enumerate()
            .map(|(i, t)| text(ctx, &format!("departments[{i}]"), t))
            .collect::<Result<_, _>>()?;
        Ok(Rendered {
            via: self.via.clone(),
            vendor: self.vendor,
            users: people::render(ctx, "users", &self.users)?,
            departments: addresses(departments),
            message: json(ctx, "message", &self.message)?,
        })
    }
}
