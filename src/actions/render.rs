//! What rendering an action kind shares: [`RenderError`] and the helpers that render a
//! template handle for an event, naming the field when it fails.

use minijinja::Value;

use crate::template::{JsonTemplate, Template};

/// Why an action could not be rendered for an event (the delivery goes dead with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A template failed: minijinja's reason, fuel or the 1 MiB cap included.
    #[error("{field}: {reason}")]
    Template { field: String, reason: String },
    /// A field that names something (a key, a chat, a department) rendered empty.
    #[error("{0} rendered empty")]
    Empty(String),
    /// A `wecom_aibot_reply` for an event that did not come over a bot's connection.
    #[error(
        "event from {0:?} has no req_id: wecom_aibot_reply answers only messages and events of a wecom_aibot receiver"
    )]
    NoReqId(String),
    /// A reload removed the action the delivery was made for.
    #[error("rule {rule:?} has no action {action} in the current config")]
    Gone { rule: String, action: usize },
}

/// A template rendered for the event; a failure names the field (`to[0]`, `headers.X-Team`).
pub fn text(ctx: &Value, field: &str, t: &Template) -> Result<String, RenderError> {
    t.render(ctx).map_err(|reason| RenderError::Template {
        field: field.to_owned(),
        reason,
    })
}

/// [`text`] for an optional template.
pub fn text_opt(
    ctx: &Value,
    field: &str,
    t: Option<&Template>,
) -> Result<Option<String>, RenderError> {
    t.map(|t| text(ctx, field, t)).transpose()
}

/// A JSON template rendered, a failure named by its path under `field`.
pub fn json(ctx: &Value, field: &str, t: &JsonTemplate) -> Result<serde_json::Value, RenderError> {
    t.render(ctx, field)
        .map_err(|(field, reason)| RenderError::Template { field, reason })
}

/// A value that names something (a key, a chat) must not render empty.
pub fn nonempty(name: &str, value: String) -> Result<String, RenderError> {
    if value.trim().is_empty() {
        Err(RenderError::Empty(name.to_owned()))
    } else {
        Ok(value)
    }
}
