//! `cancel`: calls off the pending (delayed) deliveries whose `key` renders the same, when
//! the event is stored; of the named rules only, if any. Not a delivery itself: intake
//! applies it in the event's own transaction.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;

use super::check::{Check, RawAction};
use super::render::{RenderError, nonempty, text};
use crate::template::Template;

pub const KEYS: &[&str] = &["rules"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub key: Template,
    /// Empty: every rule's deliveries with the key.
    pub rules: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub key: String,
    pub rules: Vec<String>,
}

impl Spec {
    /// A `key` template, and the rules whose deliveries it calls off (all without).
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let key = c.required_template(prefix, "key", &a.key, table, "cancel");
        let rules = match &a.rules {
            None => Vec::new(),
            Some(v) => match v.get_ref() {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(items) if items.iter().all(|i| i.is_str()) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => {
                    c.err(
                        Some(v.span()),
                        format!("{prefix}.rules"),
                        "must be a rule name or a list of them",
                    );
                    Vec::new()
                }
            },
        };
        Some(Self { key: key?, rules })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("key".into(), self.key.source()));
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            key: nonempty("key", text(ctx, "key", &self.key)?)?,
            rules: self.rules.clone(),
        })
    }
}
