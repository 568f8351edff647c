//! Actions with every template rendered: what the delivery worker sends.

use std::time::Duration;

use minijinja::Value;

use super::{EventView, RenderError};
use crate::config::{Action, AppVendor, GroupTarget, Member, RobotVendor};
use crate::secret::Secret;
use crate::template::{JsonTemplate, Template};

/// An action ready to run.
#[derive(Debug, Clone)]
pub enum Rendered {
    Log {
        level: tracing::Level,
        message: String,
    },
    Http(RenderedHttp),
    Email(RenderedEmail),
    Robot(RenderedRobot),
    App(RenderedApp),
    AibotReply(RenderedAibotReply),
    /// Not sent: what a `cancel` calls off (shown by `explain`).
    Cancel {
        key: String,
        rules: Vec<String>,
    },
}

/// A WeCom AI bot answer: `cmd` with the push's `req_id` over the receiver's connection.
#[derive(Debug, Clone)]
pub struct RenderedAibotReply {
    pub receiver: String,
    pub cmd: &'static str,
    pub req_id: String,
    pub body: serde_json::Value,
}

/// A vendor-app action (groups, notifications) with its templates rendered.
#[derive(Debug, Clone)]
pub struct RenderedApp {
    pub via: String,
    pub vendor: AppVendor,
    pub op: AppOp,
}

#[derive(Debug, Clone)]
pub enum AppOp {
    GroupCreate {
        key: String,
        name: String,
        owner: String,
        members: Vec<People>,
        first_message: Option<String>,
    },
    GroupUpdate {
        target: Target,
        name: Option<String>,
        owner: Option<String>,
        add_members: Vec<People>,
        remove_members: Vec<People>,
    },
    GroupSend {
        target: Target,
        message: serde_json::Value,
    },
    Notify {
        users: Vec<People>,
        departments: Vec<String>,
        message: serde_json::Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Key(String),
    ChatId(String),
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

#[derive(Debug, Clone)]
pub struct RenderedRobot {
    pub vendor: RobotVendor,
    pub webhook: String,
    pub secret: Option<Secret<String>>,
    /// The vendor's JSON body with every template rendered.
    pub message: serde_json::Value,
    pub per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct RenderedHttp {
    pub url: String,
    /// The URL's host comes out of a template (event data): `[outbound]` confines it.
    pub host_from_template: bool,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `true` when the body is the event as JSON (sent as application/json).
    pub json: bool,
    pub secret: Option<Secret<String>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RenderedEmail {
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

impl Rendered {
    pub fn kind(&self) -> &'static str {
        match self {
            Rendered::Log { .. } => "log",
            Rendered::Http(_) => "http",
            Rendered::Email(_) => "email",
            Rendered::Robot(r) => r.vendor.kind(),
            Rendered::Cancel { .. } => "cancel",
            Rendered::AibotReply(_) => "wecom_aibot_reply",
            Rendered::App(a) => match a.op {
                AppOp::GroupCreate { .. } => "group_create",
                AppOp::GroupUpdate { .. } => "group_update",
                AppOp::GroupSend { .. } => "group_send",
                AppOp::Notify { .. } => "notify",
            },
        }
    }
}

/// Addresses from rendered list items: each item may hold several, split on `,` `;` or
/// whitespace; empty ones (an unset field) are dropped.
fn addresses(items: Vec<String>) -> Vec<String> {
    items
        .iter()
        .flat_map(|s| s.split([',', ';', '\n', ' ', '\t']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A template rendered for the event; a failure names the field (`to[0]`, `headers.X-Team`).
fn text(ctx: &Value, field: &str, t: &Template) -> Result<String, RenderError> {
    t.render(ctx).map_err(|reason| RenderError::Template {
        field: field.to_owned(),
        reason,
    })
}

/// [`text`] for an optional template.
fn text_opt(ctx: &Value, field: &str, t: Option<&Template>) -> Result<Option<String>, RenderError> {
    t.map(|t| text(ctx, field, t)).transpose()
}

/// A JSON template rendered, a failure named by its path under `field`.
fn json(ctx: &Value, field: &str, t: &JsonTemplate) -> Result<serde_json::Value, RenderError> {
    t.render(ctx, field)
        .map_err(|(field, reason)| RenderError::Template { field, reason })
}

pub(super) fn render(
    spec: &Action,
    ctx: &Value,
    ev: &EventView<'_>,
) -> Result<Rendered, RenderError> {
    match spec {
        Action::Log { level, message } => Ok(Rendered::Log {
            level: *level,
            message: text(ctx, "message", message)?,
        }),
        Action::Http { .. } => http(spec, ctx, ev),
        Action::Email { .. } => email(spec, ctx),
        Action::Robot {
            vendor,
            webhook,
            secret,
            message,
            per_minute,
        } => Ok(Rendered::Robot(RenderedRobot {
            vendor: *vendor,
            webhook: text(ctx, "webhook", webhook)?,
            secret: secret.clone(),
            message: json(ctx, "message", message)?,
            per_minute: *per_minute,
        })),
        Action::GroupCreate { .. }
        | Action::GroupUpdate { .. }
        | Action::GroupSend { .. }
        | Action::Notify { .. } => app_action(spec, ctx),
        Action::AibotReply { message } => aibot_reply(message, ctx, ev),
        Action::Cancel { key, rules } => Ok(Rendered::Cancel {
            key: nonempty("key", text(ctx, "key", key)?)?,
            rules: rules.clone(),
        }),
    }
}

fn http(spec: &Action, ctx: &Value, ev: &EventView<'_>) -> Result<Rendered, RenderError> {
    let Action::Http {
        url,
        method,
        headers,
        body,
        secret,
        timeout,
    } = spec
    else {
        return Err(RenderError::NotThisKind("http"));
    };
    let mut out_headers = Vec::with_capacity(headers.len());
    for (k, t) in headers {
        out_headers.push((k.clone(), text(ctx, &format!("headers.{k}"), t)?));
    }
    let (body, json) = match body {
        Some(t) => (text(ctx, "body", t)?, false),
        None => (event_json(ev), true),
    };
    Ok(Rendered::Http(RenderedHttp {
        url: text(ctx, "url", url)?,
        host_from_template: !matches!(
            crate::config::url_target(url.source()),
            Ok(crate::config::UrlTarget::Literal { .. })
        ),
        method: method.clone(),
        headers: out_headers,
        body,
        json,
        secret: secret.clone(),
        timeout: *timeout,
    }))
}

fn email(spec: &Action, ctx: &Value) -> Result<Rendered, RenderError> {
    let Action::Email {
        via,
        to,
        cc,
        bcc,
        subject,
        body,
        html,
        one_per_recipient,
    } = spec
    else {
        return Err(RenderError::NotThisKind("email"));
    };
    Ok(Rendered::Email(RenderedEmail {
        via: via.clone(),
        to: people(ctx, "to", to)?,
        cc: people(ctx, "cc", cc)?,
        bcc: people(ctx, "bcc", bcc)?,
        subject: text(ctx, "subject", subject)?,
        body: text(ctx, "body", body)?,
        html: text_opt(ctx, "html", html.as_ref())?,
        one_per_recipient: *one_per_recipient,
    }))
}

/// The vendor-app kinds: `group_create`, `group_update`, `group_send`, `notify`.
fn app_action(spec: &Action, ctx: &Value) -> Result<Rendered, RenderError> {
    let (via, vendor, op) = match spec {
        Action::GroupCreate {
            via,
            vendor,
            key,
            name,
            owner,
            members,
            first_message,
        } => (
            via,
            vendor,
            AppOp::GroupCreate {
                key: nonempty("key", text(ctx, "key", key)?)?,
                name: text(ctx, "name", name)?,
                owner: text(ctx, "owner", owner)?,
                members: people(ctx, "members", members)?,
                first_message: text_opt(ctx, "first_message", first_message.as_ref())?,
            },
        ),
        Action::GroupUpdate {
            via,
            vendor,
            target,
            name,
            owner,
            add_members,
            remove_members,
        } => (
            via,
            vendor,
            AppOp::GroupUpdate {
                target: render_target(ctx, target)?,
                name: text_opt(ctx, "name", name.as_ref())?,
                owner: text_opt(ctx, "owner", owner.as_ref())?,
                add_members: people(ctx, "add_members", add_members)?,
                remove_members: people(ctx, "remove_members", remove_members)?,
            },
        ),
        Action::GroupSend {
            via,
            vendor,
            target,
            message,
        } => (
            via,
            vendor,
            AppOp::GroupSend {
                target: render_target(ctx, target)?,
                message: json(ctx, "message", message)?,
            },
        ),
        Action::Notify {
            via,
            vendor,
            users,
            departments,
            message,
        } => {
            let departments = departments
                .iter()
                .enumerate()
                .map(|(i, t)| text(ctx, &format!("departments[{i}]"), t))
                .collect::<Result<_, _>>()?;
            (
                via,
                vendor,
                AppOp::Notify {
                    users: people(ctx, "users", users)?,
                    departments: addresses(departments),
                    message: json(ctx, "message", message)?,
                },
            )
        }
        _ => return Err(RenderError::NotThisKind("vendor-app")),
    };
    Ok(app(via, *vendor, op))
}

/// A bot reply: to the push's `req_id`, as a welcome, a card update or an answer.
fn aibot_reply(
    message: &JsonTemplate,
    ctx: &Value,
    ev: &EventView<'_>,
) -> Result<Rendered, RenderError> {
    let Some(req_id) = ev.fields.get("req_id").and_then(|r| r.as_str()) else {
        return Err(RenderError::NoReqId(ev.receiver.to_owned()));
    };
    Ok(Rendered::AibotReply(RenderedAibotReply {
        receiver: ev.receiver.to_owned(),
        cmd: match ev.kind {
            "enter_chat" => "aibot_respond_welcome_msg",
            "template_card_event" => "aibot_respond_update_msg",
            _ => "aibot_respond_msg",
        },
        req_id: req_id.to_owned(),
        body: json(ctx, "message", message)?,
    }))
}

fn app(via: &str, vendor: AppVendor, op: AppOp) -> Rendered {
    Rendered::App(RenderedApp {
        via: via.to_owned(),
        vendor,
        op,
    })
}

fn nonempty(name: &str, value: String) -> Result<String, RenderError> {
    if value.trim().is_empty() {
        Err(RenderError::Empty(name.to_owned()))
    } else {
        Ok(value)
    }
}

fn render_target(ctx: &Value, target: &GroupTarget) -> Result<Target, RenderError> {
    Ok(match target {
        GroupTarget::Key(t) => Target::Key(nonempty("key", text(ctx, "key", t)?)?),
        GroupTarget::ChatId(t) => Target::ChatId(nonempty("chat_id", text(ctx, "chat_id", t)?)?),
    })
}

/// Members as rendered: a user template may yield several ids (comma or space separated).
fn people(ctx: &Value, name: &str, members: &[Member]) -> Result<Vec<People>, RenderError> {
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

/// The event as the `http` action posts it by default.
pub fn event_json(ev: &EventView<'_>) -> String {
    serde_json::json!({
        "id": ev.id,
        "receiver": ev.receiver,
        "vendor": ev.vendor,
        "kind": ev.kind,
        "dedupe_key": ev.dedupe_key,
        "received_at_ms": ev.received_at_ms,
        "fields": ev.fields,
    })
    .to_string()
}
