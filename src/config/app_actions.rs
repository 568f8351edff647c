//! Validation of the vendor-app actions: `group_create`, `group_update`, `group_send` and
//! `notify`, which act through a `[connections.*]` of kind wecom or dingtalk (`via`).
//! Message bodies are checked against the documented shapes of that vendor's API.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::actions::message_shape;
use super::raw::{RawAction, S};
use super::validate::Ctx;
use super::{Action, AppVendor, Connection, GroupTarget, Member};
use crate::template::JsonTemplate;

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
    ("sampleImageMsg", &["photoURL"]),
    ("sampleFile", &["mediaId", "fileName", "fileType"]),
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

impl Ctx<'_> {
    pub(super) fn app_action(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        kind: &str,
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Action> {
        let app = self.app_via(prefix, a, table, connections);
        match kind {
            "group_create" => self.group_create(prefix, a, table, app, connections),
            "group_update" => self.group_update(prefix, a, table, app, connections),
            "group_send" => self.group_send(prefix, a, table, app),
            _ => self.notify(prefix, a, table, app, connections),
        }
    }

    /// `via`: the name of a wecom or dingtalk connection, and which vendor it is.
    fn app_via(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        connections: &BTreeMap<String, Connection>,
    ) -> (Option<String>, Option<AppVendor>) {
        let via = self.string(&a.via, &format!("{prefix}.via"));
        let vendor = match (&via, via.as_deref().and_then(|v| connections.get(v))) {
            (None, _) => {
                if a.via.is_none() {
                    self.err(
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
            (Some(v), None) if self.declared_connections.contains(v) => None,
            (Some(v), _) => {
                let s = a.via.as_ref().map(Spanned::span);
                self.err(
                    s,
                    format!("{prefix}.via"),
                    format!("no wecom or dingtalk connection named {v:?}"),
                );
                None
            }
        };
        (via, vendor)
    }

    fn group_create(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        app: (Option<String>, Option<AppVendor>),
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Action> {
        let (via, vendor) = app;
        let kind = "group_create";
        let t = |ctx: &mut Self, key: &str, v: &S<String>| {
            ctx.template_at(&format!("{prefix}.{key}"), v)
        };
        let key = self.required_template(prefix, "key", &a.key, table, kind);
        let name = self.required_template(prefix, "name", &a.name, table, kind);
        let owner = self.required_template(prefix, "owner", &a.owner, table, kind);
        if a.members.is_none() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.members"),
                "missing (required for kind group_create)",
            );
        }
        let members = self.members(&format!("{prefix}.members"), &a.members, connections);
        let first_message = t(self, "first_message", &a.first_message);
        Some(Action::GroupCreate {
            via: via?,
            vendor: vendor?,
            key: key?,
            name: name?,
            owner: owner?,
            members,
            first_message,
        })
    }

    fn group_update(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        app: (Option<String>, Option<AppVendor>),
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Action> {
        let (via, vendor) = app;
        let t = |ctx: &mut Self, key: &str, v: &S<String>| {
            ctx.template_at(&format!("{prefix}.{key}"), v)
        };
        let target = self.target(prefix, a, table);
        let name = t(self, "name", &a.name);
        let owner = t(self, "owner", &a.owner);
        let add_members = self.members(
            &format!("{prefix}.add_members"),
            &a.add_members,
            connections,
        );
        let remove_members = self.members(
            &format!("{prefix}.remove_members"),
            &a.remove_members,
            connections,
        );
        if name.is_none() && owner.is_none() && add_members.is_empty() && remove_members.is_empty()
        {
            self.err(
                Some(table.clone()),
                prefix,
                "group_update needs name, owner, add_members or remove_members",
            );
        }
        Some(Action::GroupUpdate {
            via: via?,
            vendor: vendor?,
            target: target?,
            name,
            owner,
            add_members,
            remove_members,
        })
    }

    fn group_send(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        app: (Option<String>, Option<AppVendor>),
    ) -> Option<Action> {
        let (via, vendor) = app;
        let target = self.target(prefix, a, table);
        let message = self.app_message(prefix, a, table, vendor, true)?;
        Some(Action::GroupSend {
            via: via?,
            vendor: vendor?,
            target: target?,
            message,
        })
    }

    fn notify(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        app: (Option<String>, Option<AppVendor>),
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Action> {
        let (via, vendor) = app;
        let users = self.members(&format!("{prefix}.users"), &a.users, connections);
        let departments = self.template_list(&format!("{prefix}.departments"), &a.departments);
        if users.is_empty() && departments.is_empty() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.users"),
                "notify needs users or departments",
            );
        }
        let message = self.app_message(prefix, a, table, vendor, false)?;
        Some(Action::Notify {
            via: via?,
            vendor: vendor?,
            users,
            departments,
            message,
        })
    }

    /// `key` or `chat_id`, exactly one.
    fn target(&mut self, prefix: &str, a: &RawAction, table: &Range<usize>) -> Option<GroupTarget> {
        match (&a.key, &a.chat_id) {
            (Some(_), None) => self
                .template_at(&format!("{prefix}.key"), &a.key)
                .map(GroupTarget::Key),
            (None, Some(_)) => self
                .template_at(&format!("{prefix}.chat_id"), &a.chat_id)
                .map(GroupTarget::ChatId),
            (Some(_), Some(c)) => {
                self.err(
                    Some(c.span()),
                    format!("{prefix}.chat_id"),
                    "give key or chat_id, not both",
                );
                None
            }
            (None, None) => {
                self.err(
                    Some(table.clone()),
                    format!("{prefix}.key"),
                    "missing (the group_create key, or chat_id)",
                );
                None
            }
        }
    }

    /// Email recipients: addresses, or departments whose members' addresses come from the
    /// directory of the `via` connection (required there: the action's own `via` is SMTP).
    pub(super) fn recipients(
        &mut self,
        key: &str,
        value: &S<toml::Value>,
        connections: &BTreeMap<String, Connection>,
    ) -> Vec<Member> {
        let members = self.members(key, value, connections);
        if members
            .iter()
            .any(|m| matches!(m, Member::Department { via: None, .. }))
        {
            let s = value.as_ref().map(Spanned::span);
            self.err(
                s,
                key,
                "a department needs via = \"<wecom or dingtalk connection>\" here",
            );
        }
        members
    }

    /// People: a string, or a list of strings and `{ department = ID, via = "…", recursive = false }`.
    pub(super) fn members(
        &mut self,
        key: &str,
        value: &S<toml::Value>,
        connections: &BTreeMap<String, Connection>,
    ) -> Vec<Member> {
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
                    if let Some(t) =
                        self.template_at(&item_key, &Some(Spanned::new(v.span(), s.clone())))
                    {
                        out.push(Member::User(t));
                    }
                }
                toml::Value::Table(t) => {
                    if let Some(m) = self.department(&item_key, v.span(), t, connections) {
                        out.push(m);
                    }
                }
                _ => self.err(
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
        &mut self,
        item_key: &str,
        span: Range<usize>,
        t: &toml::Table,
        connections: &BTreeMap<String, Connection>,
    ) -> Option<Member> {
        let unknown: Vec<&String> = t
            .keys()
            .filter(|k| !["department", "via", "recursive"].contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            self.err(
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
                self.err(
                    Some(span.clone()),
                    format!("{item_key}.department"),
                    "missing (a department id)",
                );
                return None;
            }
        };
        let id = self.template_at(
            &format!("{item_key}.department"),
            &Some(Spanned::new(span.clone(), id)),
        )?;
        let via = t.get("via").and_then(|x| x.as_str()).map(str::to_owned);
        if let Some(name) = &via
            && !matches!(
                connections.get(name),
                Some(Connection::WeCom(_) | Connection::DingTalk(_))
            )
        {
            self.err(
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

    fn app_message(
        &mut self,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
        vendor: Option<AppVendor>,
        group: bool,
    ) -> Option<JsonTemplate> {
        let key = format!("{prefix}.message");
        let Some(raw) = &a.message else {
            self.err(Some(table.clone()), key, "missing");
            return None;
        };
        let message = self.json_template(&key, raw.span(), raw.get_ref())?;
        let shape = message.source();
        let problem = match (vendor?, group) {
            // { msgKey = "sampleMarkdown", msgParam = { title, text } }
            (AppVendor::DingTalk, true) => {
                message_shape(&shape, "msgKey", DINGTALK_GROUP, &|_| "msgParam")
            }
            // { msgtype = "text", text = { content } }
            (AppVendor::WeCom, true) => message_shape(&shape, "msgtype", WECOM_GROUP, &|t| t),
            (AppVendor::WeCom, false) => message_shape(&shape, "msgtype", WECOM_NOTIFY, &|t| t),
            (AppVendor::DingTalk, false) => {
                message_shape(&shape, "msgtype", DINGTALK_NOTIFY, &|t| t)
            }
        };
        if let Some(p) = problem {
            self.err(Some(raw.span()), key, p);
        }
        Some(message)
    }
}
