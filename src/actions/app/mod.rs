//! What the vendor-app kinds (`group_create`, `group_update`, `group_send`, `notify`) share:
//! the app connection they act through (`via`, a wecom or dingtalk connection), the message
//! shapes of that vendor's API, and which group an update or a message goes to.

#[cfg(feature = "server")]
mod context;

#[cfg(feature = "server")]
pub use context::App;

use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, RawAction, message_shape};
use super::connection::Connection;
use super::render::{RenderError, nonempty, text};
use crate::template::{JsonTemplate, Template};

/// WeCom `appchat/send` and `message/send` types with their required keys (`a|b`: either).
const WECOM_GROUP: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["content"]),
    ("image", &["media_id|path"]),
    ("file", &["media_id|path"]),
    ("textcard", &["title", "description", "url"]),
    ("news", &["articles"]),
];
const WECOM_NOTIFY: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["content"]),
    ("textcard", &["title", "description", "url"]),
];
/// DingTalk `robot/groupMessages/send` msgKeys and their msgParam keys.
const DINGTALK_GROUP: &[(&str, &[&str])] = &[
    ("sampleText", &["content"]),
    ("sampleMarkdown", &["title", "text"]),
    ("sampleLink", &["text", "title", "picUrl", "messageUrl"]),
    // `path`: a file in `[outbound] media_dir`, uploaded when the action runs.
    ("sampleImageMsg", &["photoURL|path"]),
    (
        "sampleFile",
        &["mediaId|path", "fileName|path", "fileType|path"],
    ),
    (
        "sampleActionCard",
        &["title", "text", "singleTitle", "singleURL"],
    ),
    (
        "sampleActionCard2",
        &[
            "title",
            "text",
            "actionTitle1",
            "actionURL1",
            "actionTitle2",
            "actionURL2",
        ],
    ),
    (
        "sampleActionCard3",
        &[
            "title",
            "text",
            "actionTitle1",
            "actionURL1",
            "actionTitle2",
            "actionURL2",
            "actionTitle3",
            "actionURL3",
        ],
    ),
    (
        "sampleActionCard4",
        &[
            "title",
            "text",
            "actionTitle1",
            "actionURL1",
            "actionTitle2",
            "actionURL2",
            "actionTitle3",
            "actionURL3",
            "actionTitle4",
            "actionURL4",
        ],
    ),
    (
        "sampleActionCard5",
        &[
            "title",
            "text",
            "actionTitle1",
            "actionURL1",
            "actionTitle2",
            "actionURL2",
            "actionTitle3",
            "actionURL3",
            "actionTitle4",
            "actionURL4",
            "actionTitle5",
            "actionURL5",
        ],
    ),
    (
        "sampleActionCard6",
        &[
            "title",
            "text",
            "buttonTitle1",
            "buttonUrl1",
            "buttonTitle2",
            "buttonUrl2",
        ],
    ),
];
/// DingTalk `asyncsend_v2` msg types.
const DINGTALK_NOTIFY: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("markdown", &["title", "text"]),
    ("link", &["messageUrl", "picUrl", "title", "text"]),
    ("action_card", &["title", "markdown"]),
    ("oa", &["message_url", "head", "body"]),
];

/// Which vendor app a `via` connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppVendor {
    WeCom,
    DingTalk,
}

/// A vendor-app action as `explain` shows it: the connection, then what is asked for.
pub fn describe(via: &str, vendor: AppVendor, asked: &dyn std::fmt::Debug) -> String {
    format!("via: {via} ({vendor:?})\n{asked:#?}")
}

/// `via`: the name of a wecom or dingtalk connection, and which vendor it is.
pub fn via(
    c: &mut dyn Check,
    prefix: &str,
    a: &RawAction,
    table: &Range<usize>,
) -> (Option<String>, Option<AppVendor>) {
    let via = c.string(&a.via, &format!("{prefix}.via"));
    let vendor = match (&via, via.as_deref().and_then(|v| c.connection(v))) {
        (None, _) => {
            if a.via.is_none() {
                c.err(
                    Some(table.clone()),
                    format!("{prefix}.via"),
                    "missing (a wecom or dingtalk connection)",
                );
            }
            None
        }
        (Some(_), Some(Connection::WeCom(_))) => Some(AppVendor::WeCom),
        (Some(_), Some(Connection::DingTalk(_))) => Some(AppVendor::DingTalk),
        // Declared with errors of its own, already reported.
        (Some(v), None) if c.declared(v) => None,
        (Some(v), _) => {
            let s = a.via.as_ref().map(Spanned::span);
            c.err(
                s,
                format!("{prefix}.via"),
                format!("no wecom or dingtalk connection named {v:?}"),
            );
            None
        }
    };
    (via, vendor)
}

/// `message`, checked against the vendor's shapes for a group message (`group`) or a work
/// notification; its local files only from `media_dir`.
pub fn message(
    c: &mut dyn Check,
    prefix: &str,
    a: &RawAction,
    table: &Range<usize>,
    vendor: Option<AppVendor>,
    group: bool,
) -> Option<JsonTemplate> {
    let message = c.message(prefix, &a.message, table, "missing", &|m| {
        match (vendor?, group) {
            // { msgKey = "sampleMarkdown", msgParam = { title, text } }
            (AppVendor::DingTalk, true) => {
                message_shape(m, "msgKey", DINGTALK_GROUP, &|_| "msgParam")
            }
            // { msgtype = "text", text = { content } }
            (AppVendor::WeCom, true) => message_shape(m, "msgtype", WECOM_GROUP, &|t| t),
            (AppVendor::WeCom, false) => message_shape(m, "msgtype", WECOM_NOTIFY, &|t| t),
            (AppVendor::DingTalk, false) => message_shape(m, "msgtype", DINGTALK_NOTIFY, &|t| t),
        }
    })?;
    vendor?;
    Some(message)
}

/// Which group an update or a message goes to.
#[derive(Debug, Clone)]
pub enum GroupTarget {
    /// The `key` of a `group_create` (a template), looked up in the group registry.
    Key(Template),
    /// A vendor chat id (a template): WeCom chatid, DingTalk openConversationId (`cid…`).
    ChatId(Template),
}

/// A group target as rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Key(String),
    ChatId(String),
}

impl GroupTarget {
    /// `key` or `chat_id`, exactly one.
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        match (&a.key, &a.chat_id) {
            (Some(_), None) => c.template(&format!("{prefix}.key"), &a.key).map(Self::Key),
            (None, Some(_)) => c
                .template(&format!("{prefix}.chat_id"), &a.chat_id)
                .map(Self::ChatId),
            (Some(_), Some(id)) => {
                c.err(
                    Some(id.span()),
                    format!("{prefix}.chat_id"),
                    "give key or chat_id, not both",
                );
                None
            }
            (None, None) => {
                c.err(
                    Some(table.clone()),
                    format!("{prefix}.key"),
                    "missing (the group_create key, or chat_id)",
                );
                None
            }
        }
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        match self {
            Self::Key(k) => out.push(("key".into(), k.source())),
            Self::ChatId(c) => out.push(("chat_id".into(), c.source())),
        }
    }

    pub fn render(&self, ctx: &Value) -> Result<Target, RenderError> {
        Ok(match self {
            Self::Key(t) => Target::Key(nonempty("key", text(ctx, "key", t)?)?),
            Self::ChatId(t) => Target::ChatId(nonempty("chat_id", text(ctx, "chat_id", t)?)?),
        })
    }
}
