//! Actions: send a rendered action to its sink (SMTP, HTTP, the log) and classify how it
//! went. A failure is retryable (timeouts, connection errors, 5xx, 4xx SMTP replies, vendor
//! "busy") or permanent (other 4xx, 5xx SMTP replies, bad addresses); the delivery worker
//! decides what to do with that.

pub mod api;
mod directory;
mod email;
mod error;
mod group;
mod http;
mod notify;
mod outbound;
pub mod replies;
mod robot;

pub use directory::Person;
pub use error::{ActionError, Disposition};
pub use group::wecom_chat_id;

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, Connection};
use crate::rules::Rendered;

/// A one-file `multipart/form-data` body (WeCom media uploads): (content type, body).
pub(crate) fn multipart(field: &str, path: &std::path::Path, bytes: &[u8]) -> (String, Vec<u8>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\r', '\n'], "_"))
        .unwrap_or_else(|| "file".into());
    let boundary = format!("hookgate{:016x}", rand::random::<u64>());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"; \
         filelength={}\r\nContent-Type: application/octet-stream\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A robot webhook as logs and `explain` show it: no token.
pub fn webhook_key(url: &str) -> String {
    robot::webhook_key(url)
}

impl From<replies::ReplyError> for ActionError {
    fn from(e: replies::ReplyError) -> Self {
        match e {
            // Not this delivery's failure: it waits (no attempt spent) for a claim by the
            // replica that holds the connection.
            replies::ReplyError::Elsewhere(_) => {
                Self::throttled(e.to_string(), Duration::from_secs(1))
            }
            e if e.transient() => Self::retryable(e.to_string()),
            e => Self::permanent(e.to_string()),
        }
    }
}

/// What a vendor-app action (groups, notifications) runs with.
struct App<'a> {
    apis: &'a api::Apis,
    store: &'a crate::store::Store,
    directory: &'a directory::Directory,
    media: &'a outbound::Outbound,
}

impl App<'_> {
    fn wecom(&self, via: &str) -> Result<&api::wecom::WeCom, ActionError> {
        self.apis
            .wecom
            .get(via)
            .map(|w| &**w)
            .ok_or_else(|| ActionError::permanent(format!("no wecom connection named {via:?}")))
    }

    fn dingtalk(&self, via: &str) -> Result<&api::dingtalk::DingTalk, ActionError> {
        self.apis
            .dingtalk
            .get(via)
            .map(|d| &**d)
            .ok_or_else(|| ActionError::permanent(format!("no dingtalk connection named {via:?}")))
    }
}

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
    outbound: outbound::Outbound,
    mailers: HashMap<String, email::Mailer>,
    apis: crate::actions::api::Apis,
    store: crate::store::Store,
    directory: directory::Directory,
    replies: std::sync::Arc<replies::Replies>,
}

impl Actions {
    pub fn new(
        config: &Config,
        store: &crate::store::Store,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        replies: std::sync::Arc<replies::Replies>,
    ) -> Result<Self, BuildError> {
        let builder = || {
            crate::tls::http_builder()
                .connect_timeout(Duration::from_secs(10))
                // A redirect would re-send the body and custom headers to a host nobody chose.
                .redirect(reqwest::redirect::Policy::none())
        };
        let http = builder().build()?;
        let outbound = outbound::Outbound::new(&config.outbound, builder())?;
        let mut mailers = HashMap::new();
        for (name, c) in &config.connections {
            match c {
                Connection::Smtp(smtp) => {
                    let mailer =
                        email::Mailer::new(smtp).map_err(|reason| BuildError::Connection {
                            name: name.clone(),
                            reason,
                        })?;
                    mailers.insert(name.clone(), mailer);
                }
                Connection::WeCom(_) | Connection::DingTalk(_) => {}
            }
        }
        Ok(Self {
            apis: crate::actions::api::Apis::new(config, &http, store, &metrics),
            http,
            outbound,
            mailers,
            store: store.clone(),
            directory: directory::Directory::default(),
            replies,
        })
    }

    /// Runs one rendered action, within a deadline: a sink that stops answering must not hold
    /// a worker slot forever (timed out is retryable).
    pub async fn run(&self, action: &Rendered, attempt: Attempt<'_>) -> Result<(), ActionError> {
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
            Rendered::Log { .. } | Rendered::Cancel { .. } => slack,
            Rendered::Http(h) => h.timeout + slack,
            // An upload (60 s) and a send (15 s).
            Rendered::Robot(_) => Duration::from_secs(75) + slack,
            // A token, directory pages, several calls.
            Rendered::App(_) => Duration::from_secs(180),
            // Queued behind other replies to the same push, then WeCom's receipt.
            Rendered::AibotReply(_) => Duration::from_secs(20) + slack,
            Rendered::Email(m) => {
                let per_message = self
                    .mailers
                    .get(&m.via)
                    .map_or(Duration::from_secs(30), email::Mailer::timeout);
                let messages = if m.one_per_recipient {
                    m.to.len().max(1)
                } else {
                    1
                };
                // Connect, TLS, AUTH and each message may each take one timeout.
                per_message.saturating_mul(u32::try_from(messages + 3).unwrap_or(u32::MAX)) + slack
            }
        }
    }

    async fn run_unbounded(
        &self,
        action: &Rendered,
        attempt: Attempt<'_>,
    ) -> Result<(), ActionError> {
        match action {
            Rendered::Log { level, message } => {
                log(*level, attempt, message);
                Ok(())
            }
            // Done when its event was stored; never a delivery.
            Rendered::Cancel { .. } => Ok(()),
            Rendered::Http(h) => {
                let client = self
                    .outbound
                    .http(&h.url, h.host_from_template, &self.http)?;
                http::send(client, h, attempt).await
            }
            Rendered::Email(m) => {
                let mailer = self.mailers.get(&m.via).ok_or_else(|| {
                    ActionError::permanent(format!("no smtp connection named {:?}", m.via))
                })?;
                let recipients = email::Recipients {
                    to: self.addresses(&m.to, attempt).await?,
                    cc: self.addresses(&m.cc, attempt).await?,
                    bcc: self.addresses(&m.bcc, attempt).await?,
                };
                mailer.send(m, &recipients, attempt).await
            }
            Rendered::Robot(r) => robot::send(&self.outbound, &self.store, r, attempt).await,
            Rendered::AibotReply(r) => {
                let mut body = r.body.clone();
                // A stream reply needs an id; one per delivery, finished unless told.
                if body["msgtype"] == "stream"
                    && let Some(stream) = body.get_mut("stream").and_then(|s| s.as_object_mut())
                {
                    stream
                        .entry("id")
                        .or_insert_with(|| format!("hookgate-{}", attempt.delivery_id).into());
                    stream.entry("finish").or_insert(true.into());
                }
                self.replies
                    .send(&r.receiver, r.cmd, &r.req_id, body)
                    .await
                    .map_err(ActionError::from)
            }
            Rendered::App(a) => {
                let media = &self.outbound;
                let app = App {
                    apis: &self.apis,
                    store: &self.store,
                    directory: &self.directory,
                    media,
                };
                group::run(&app, a, attempt).await
            }
        }
    }
}

impl Actions {
    /// Email addresses for people: addresses as written; departments through the directory.
    /// Members without a visible address are named in the log, not dropped silently.
    async fn addresses(
        &self,
        people: &[crate::rules::People],
        a: Attempt<'_>,
    ) -> Result<Vec<String>, ActionError> {
        use crate::rules::People;
        let mut out = Vec::new();
        for p in people {
            match p {
                People::User(addr) => out.push(addr.clone()),
                People::Department { id, via, recursive } => {
                    let via = via.as_deref().unwrap_or_default();
                    let members = self
                        .directory
                        .members(&self.apis, via, id, *recursive)
                        .await?;
                    let (with, without): (Vec<_>, Vec<_>) =
                        members.into_iter().partition(|m| !m.email.is_empty());
                    if !without.is_empty() {
                        let ids: Vec<&str> = without.iter().map(|m| m.userid.as_str()).collect();
                        tracing::warn!(
                            delivery = a.delivery_id,
                            department = %id,
                            connection = %via,
                            members = %ids.join(","),
                            "Department members without an email address visible to the app get no mail \
                             (WeCom hides email from apps created after 2022-06-20; see the README)."
                        );
                    }
                    if with.is_empty() {
                        return Err(ActionError::permanent(format!(
                            "department {id} via {via}: none of its {} members has an email address visible to the app",
                            without.len()
                        )));
                    }
                    out.extend(with.into_iter().map(|m| m.email));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(a.to_ascii_lowercase()));
        Ok(out)
    }
}

fn log(level: tracing::Level, a: Attempt<'_>, message: &str) {
    macro_rules! at {
        ($lvl:ident) => {
            tracing::$lvl!(rule = %a.rule, receiver = %a.receiver, delivery = a.delivery_id, "{message}")
        };
    }
    match level {
        tracing::Level::ERROR => at!(error),
        tracing::Level::WARN => at!(warn),
        tracing::Level::DEBUG => at!(debug),
        tracing::Level::TRACE => at!(trace),
        _ => at!(info),
    }
}
