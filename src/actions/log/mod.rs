//! `log`: a line in the gateway's own log, at a level, with a rendered `message`.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, RawAction};
use super::render::{RenderError, text};
use crate::template::Template;

pub const KEYS: &[&str] = &["level", "message"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub level: tracing::Level,
    pub message: Template,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub level: tracing::Level,
    pub message: String,
}

impl Spec {
    /// `level` and a `message` template.
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let level = match c.string(&a.level, &format!("{prefix}.level")).as_deref() {
            None | Some("info") => tracing::Level::INFO,
            Some("warn") => tracing::Level::WARN,
            Some("error") => tracing::Level::ERROR,
            Some("debug") => tracing::Level::DEBUG,
            Some(other) => {
                let s = a.level.as_ref().map(Spanned::span);
                c.err(
                    s,
                    format!("{prefix}.level"),
                    format!("{other:?} is not one of error, warn, info, debug"),
                );
                tracing::Level::INFO
            }
        };
        let text = match &a.message {
            Some(m) => match m.get_ref() {
                toml::Value::String(t) => Some(Spanned::new(m.span(), t.clone())),
                _ => {
                    c.err(
                        Some(m.span()),
                        format!("{prefix}.message"),
                        "must be a string for kind log",
                    );
                    None
                }
            },
            None => None,
        };
        if a.message.is_some() && text.is_none() {
            return None;
        }
        let message = c.required_template(prefix, "message", &text, table, "log");
        Some(Self {
            level,
            message: message?,
        })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("message".into(), self.message.source()));
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            level: self.level,
            message: text(ctx, "message", &self.message)?,
        })
    }
}
