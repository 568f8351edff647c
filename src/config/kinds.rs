//! The action kinds as validated: [`Action`] and the types its variants hold, each kind's
//! name, the connection it goes through, and its fingerprint over every template it holds.

use std::time::Duration;

use crate::secret::Secret;
use crate::template::{JsonTemplate, Template};

/// An action; every string in it is a template.
#[derive(Debug, Clone)]
pub enum Action {
    Log {
        level: tracing::Level,
        message: Template,
    },
    Http {
        url: Template,
        method: String,
        headers: Vec<(String, Template)>,
        /// `None`: the event as JSON.
        body: Option<Template>,
        /// Signs the body: `X-Hookgate-Signature: sha256=<hex hmac>`.
        secret: Option<Secret<String>>,
        timeout: Duration,
    },
    Email {
        via: String,
        /// Addresses (templates), or `{ department = ID, via = "CONNECTION" }`: the members'
        /// addresses from the WeCom or DingTalk directory.
        to: Vec<Member>,
        cc: Vec<Member>,
        bcc: Vec<Member>,
        subject: Template,
        body: Template,
        html: Option<Template>,
        /// One message per address in `to` (cc and bcc go with each) instead of one to all.
        one_per_recipient: bool,
    },
    /// A group robot message: `message` is the vendor's JSON body, every string in it a
    /// template (WeCom `image`/`file` take a `path` the gateway uploads).
    Robot {
        vendor: RobotVendor,
        webhook: Template,
        secret: Option<Secret<String>>,
        message: JsonTemplate,
        /// Messages a minute this webhook accepts (the vendors allow 20; Feishu 100).
        per_minute: u32,
    },
    /// A group chat for `key`, created once: a key that exists is a success doing nothing.
    GroupCreate {
        via: String,
        vendor: AppVendor,
        key: Template,
        name: Template,
        owner: Template,
        members: Vec<Member>,
        /// Sent as text right after creation (a new WeCom group shows in clients only then).
        first_message: Option<Template>,
    },
    GroupUpdate {
        via: String,
        vendor: AppVendor,
        target: GroupTarget,
        name: Option<Template>,
        owner: Option<Template>,
        add_members: Vec<Member>,
        remove_members: Vec<Member>,
    },
    /// `message`: WeCom `appchat/send` body (msgtype + its object) or DingTalk
    /// `{ msgKey, msgParam }` for `robot/groupMessages/send`; strings are templates.
    GroupSend {
        via: String,
        vendor: AppVendor,
        target: GroupTarget,
        message: JsonTemplate,
    },
    /// Calls off the pending (delayed) deliveries whose `key` renders the same, when the event
    /// is stored; of the named rules only, if any. Not a delivery itself.
    Cancel { key: Template, rules: Vec<String> },
    /// An answer over the WeCom AI bot connection the event came in on, to the push's `req_id`
    /// (`aibot_respond_msg`; to `enter_chat` a welcome, to `template_card_event` a card
    /// update). `message`: `{ msgtype, <msgtype> = {…} }`, strings are templates.
    AibotReply { message: JsonTemplate },
    /// A work notification to people (WeCom `message/send`, DingTalk `asyncsend_v2`).
    Notify {
        via: String,
        vendor: AppVendor,
        users: Vec<Member>,
        /// Department ids (templates) the vendor fans out itself.
        departments: Vec<Template>,
        message: JsonTemplate,
    },
}

/// Group robots reached through a webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotVendor {
    /// DingTalk custom robot: `robot/send?access_token=`, optional 加签 secret.
    DingTalk,
    /// WeCom group robot: `webhook/send?key=`.
    WeCom,
    /// Feishu/Lark custom bot: `bot/v2/hook/…`, optional signature secret.
    Feishu,
}

impl RobotVendor {
    pub fn kind(self) -> &'static str {
        match self {
            Self::DingTalk => "dingtalk_robot",
            Self::WeCom => "wecom_robot",
            Self::Feishu => "feishu_robot",
        }
    }
}

/// Which vendor app a `via` connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppVendor {
    WeCom,
    DingTalk,
}

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

/// Which group an update or a message goes to.
#[derive(Debug, Clone)]
pub enum GroupTarget {
    /// The `key` of a `group_create` (a template), looked up in the group registry.
    Key(Template),
    /// A vendor chat id (a template): WeCom chatid, DingTalk openConversationId (`cid…`).
    ChatId(Template),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Log { .. } => "log",
            Action::Http { .. } => "http",
            Action::Email { .. } => "email",
            Action::Robot { vendor, .. } => vendor.kind(),
            Action::GroupCreate { .. } => "group_create",
            Action::GroupUpdate { .. } => "group_update",
            Action::GroupSend { .. } => "group_send",
            Action::Notify { .. } => "notify",
            Action::Cancel { .. } => "cancel",
            Action::AibotReply { .. } => "wecom_aibot_reply",
        }
    }

    /// The connection an action goes through, if it names one.
    pub fn via(&self) -> Option<&str> {
        match self {
            Action::Email { via, .. }
            | Action::GroupCreate { via, .. }
            | Action::GroupUpdate { via, .. }
            | Action::GroupSend { via, .. }
            | Action::Notify { via, .. } => Some(via),
            _ => None,
        }
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

    /// Every template the action holds, by field name (list items as `to[0]`).
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = Vec::new();
        match self {
            Action::Log { message, .. } => out.push(("message".into(), message.source())),
            Action::Http {
                url, headers, body, ..
            } => {
                out.push(("url".into(), url.source()));
                for (k, v) in headers {
                    out.push((format!("headers.{k}"), v.source()));
                }
                if let Some(b) = body {
                    out.push(("body".into(), b.source()));
                }
            }
            Action::Email {
                to,
                cc,
                bcc,
                subject,
                body,
                html,
                ..
            } => {
                member_templates(&mut out, "to", to);
                member_templates(&mut out, "cc", cc);
                member_templates(&mut out, "bcc", bcc);
                out.push(("subject".into(), subject.source()));
                out.push(("body".into(), body.source()));
                if let Some(h) = html {
                    out.push(("html".into(), h.source()));
                }
            }
            Action::Robot {
                webhook, message, ..
            } => {
                out.push(("webhook".into(), webhook.source()));
                message.templates("message".into(), &mut out);
            }
            Action::Cancel { key, .. } => out.push(("key".into(), key.source())),
            Action::AibotReply { message } => message.templates("message".into(), &mut out),
            _ => self.app_templates(&mut out),
        }
        out
    }

    /// The templates of the vendor-app kinds (`group_*`, `notify`), as [`Action::templates`]
    /// names them.
    fn app_templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        match self {
            Action::GroupCreate {
                key,
                name,
                owner,
                members,
                first_message,
                ..
            } => {
                out.push(("key".into(), key.source()));
                out.push(("name".into(), name.source()));
                out.push(("owner".into(), owner.source()));
                member_templates(out, "members", members);
                if let Some(m) = first_message {
                    out.push(("first_message".into(), m.source()));
                }
            }
            Action::GroupUpdate {
                target,
                name,
                owner,
                add_members,
                remove_members,
                ..
            } => {
                target_template(out, target);
                if let Some(n) = name {
                    out.push(("name".into(), n.source()));
                }
                if let Some(o) = owner {
                    out.push(("owner".into(), o.source()));
                }
                member_templates(out, "add_members", add_members);
                member_templates(out, "remove_members", remove_members);
            }
            Action::GroupSend {
                target, message, ..
            } => {
                target_template(out, target);
                message.templates("message".into(), out);
            }
            Action::Notify {
                users,
                departments,
                message,
                ..
            } => {
                member_templates(out, "users", users);
                for (i, d) in departments.iter().enumerate() {
                    out.push((format!("departments[{i}]"), d.source()));
                }
                message.templates("message".into(), out);
            }
            _ => {}
        }
    }
}

fn target_template<'a>(out: &mut Vec<(String, &'a str)>, target: &'a GroupTarget) {
    match target {
        GroupTarget::Key(k) => out.push(("key".into(), k.source())),
        GroupTarget::ChatId(c) => out.push(("chat_id".into(), c.source())),
    }
}

fn member_templates<'a>(out: &mut Vec<(String, &'a str)>, name: &str, members: &'a [Member]) {
    for (i, m) in members.iter().enumerate() {
        match m {
            Member::User(u) => out.push((format!("{name}[{i}]"), u.source())),
            Member::Department { id, .. } => {
                out.push((format!("{name}[{i}].department"), id.source()))
            }
        }
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
            super::super::parse_env_file(&std::fs::read_to_string(root.join("demo.env")).unwrap())
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
        let mut files: Vec<_> = std::fs::read_dir(root.join("examples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.push(root.join("hookgate.example.toml"));
        files.sort();
        let mut all = String::new();
        for f in &files {
            let config = super::super::parse(&std::fs::read_to_string(f).unwrap(), &lookup)
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
