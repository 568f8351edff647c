//! Actions with every template rendered: what the delivery worker sends.

use std::time::Duration;

use minijinja::Value;

use super::{EventView, RenderError, RuleSet};
use crate::config::{Action, AppVendor, GroupTarget, Member, RobotVendor};
use crate::secret::Secret;

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

/// A template by its field name, rendered for the event (`to[0]`, `headers.X-Team`).
type Field<'a> = &'a dyn Fn(&str) -> Result<String, RenderError>;

pub(super) fn render(
    set: &RuleSet,
    rule: usize,
    action: usize,
    spec: &Action,
    ctx: &Value,
    ev: &EventView<'_>,
) -> Result<Rendered, RenderError> {
    let field = |name: &str| set.render_field(rule, action, name, ctx);
    match spec {
        Action::Log { level, .. } => Ok(Rendered::Log {
            level: *level,
            message: field("message")?,
        }),
        Action::Http { .. } => http(spec, &field, ev),
        Action::Email { .. } => email(spec, &field),
        Action::Robot {
            vendor,
            secret,
            message,
            per_minute,
            ..
        } => Ok(Rendered::Robot(RenderedRobot {
            vendor: *vendor,
            webhook: field("webhook")?,
            secret: secret.clone(),
            message: render_json(message, "message".into(), &field)?,
            per_minute: *per_minute,
        })),
        Action::GroupCreate { .. }
        | Action::GroupUpdate { .. }
        | Action::GroupSend { .. }
        | Action::Notify { .. } => app_action(spec, &field),
        Action::AibotReply { message } => aibot_reply(message, &field, ev),
        Action::Cancel { rules, .. } => Ok(Rendered::Cancel {
            key: nonempty("key", field("key")?)?,
            rules: rules.clone(),
        }),
    }
}

fn http(spec: &Action, field: Field<'_>, ev: &EventView<'_>) -> Result<Rendered, RenderError> {
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
    for (k, _) in headers {
        out_headers.push((k.clone(), field(&format!("headers.{k}"))?));
    }
    let (body, json) = match body {
        Some(_) => (field("body")?, false),
        None => (event_json(ev), true),
    };
    Ok(Rendered::Http(RenderedHttp {
        url: field("url")?,
        host_from_template: !matches!(
            crate::config::url_target(url),
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

fn email(spec: &Action, field: Field<'_>) -> Result<Rendered, RenderError> {
    let Action::Email {
        via,
        to,
        cc,
        bcc,
        html,
        one_per_recipient,
        ..
    } = spec
    else {
        return Err(RenderError::NotThisKind("email"));
    };
    Ok(Rendered::Email(RenderedEmail {
        via: via.clone(),
        to: people("to", to, field)?,
        cc: people("cc", cc, field)?,
        bcc: people("bcc", bcc, field)?,
        subject: field("subject")?,
        body: field("body")?,
        html: html.as_ref().map(|_| field("html")).transpose()?,
        one_per_recipient: *one_per_recipient,
    }))
}

/// The vendor-app kinds: `group_create`, `group_update`, `group_send`, `notify`.
fn app_action(spec: &Action, field: Field<'_>) -> Result<Rendered, RenderError> {
    let list = |name: &str, n: usize| -> Result<Vec<String>, RenderError> {
        (0..n).map(|i| field(&format!("{name}[{i}]"))).collect()
    };
    let (via, vendor, op) = match spec {
        Action::GroupCreate {
            via,
            vendor,
            members,
            first_message,
            ..
        } => (
            via,
            vendor,
            AppOp::GroupCreate {
                key: nonempty("key", field("key")?)?,
                name: field("name")?,
                owner: field("owner")?,
                members: people("members", members, field)?,
                first_message: first_message
                    .as_ref()
                    .map(|_| field("first_message"))
                    .transpose()?,
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
                target: render_target(target, field)?,
                name: name.as_ref().map(|_| field("name")).transpose()?,
                owner: owner.as_ref().map(|_| field("owner")).transpose()?,
                add_members: people("add_members", add_members, field)?,
                remove_members: people("remove_members", remove_members, field)?,
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
                target: render_target(target, field)?,
                message: render_json(message, "message".into(), field)?,
            },
        ),
        Action::Notify {
            via,
            vendor,
            users,
            departments,
            message,
        } => (
            via,
            vendor,
            AppOp::Notify {
                users: people("users", users, field)?,
                departments: addresses(list("departments", departments.len())?),
                message: render_json(message, "message".into(), field)?,
            },
        ),
        _ => return Err(RenderError::NotThisKind("vendor-app")),
    };
    Ok(app(via, *vendor, op))
}

/// A bot reply: to the push's `req_id`, as a welcome, a card update or an answer.
fn aibot_reply(
    message: &serde_json::Value,
    field: Field<'_>,
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
        body: render_json(message, "message".into(), field)?,
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

fn render_target(target: &GroupTarget, field: Field<'_>) -> Result<Target, RenderError> {
    Ok(match target {
        GroupTarget::Key(_) => Target::Key(nonempty("key", field("key")?)?),
        GroupTarget::ChatId(_) => Target::ChatId(nonempty("chat_id", field("chat_id")?)?),
    })
}

/// Members as rendered: a user template may yield several ids (comma or space separated).
fn people(name: &str, members: &[Member], field: Field<'_>) -> Result<Vec<People>, RenderError> {
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        match m {
            Member::User(_) => {
                out.extend(
                    addresses(vec![field(&format!("{name}[{i}]"))?])
                        .into_iter()
                        .map(People::User),
                );
            }
            Member::Department { via, recursive, .. } => {
                // "1,2" (WeCom's Department field) is two departments.
                let ids = field(&format!("{name}[{i}].department"))?;
                let ids = addresses(vec![ids]);
                if ids.is_empty() {
                    return Err(RenderError::Empty(format!("{name}[{i}].department")));
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

/// The JSON value with each string replaced by its rendered template (named by path, as
/// `Action::templates` names them).
fn render_json(
    value: &serde_json::Value,
    path: String,
    field: Field<'_>,
) -> Result<serde_json::Value, RenderError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(_) => J::String(field(&path)?),
        J::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_json(v, format!("{path}[{i}]"), field))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, format!("{path}.{k}"), field)?)))
                .collect::<Result<_, RenderError>>()?,
        ),
        other => other.clone(),
    })
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
