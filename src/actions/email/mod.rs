//! `email`: through an `smtp` connection, to / cc / bcc (addresses, or departments whose
//! members' addresses the directory lists), a subject, a text body and an optional html part
//! (autoescaped); optionally one message per recipient.

#[cfg(feature = "server")]
mod send;

#[cfg(feature = "server")]
pub use send::Mailer;

use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, RawAction};
use super::connection::Connection;
use super::people::{self, Member, People};
use super::render::{RenderError, text, text_opt};
use crate::template::Template;

pub const KEYS: &[&str] = &[
    "via",
    "to",
    "cc",
    "bcc",
    "subject",
    "body",
    "html",
    "one_per_recipient",
];

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    /// Addresses (templates), or `{ department = ID, via = "CONNECTION" }`: the members'
    /// addresses from the WeCom or DingTalk directory.
    pub to: Vec<Member>,
    pub cc: Vec<Member>,
    pub bcc: Vec<Member>,
    pub subject: Template,
    pub body: Template,
    pub html: Option<Template>,
    /// One message per address in `to` (cc and bcc go with each) instead of one to all.
    pub one_per_recipient: bool,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub via: String,
    /// Addresses, or departments resolved to their members' addresses when sent.
    pub to: Vec<People>,
    pub cc: Vec<People>,
    pub bcc: Vec<People>,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    pub one_per_recipient: bool,
}

impl Spec {
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let via = c.string(&a.via, &format!("{prefix}.via"));
        match &via {
            None if a.via.is_none() => c.err(
                Some(table.clone()),
                format!("{prefix}.via"),
                "missing (the name of an smtp connection)",
            ),
            // A declared connection that did not validate had errors of its own.
            Some(v)
                if !matches!(c.connection(v), Some(Connection::Smtp(_)))
                    && (c.connection(v).is_some() || !c.declared(v)) =>
            {
                let s = a.via.as_ref().map(Spanned::span);
                c.err(
                    s,
                    format!("{prefix}.via"),
                    format!("no smtp connection named {v:?}"),
                );
            }
            _ => {}
        }
        let to = people::recipients(c, &format!("{prefix}.to"), &a.to);
        if a.to.is_none() {
            c.err(
                Some(table.clone()),
                format!("{prefix}.to"),
                "missing (required for kind email)",
            );
        }
        let cc = people::recipients(c, &format!("{prefix}.cc"), &a.cc);
        let bcc = people::recipients(c, &format!("{prefix}.bcc"), &a.bcc);
        let subject = c.required_template(prefix, "subject", &a.subject, table, "email");
        let body = c.required_template(prefix, "body", &a.body, table, "email");
        let html = c.template(&format!("{prefix}.html"), &a.html);
        Some(Self {
            via: via?,
            to,
            cc,
            bcc,
            subject: subject?,
            body: body?,
            html,
            one_per_recipient: a.one_per_recipient.as_ref().is_some_and(|b| *b.get_ref()),
        })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        people::templates(out, "to", &self.to);
        people::templates(out, "cc", &self.cc);
        people::templates(out, "bcc", &self.bcc);
        out.push(("subject".into(), self.subject.source()));
        out.push(("body".into(), self.body.source()));
        if let Some(h) = &self.html {
            out.push(("html".into(), h.source()));
        }
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        Ok(Rendered {
            via: self.via.clone(),
            to: people::render(ctx, "to", &self.to)?,
            cc: people::render(ctx, "cc", &self.cc)?,
            bcc: people::render(ctx, "bcc", &self.bcc)?,
            subject: text(ctx, "subject", &self.subject)?,
            body: text(ctx, "body", &self.body)?,
            html: text_opt(ctx, "html", self.html.as_ref())?,
            one_per_recipient: self.one_per_recipient,
        })
    }
}
