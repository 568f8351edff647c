//! Sending: the clients actions use (built once per config), one rendered action run within
//! a deadline, dispatched to its kind's `send`, and how `explain` shows each kind.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value as Json;

use super::Rendered;
use super::api::Apis;
use super::app::App;
use super::connection::Connection;
use super::databases::Databases;
use super::directory::Directory;
use super::email::Mailer;
use super::error::ActionError;
use super::outbound::{Outbound, OutboundConfig};
use super::replies::Replies;

/// Why the clients for a config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("connections.{name}: {reason}")]
    Connection { name: String, reason: String },
}

/// What one run knows about the delivery: its id is the idempotency key sinks get.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub delivery_id: i64,
    pub rule: &'a str,
    pub receiver: &'a str,
}

/// The clients actions use, built once from the config.
pub struct Actions {
    http: reqwest::Client,
    /// `[outbound]`: confines robot webhooks, event-chosen hosts and local files.
    outbound: Outbound,
    mailers: HashMap<String, Mailer>,
    apis: Apis,
    store: crate::store::Store,
    directory: Directory,
    replies: std::sync::Arc<Replies>,
    databases: Databases,
}

impl Actions {
    pub fn new(
        connections: &BTreeMap<String, Connection>,
        outbound: &OutboundConfig,
        store: &crate::store::Store,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        replies: std::sync::Arc<Replies>,
    ) -> Result<Self, BuildError> {
        let builder = || {
            crate::tls::http_builder()
                .connect_timeout(Duration::from_secs(10))
                // A redirect would re-send the body and custom headers to a host nobody chose.
                .redirect(reqwest::redirect::Policy::none())
        };
        let global = outbound.proxy.as_ref();
        let http = crate::actions::outbound::through(builder(), global)?.build()?;
        let outbound = Outbound::new(outbound, builder())?;
        // A vendor app with a proxy of its own (or none) gets a client of its own.
        let mut own = HashMap::new();
        for (name, c) in connections {
            let choice = match c {
                Connection::WeCom(w) => &w.proxy,
                Connection::DingTalk(d) => &d.proxy,
                Connection::Smtp(_) | Connection::Sql(_) => continue,
            };
            if !matches!(choice, crate::actions::outbound::ProxyChoice::Global) {
                let b = crate::actions::outbound::through_choice(builder(), global, choice)?;
                own.insert(name.clone(), b.build()?);
            }
        }
        let mut mailers = HashMap::new();
        for (name, c) in connections {
            match c {
                Connection::Smtp(smtp) => {
                    let mailer = Mailer::new(smtp).map_err(|reason| BuildError::Connection {
                        name: name.clone(),
                        reason,
                    })?;
                    mailers.insert(name.clone(), mailer);
                }
                Connection::WeCom(_) | Connection::DingTalk(_) | Connection::Sql(_) => {}
            }
        }
        Ok(Self {
            apis: Apis::new(connections, &http, &own, store, &metrics),
            http,
            outbound,
            mailers,
            store: store.clone(),
            directory: Directory::default(),
            replies,
            databases: Databases::new(connections).map_err(|reason| BuildError::Connection {
                name: "database".into(),
                reason,
            })?,
        })
    }

    /// Runs one rendered action, within a deadline: a sink that stops answering must not hold
    /// a worker slot forever (timed out is retryable). Its result is what a later action of
    /// the rule may read as `steps.<name>` (`null` for kinds that return nothing).
    pub async fn run(&self, action: &Rendered, attempt: Attempt<'_>) -> Result<Json, ActionError> {
        let deadline = self.deadline(action);
        match tokio::time::timeout(deadline, self.run_unbounded(action, attempt)).await {
            Ok(result) => result,
            Err(_) => Err(ActionError::retryable(format!(
                "no answer within {} s",
                deadline.as_secs()
            ))),
        }
    }

    /// The whole attempt's time limit: the sink's own timeout per message, plus slack.
    fn deadline(&self, action: &Rendered) -> Duration {
        let slack = Duration::from_secs(5);
        match action {
            Rendered::Log(_) | Rendered::Cancel(_) => slack,
            // The pool's own timeout bounds it; this is the backstop.
            Rendered::Sql(_) => Duration::from_secs(120),
            Rendered::Http(h) => h.timeout + slack,
            // An upload (60 s) and a send (15 s).
            Rendered::Robot(_) => Duration::from_secs(75) + slack,
            // A token, directory pages, several calls.
            Rendered::Api(_)
            | Rendered::GroupCreate(_)
            | Rendered::GroupUpdate(_)
            | Rendered::GroupSend(_)
            | Rendered::Notify(_) => Duration::from_secs(180),
            // Queued behind other replies to the same push, then WeCom's receipt.
            Rendered::AibotReply(_) => Duration::from_secs(20) + slack,
            Rendered::Email(m) => {
                let per_message = self
                    .mailers
                    .get(&m.via)
                    .map_or(Duration::from_secs(30), Mailer::timeout);
                // Connect, TLS, AUTH and each message may each take one timeout.
                let calls = u32::try_from(m.messages() + 3).unwrap_or(u32::MAX);
                per_message.saturating_mul(calls) + slack
            }
        }
    }

    async fn run_unbounded(
        &self,
        action: &Rendered,
        attempt: Attempt<'_>,
    ) -> Result<Json, ActionError> {
        let app = || App {
            apis: &self.apis,
            store: &self.store,
            directory: &self.directory,
            media: &self.outbound,
        };
        let nothing = |r: Result<(), ActionError>| r.map(|()| Json::Null);
        match action {
            Rendered::Log(l) => {
                l.send(attempt);
                Ok(Json::Null)
            }
            // Done when its event was stored; never a delivery.
            Rendered::Cancel(_) => Ok(Json::Null),
            Rendered::Http(h) => h.send(&self.outbound, &self.http, attempt).await,
            Rendered::Email(m) => {
                let mailer = self.mailers.get(&m.via).ok_or_else(|| {
                    ActionError::permanent(format!("no smtp connection named {:?}", m.via))
                })?;
                nothing(m.send(mailer, &self.directory, &self.apis, attempt).await)
            }
            Rendered::Robot(r) => nothing(r.send(&self.outbound, &self.store, attempt).await),
            Rendered::AibotReply(r) => nothing(r.send(&self.replies, attempt).await),
            Rendered::GroupCreate(g) => {
                g.send(&app(), attempt).await?;
                // The group as the registry has it: a write-back needs its chat id.
                let row = super::group::registered(&self.store, &g.via, &g.key).await?;
                Ok(serde_json::json!({
                    "key": row.key,
                    "chat_id": row.chat_id,
                    "open_conversation_id": row.open_conversation_id,
                    "name": row.name,
                }))
            }
            Rendered::GroupUpdate(g) => nothing(g.send(&app(), attempt).await),
            Rendered::GroupSend(g) => nothing(g.send(&app(), attempt).await),
            Rendered::Notify(n) => nothing(n.send(&app(), attempt).await),
            Rendered::Sql(q) => q.send(&self.databases).await,
            Rendered::Api(a) => a.send(&app()).await,
        }
    }
}

impl Rendered {
    /// Whom nobody would get it: the recipients all rendered empty (a misspelled field or
    /// table), which a send refuses. For `check --events` and `explain`.
    pub fn nobody(&self) -> Option<&'static str> {
        match self {
            Self::Email(r) if r.to.is_empty() && r.cc.is_empty() && r.bcc.is_empty() => {
                Some("to, cc and bcc all rendered empty: the mail would have no recipients")
            }
            Self::Notify(r) if r.users.is_empty() && r.departments.is_empty() => {
                Some("users and departments rendered empty: the notification would reach nobody")
            }
            _ => None,
        }
    }

    /// The action as `explain` shows it; secrets are not shown.
    pub fn describe(&self) -> String {
        match self {
            Self::Log(r) => r.describe(),
            Self::Http(r) => r.describe(),
            Self::Email(r) => r.describe(),
            Self::Robot(r) => r.describe(),
            Self::GroupCreate(r) => r.describe(),
            Self::GroupUpdate(r) => r.describe(),
            Self::GroupSend(r) => r.describe(),
            Self::Notify(r) => r.describe(),
            Self::Cancel(r) => r.describe(),
            Self::AibotReply(r) => r.describe(),
            Self::Sql(r) => r.describe(),
            Self::Api(r) => r.describe(),
        }
    }
}
