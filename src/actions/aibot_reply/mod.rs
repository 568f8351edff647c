//! `wecom_aibot_reply`: an answer over the WeCom AI bot connection the event came in on, to
//! the push's `req_id` (`aibot_respond_msg`; to `enter_chat` a welcome, to
//! `template_card_event` a card update). `message`: `{ msgtype, <msgtype> = {…} }`.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;

use super::check::{Check, RawAction, message_shape};
use super::render::{RenderError, json};
use crate::template::{EventView, JsonTemplate};

pub const KEYS: &[&str] = &["message"];

/// What a bot's connection answers with (a welcome takes text or a card, a card update a
/// card).
const AIBOT_TYPES: &[(&str, &[&str])] = &[
    ("stream", &["content"]),
    ("text", &["content"]),
    ("markdown", &["content"]),
    ("template_card", &["card_type"]),
];

#[derive(Debug, Clone)]
pub struct Spec {
    pub message: JsonTemplate,
}

/// A WeCom AI bot answer: `cmd` with the push's `req_id` over the receiver's connection.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub receiver: String,
    pub cmd: &'static str,
    pub req_id: String,
    pub body: serde_json::Value,
}

impl Spec {
    /// A message of a type the bot connection answers with. (That the rule applies only to
    /// `wecom_aibot` receivers is the rule's check.)
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let missing = "missing (required for kind wecom_aibot_reply)";
        let message = c.message(prefix, &a.message, table, missing, &|m| {
            message_shape(m, "msgtype", AIBOT_TYPES, &|t| t)
        })?;
        Some(Self { message })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        self.message.templates("message".into(), out);
    }

    /// To the push's `req_id`, as a welcome, a card update or an answer.
    pub fn render(&self, ctx: &Value, ev: &EventView<'_>) -> Result<Rendered, RenderError> {
        let Some(req_id) = ev.fields.get("req_id").and_then(|r| r.as_str()) else {
            return Err(RenderError::NoReqId(ev.receiver.to_owned()));
        };
        Ok(Rendered {
            receiver: ev.receiver.to_owned(),
            cmd: match ev.kind {
                "enter_chat" => "aibot_respond_welcome_msg",
                "template_card_event" => "aibot_respond_update_msg",
                _ => "aibot_respond_msg",
            },
            req_id: req_id.to_owned(),
            body: json(ctx, "message", &self.message)?,
        })
    }
}
