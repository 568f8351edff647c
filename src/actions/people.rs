//! People an action reaches: [`Member`] as written (a user id template, or a department whose
//! members the directory lists when the action runs) and [`People`] as rendered.

use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, S};
use super::connection::Connection;
use super::render::{RenderError, text};
use crate::template::Template;

/// People for a group or a notification: a user id (a template; several may come out,
/// comma- or space-separated), or every member of a department looked up in the directory.
#[derive(Debug, Clone)]
pub enum Member {
    User(Template),
    Department {
        id: Template,
        /// The connection whose directory is asked; default the action's `via`.
        via: Option<String>,
        recursive: bool,
    },
}

/// Rendered people: user ids, or a department to look up when the action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum People {
    User(String),
    Department {
        id: String,
        via: Option<String>,
        recursive: bool,
    },
}

impl std::fmt::Display for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            People::User(u) => f.write_str(u),
            People::Department { id, via, recursive } => {
                write!(f, "[department {id}")?;
                if let Some(v) = via {
                    write!(f, " via {v}")?;
                }
                if *recursive {
                    f.write_str(" with sub-departments")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Joins people for display.
pub fn join_people(people: &[People]) -> String {
    people
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Addresses from rendered list items: each item may hold several, split on `,` `;` or
/// whitespace; empty ones (an unset field) are dropped.
pub fn addresses(items: Vec<String>) -> Vec<String> {
    items
        .iter()
        .flat_map(|s| s.split([',', ';', '\n', ' ', '\t']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The templates of a member list, named `name[i]` (`name[i].department`).
pub fn templates<'a>(out: &mut Vec<(String, &'a str)>, name: &str, members: &'a [Member]) {
    for (i, m) in members.iter().enumerate() {
        match m {
            Member::User(u) => out.push((format!("{name}[{i}]"), u.source())),
            Member::Department { id, .. } => {
                out.push((format!("{name}[{i}].department"), id.source()));
            }
        }
    }
}

/// Members as rendered: a user template may yield several ids (comma or space separated).
pub fn render(ctx: &Value, name: &str, members: &[Member]) -> Result<Vec<People>, RenderError> {
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        match m {
            Member::User(t) => {
                let ids = text(ctx, &format!("{name}[{i}]"), t)?;
                out.extend(addresses(vec![ids]).into_iter().map(People::User));
            }
            Member::Department { id, via, recursive } => {
                // "1,2" (WeCom's Department field) is two departments.
                let field = format!("{name}[{i}].department");
                let ids = addresses(vec![text(ctx, &field, id)?]);
                if ids.is_empty() {
                    return Err(RenderError::Empty(field));
                }
                out.extend(ids.into_iter().map(|id| People::Department {
                    id,
                    via: via.clone(),
                    recursive: *recursive,
                }));
            }
        }
    }
    Ok(out)
}

/// Email recipients: addresses, or departments whose members' addresses come from the
/// directory of the `via` connection (required there: the action's own `via` is SMTP).
pub fn recipients(c: &mut dyn Check, key: &str, value: &S<toml::Value>) -> Vec<Member> {
    let members = members(c, key, value);
    if members
        .iter()
        .any(|m| matches!(m, Member::Department { via: None, .. }))
    {
        let s = value.as_ref().map(Spanned::span);
        c.err(
            s,
            key,
            "a department needs via = \"<wecom or dingtalk connection>\" here",
        );
    }
    members
}

/// People: a string, or a list of strings and `{ department = ID, via = "…", recursive = false }`.
pub fn members(c: &mut dyn Check, key: &str, value: &S<toml::Value>) -> Vec<Member> {
    let Some(v) = value else {
        return Vec::new();
    };
    let items: Vec<&toml::Value> = match v.get_ref() {
        toml::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        match item {
            toml::Value::String(s) => {
                if let Some(t) = c.template(&item_key, &Some(Spanned::new(v.span(), s.clone()))) {
                    out.push(Member::User(t));
                }
            }
            toml::Value::Table(t) => {
                if let Some(m) = department(c, &item_key, v.span(), t) {
                    out.push(m);
                }
            }
            _ => c.err(
                Some(v.span()),
                item_key,
                "must be a user id or { department = ID }",
            ),
        }
    }
    out
}

/// `{ department = ID, via = "…", recursive = false }`: a department's members.
fn department(
    c: &mut dyn Check,
    item_key: &str,
    span: Range<usize>,
    t: &toml::Table,
) -> Option<Member> {
    let unknown: Vec<&String> = t
        .keys()
        .filter(|k| !["department", "via", "recursive"].contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        c.err(
            Some(span.clone()),
            item_key.to_owned(),
            format!("unknown key {:?} (department, via, recursive)", unknown[0]),
        );
        return None;
    }
    let id = match t.get("department") {
        Some(toml::Value::Integer(n)) => n.to_string(),
        Some(toml::Value::String(s)) => s.clone(),
        _ => {
            c.err(
                Some(span.clone()),
                format!("{item_key}.department"),
                "missing (a department id)",
            );
            return None;
        }
    };
    let id = c.template(
        &format!("{item_key}.department"),
        &Some(Spanned::new(span.clone(), id)),
    )?;
    let via = t.get("via").and_then(|x| x.as_str()).map(str::to_owned);
    if let Some(name) = &via
        && !matches!(
            c.connection(name),
            Some(Connection::WeCom(_) | Connection::DingTalk(_))
        )
    {
        c.err(
            Some(span.clone()),
            format!("{item_key}.via"),
            format!("no wecom or dingtalk connection named {name:?}"),
        );
    }
    let recursive = t
        .get("recursive")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Some(Member::Department { id, via, recursive })
}
