//! `dingtalk_robot`, `wecom_robot`, `feishu_robot`: a group robot message through its
//! webhook (DingTalk and Feishu optionally signed), within the robot's per-minute budget.
//! `message` is the vendor's JSON body, checked against its documented shapes; WeCom
//! `image`/`file` take a `path` from `[outbound] media_dir` that the gateway uploads.

#[cfg(feature = "server")]
mod send;

#[cfg(feature = "server")]
pub use send::webhook_key;

use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, RawAction, message_shape};
use super::render::{RenderError, json, text};
use crate::secret::Secret;
use crate::template::{JsonTemplate, Template};

pub const KEYS: &[&str] = &["webhook", "secret", "message", "per_minute"];

/// Per robot: each message type with the keys its object requires (`a|b`: either).
const DINGTALK_TYPES: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["title", "text"]),
    ("link", &["title", "text", "messageUrl"]),
    ("actionCard", &["title", "text", "singleTitle|btns"]),
    ("feedCard", &["links"]),
];
const WECOM_TYPES: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["content"]),
    ("news", &["articles"]),
    ("image", &["path"]),
    ("file", &["path"]),
    ("template_card", &["card_type"]),
];
const FEISHU_TYPES: &[(&str, &[&str])] = &[
    ("text", &["text"]),
    ("post", &["post"]),
    ("share_chat", &["share_chat_id"]),
    ("image", &["image_key"]),
    ("interactive", &[]),
];

/// Group robots reached through a webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotVendor {
    /// DingTalk custom robot: `robot/send?access_token=`, optional 加签 secret.
    DingTalk,
    /// WeCom group robot: `webhook/send?key=`.
    WeCom,
    /// Feishu/Lark custom bot: `bot/v2/hook/…`, optional signature secret.
    Feishu,
}

impl RobotVendor {
    pub fn kind(self) -> &'static str {
        match self {
            Self::DingTalk => "dingtalk_robot",
            Self::WeCom => "wecom_robot",
            Self::Feishu => "feishu_robot",
        }
    }

    /// The hosts its webhooks live on (HTTPS only).
    pub fn hosts(self) -> &'static [&'static str] {
        match self {
            Self::DingTalk => &["oapi.dingtalk.com", "api.dingtalk.com"],
            Self::WeCom => &["qyapi.weixin.qq.com"],
            Self::Feishu => &["open.feishu.cn", "open.larksuite.com"],
        }
    }

    /// The key naming a message's type, and the types with what each requires.
    fn types(
        self,
    ) -> (
        &'static str,
        &'static [(&'static str, &'static [&'static str])],
    ) {
        match self {
            Self::DingTalk => ("msgtype", DINGTALK_TYPES),
            Self::WeCom => ("msgtype", WECOM_TYPES),
            Self::Feishu => ("msg_type", FEISHU_TYPES),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub vendor: RobotVendor,
    pub webhook: Template,
    pub secret: Option<Secret<String>>,
    pub message: JsonTemplate,
    /// Messages a minute this webhook accepts (the vendors allow 20; Feishu 100).
    pub per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub vendor: RobotVendor,
    pub webhook: String,
    pub secret: Option<Secret<String>>,
    /// The vendor's JSON body with every template rendered.
    pub message: serde_json::Value,
    pub per_minute: u32,
}

impl Spec {
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        vendor: RobotVendor,
    ) -> Option<Self> {
        let kind = vendor.kind();
        let webhook = c.required_template(prefix, "webhook", &a.webhook, table, kind);
        if vendor == RobotVendor::WeCom && a.secret.is_some() {
            let s = a.secret.as_ref().map(Spanned::span);
            c.err(
                s,
                format!("{prefix}.secret"),
                "WeCom group robots have no signing secret",
            );
        }
        let secret = c
            .string(&a.secret, &format!("{prefix}.secret"))
            .map(Secret::new);
        let default_rate = if vendor == RobotVendor::Feishu {
            100
        } else {
            20
        };
        let per_minute = a.per_minute.as_ref().map_or(default_rate, |p| *p.get_ref());
        if per_minute == 0 {
            let s = a.per_minute.as_ref().map(Spanned::span);
            c.err(s, format!("{prefix}.per_minute"), "must be positive");
        }
        let missing = format!("missing (required for kind {kind})");
        let message = c.message(prefix, &a.message, table, &missing, &|m| {
            message_problem(m, vendor)
        })?;
        let spec = Self {
            vendor,
            webhook: webhook?,
            secret,
            message,
            per_minute: u32::try_from(per_minute).unwrap_or(u32::MAX),
        };
        let hosts = vendor.hosts();
        if let Some(problem) = c
            .outbound()
            .webhook_problem(kind, hosts, spec.webhook.source())
        {
            let s = a.webhook.as_ref().map(Spanned::span);
            c.err(s, format!("{prefix}.webhook"), problem);
        }
        c.media_paths(prefix, &spec.message, &a.message);
        Some(spec)
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("webhook".into(), self.webhook.source()));
        self.message.templates("message".into(), out);
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            vendor: self.vendor,
            webhook: text(ctx, "webhook", &self.webhook)?,
            secret: self.secret.clone(),
            message: json(ctx, "message", &self.message)?,
            per_minute: self.per_minute,
        })
    }
}

/// What is missing from a robot message, by the vendor's documented shapes.
fn message_problem(message: &serde_json::Value, vendor: RobotVendor) -> Option<String> {
    let (type_key, types) = vendor.types();
    // DingTalk and WeCom nest the body under the type's name; Feishu under `content`
    // (`card` for interactive).
    message_shape(message, type_key, types, &|t| match (vendor, t) {
        (RobotVendor::Feishu, "interactive") => "card",
        (RobotVendor::Feishu, _) => "content",
        _ => t,
    })
}
