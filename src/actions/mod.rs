//! Actions: what a rule does. Each kind lives in one folder with the same two files:
//! `mod.rs` (its keys, its validated `Spec` with every template compiled, its templates by
//! field for the fingerprint, `render` to its `Rendered`) and `send.rs` (how `explain` shows
//! it, and sending it, with the runtime). This file holds the one dispatch per phase; the
//! runtime that sends (`run.rs`, the app API clients, the directory, the bot connections)
//! comes with the `server` feature.

pub mod aibot_reply;
pub mod api_call;
pub mod app;
pub mod cancel;
pub mod check;
pub mod connection;
pub mod email;
pub mod group_create;
pub mod group_send;
pub mod group_update;
pub mod http;
pub mod log;
pub mod notify;
pub mod outbound;
pub mod people;
pub mod render;
pub mod robot;
pub mod sql;

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
mod databases;
#[cfg(feature = "server")]
mod directory;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
mod group;
#[cfg(feature = "server")]
pub mod replies;
#[cfg(feature = "server")]
mod run;

#[cfg(feature = "server")]
pub use directory::Person;
#[cfg(feature = "server")]
pub use error::{ActionError, Disposition};
#[cfg(feature = "server")]
pub use group::wecom_chat_id;
#[cfg(feature = "server")]
pub use robot::webhook_key;
#[cfg(feature = "server")]
pub use run::{Actions, Attempt, BuildError};

pub use render::RenderError;

use minijinja::Value;
use toml::Spanned;

use crate::template::EventView;
use check::{Check, RawAction};

/// An action as validated; every string in it is a compiled template.
#[derive(Debug, Clone)]
pub enum Action {
    Log(log::Spec),
    Http(http::Spec),
    Email(email::Spec),
    Robot(robot::Spec),
    GroupCreate(group_create::Spec),
    GroupUpdate(group_update::Spec),
    GroupSend(group_send::Spec),
    Notify(notify::Spec),
    Cancel(cancel::Spec),
    AibotReply(aibot_reply::Spec),
    Sql(sql::Spec),
    Api(api_call::Spec),
}

/// Where an action sends (see [`Action::destination`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// It runs here (`log`, `cancel`): nothing to spare.
    Local,
    /// A host, a connection or a vendor API, shared by every action that names it.
    Named(String),
    /// The host comes out of a template: the action is a destination of its own.
    ThisAction,
}

/// An action with its templates rendered for one event: what the delivery worker sends.
#[derive(Debug, Clone)]
pub enum Rendered {
    Log(log::Rendered),
    Http(http::Rendered),
    Email(email::Rendered),
    Robot(robot::Rendered),
    GroupCreate(group_create::Rendered),
    GroupUpdate(group_update::Rendered),
    GroupSend(group_send::Rendered),
    Notify(notify::Rendered),
    /// Not sent: what a `cancel` calls off (shown by `explain`).
    Cancel(cancel::Rendered),
    AibotReply(aibot_reply::Rendered),
    Sql(sql::Rendered),
    Api(api_call::Rendered),
}

/// The kinds and the keys each takes besides `kind` (and `after`, `at`, `key`, which any
/// action takes).
const KINDS: &[(&str, &[&str])] = &[
    ("log", log::KEYS),
    ("http", http::KEYS),
    ("email", email::KEYS),
    ("dingtalk_robot", robot::KEYS),
    ("wecom_robot", robot::KEYS),
    ("feishu_robot", robot::KEYS),
    ("group_create", group_create::KEYS),
    ("group_update", group_update::KEYS),
    ("group_send", group_send::KEYS),
    ("notify", notify::KEYS),
    ("wecom_aibot_reply", aibot_reply::KEYS),
    ("cancel", cancel::KEYS),
    ("sql", sql::KEYS),
    ("api", api_call::KEYS),
];

impl Action {
    /// One `[[rules.actions]]` entry: its kind, the keys that kind takes, then the kind's own
    /// checks. `None` when anything was reported (`hookgate check` names rule, field, line).
    pub fn validate(c: &mut dyn Check, prefix: &str, spanned: &Spanned<RawAction>) -> Option<Self> {
        let table = spanned.span();
        let a = spanned.get_ref();
        let Some(kind) = c.string(&a.kind, &format!("{prefix}.kind")) else {
            if a.kind.is_none() {
                c.err(Some(table), format!("{prefix}.kind"), "missing");
            }
            return None;
        };
        let Some((_, allowed)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            let kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            let s = a.kind.as_ref().map(Spanned::span);
            c.err(
                s,
                format!("{prefix}.kind"),
                format!("{kind:?} is not one of {}", kinds.join(", ")),
            );
            return None;
        };
        for (key, span) in a.keys() {
            if !allowed.contains(&key) {
                c.err(
                    Some(span),
                    format!("{prefix}.{key}"),
                    format!("does not apply to kind {kind}"),
                );
            }
        }
        let before = c.errors_len();
        let t = &table;
        let action = match kind.as_str() {
            "log" => Self::Log(log::Spec::validate(c, prefix, a, t)?),
            "http" => Self::Http(http::Spec::validate(c, prefix, a, t)?),
            "email" => Self::Email(email::Spec::validate(c, prefix, a, t)?),
            "dingtalk_robot" => Self::Robot(robot::Spec::validate(
                c,
                prefix,
                a,
                t,
                robot::RobotVendor::DingTalk,
            )?),
            "wecom_robot" => Self::Robot(robot::Spec::validate(
                c,
                prefix,
                a,
                t,
                robot::RobotVendor::WeCom,
            )?),
            "feishu_robot" => Self::Robot(robot::Spec::validate(
                c,
                prefix,
                a,
                t,
                robot::RobotVendor::Feishu,
            )?),
            "group_create" => Self::GroupCreate(group_create::Spec::validate(c, prefix, a, t)?),
            "group_update" => Self::GroupUpdate(group_update::Spec::validate(c, prefix, a, t)?),
            "group_send" => Self::GroupSend(group_send::Spec::validate(c, prefix, a, t)?),
            "notify" => Self::Notify(notify::Spec::validate(c, prefix, a, t)?),
            "wecom_aibot_reply" => Self::AibotReply(aibot_reply::Spec::validate(c, prefix, a, t)?),
            "cancel" => Self::Cancel(cancel::Spec::validate(c, prefix, a, t)?),
            "sql" => Self::Sql(sql::Spec::validate(c, prefix, a, t)?),
            "api" => Self::Api(api_call::Spec::validate(c, prefix, a, t)?),
            _ => return None,
        };
        (c.errors_len() == before).then_some(action)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Log(_) => "log",
            Self::Http(_) => "http",
            Self::Email(_) => "email",
            Self::Robot(r) => r.vendor.kind(),
            Self::GroupCreate(_) => "group_create",
            Self::GroupUpdate(_) => "group_update",
            Self::GroupSend(_) => "group_send",
            Self::Notify(_) => "notify",
            Self::Cancel(_) => "cancel",
            Self::AibotReply(_) => "wecom_aibot_reply",
            Self::Sql(_) => "sql",
            Self::Api(_) => "api",
        }
    }

    /// The connection an action goes through, if it names one.
    pub fn via(&self) -> Option<&str> {
        match self {
            Self::Email(s) => Some(&s.via),
            Self::GroupCreate(s) => Some(&s.via),
            Self::GroupUpdate(s) => Some(&s.via),
            Self::GroupSend(s) => Some(&s.via),
            Self::Notify(s) => Some(&s.via),
            Self::Sql(s) => Some(&s.via),
            Self::Api(s) => Some(&s.via),
            _ => None,
        }
    }

    /// Where the action sends, as far as the config tells before an event renders it:
    /// what `[delivery] per_destination` counts running deliveries by.
    pub fn destination(&self) -> Destination {
        match self {
            Self::Log(_) | Self::Cancel(_) => Destination::Local,
            Self::Http(s) => match outbound::url_target(s.url.source()) {
                Ok(outbound::UrlTarget::Literal { scheme, host, port }) => {
                    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
                    Destination::Named(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
                }
                _ => Destination::ThisAction,
            },
            // Every webhook of a vendor goes to its one robot API.
            Self::Robot(r) => Destination::Named(r.vendor.kind().to_owned()),
            Self::AibotReply(_) => Destination::Named("wecom_aibot_reply".to_owned()),
            _ => match self.via() {
                Some(via) => Destination::Named(format!("connection {via}")),
                None => Destination::ThisAction,
            },
        }
    }

    /// Every template the action holds, by field name (list items as `to[0]`).
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        match self {
            Self::Log(s) => s.templates(&mut out),
            Self::Http(s) => s.templates(&mut out),
            Self::Email(s) => s.templates(&mut out),
            Self::Robot(s) => s.templates(&mut out),
            Self::GroupCreate(s) => s.templates(&mut out),
            Self::GroupUpdate(s) => s.templates(&mut out),
            Self::GroupSend(s) => s.templates(&mut out),
            Self::Notify(s) => s.templates(&mut out),
            Self::Cancel(s) => s.templates(&mut out),
            Self::AibotReply(s) => s.templates(&mut out),
            Self::Sql(s) => s.templates(&mut out),
            Self::Api(s) => s.templates(&mut out),
        }
        out
    }

    /// What the action does, as a short hash: its kind, its connection and every template
    /// (not timeouts, budgets or secrets). A delivery keeps the fingerprint of the action it
    /// was made for, so a reload cannot make it run a different one.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.kind());
        h.update([0]);
        h.update(self.via().unwrap_or_default());
        for (field, src) in self.templates() {
            h.update([0]);
            h.update(field);
            h.update([0]);
            h.update(src);
        }
        h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Renders every template for the event (`ctx` is its template context).
    pub fn render(&self, ctx: &Value, ev: &EventView<'_>) -> Result<Rendered, RenderError> {
        Ok(match self {
            Self::Log(s) => Rendered::Log(s.render(ctx)?),
            Self::Http(s) => Rendered::Http(s.render(ctx, ev)?),
            Self::Email(s) => Rendered::Email(s.render(ctx)?),
            Self::Robot(s) => Rendered::Robot(s.render(ctx)?),
            Self::GroupCreate(s) => Rendered::GroupCreate(s.render(ctx)?),
            Self::GroupUpdate(s) => Rendered::GroupUpdate(s.render(ctx)?),
            Self::GroupSend(s) => Rendered::GroupSend(s.render(ctx)?),
            Self::Notify(s) => Rendered::Notify(s.render(ctx)?),
            Self::Cancel(s) => Rendered::Cancel(s.render(ctx)?),
            Self::AibotReply(s) => Rendered::AibotReply(s.render(ctx, ev)?),
            Self::Sql(s) => Rendered::Sql(s.render(ctx)?),
            Self::Api(s) => Rendered::Api(s.render(ctx)?),
        })
    }
}

#[cfg(test)]
mod tests {
    /// A delivery keeps the fingerprint of the action it was made for: the same action must
    /// hash the same across versions, or an upgrade would refuse every pending delivery as
    /// "the rule changed". Every action of the example configs (every kind but the WeCom and
    /// Feishu robots, which share the DingTalk one's code), hashed together.
    #[test]
    fn fingerprints_of_the_example_actions_do_not_change() {
        use sha2::Digest;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let env =
            crate::config::parse_env_file(&std::fs::read_to_string(root.join("demo.env")).unwrap())
                .unwrap();
        // The examples' own variables: fixed stand-ins of the right shape.
        let lookup = |name: &str| {
            let found = env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            found.or_else(|| {
                // Those with a default in the file keep it.
                if name.ends_with("LISTEN")
                    || name.contains("BASE")
                    || name.ends_with("_DB")
                    || name.ends_with("_AFTER")
                    || name.ends_with("WS_URL")
                    || name.ends_with("_FROM")
                {
                    return None;
                }
                Some(match name {
                    n if n.contains("AES_KEY") => {
                        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".to_owned()
                    }
                    "SMTP_URL" => "smtp://127.0.0.1:2525".to_owned(),
                    n if n.contains("URL") => "https://example.com/hook".to_owned(),
                    n if n.ends_with("_ID") && n.contains("AGENT") => "1000002".to_owned(),
                    n => format!("{}-1", n.to_ascii_lowercase()),
                })
            })
        };
        // The examples that existed when the digest was taken (examples added later bring
        // new actions, not changed ones).
        let mut files: Vec<_> = [
            "dingtalk-approval-group.toml",
            "dingtalk-robot-group-messages.toml",
            "dingtalk-stream.toml",
            "e10-escalation.toml",
            "feishu-ws.toml",
            "wecom-aibot.toml",
            "wecom-contact-email-directory.toml",
            "wecom-contact-email.toml",
        ]
        .iter()
        .map(|f| root.join("examples").join(f))
        .collect();
        files.push(root.join("hookgate.example.toml"));
        files.sort();
        let mut all = String::new();
        for f in &files {
            let config = crate::config::parse(&std::fs::read_to_string(f).unwrap(), &lookup)
                .unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
            for r in &config.rules {
                for a in &r.actions {
                    let name = f.file_name().unwrap().to_string_lossy();
                    let (kind, print) = (a.action.kind(), a.action.fingerprint());
                    all.push_str(&format!("{name} {} {kind} {print}\n", r.name));
                }
            }
        }
        let digest: String = sha2::Sha256::digest(all.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, "3de45895bce12412", "{all}");
    }
}
