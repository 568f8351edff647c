//! Sends an `email` over SMTP with lettre (tokio, rustls/ring, pooled connections). Every message
//! carries `Message-ID: <hookgate.D.N@domain>` from its delivery id, so a delivery that runs
//! again after a crash sends the same id and mail systems can tell the copies apart.

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Rendered;
use crate::actions::api::Apis;
use crate::actions::connection::SmtpConnection;
use crate::actions::directory::Directory;
use crate::actions::people::{People, join_people};
use crate::actions::{ActionError, Attempt};

/// Addresses after departments were resolved.
#[derive(Debug, Default)]
struct Recipients {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
}

/// One `smtp` connection's transport (pooled).
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: std::time::Duration,
    from: Mailbox,
    /// The right-hand side of Message-IDs: the sender's domain.
    domain: String,
    /// `host:port`, for errors.
    server: String,
}

impl Mailer {
    pub fn new(c: &SmtpConnection) -> Result<Self, String> {
        let url = c.url.expose();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("url: {}", redact(&e.to_string(), url)))?
            .timeout(Some(c.timeout));
        if let Some(ca) = &c.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            let parsed = url::Url::parse(url).map_err(|e| format!("url: {e}"))?;
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let params = TlsParameters::builder(host)
                .add_root_certificate(cert)
                .build_rustls()
                .map_err(|e| format!("tls: {e}"))?;
            let mode = parsed
                .query_pairs()
                .find(|(k, _)| k == "tls")
                .map(|(_, v)| v.into_owned());
            let tls = match (parsed.scheme(), mode.as_deref()) {
                ("smtps", _) => Tls::Wrapper(params),
                (_, Some("required")) => Tls::Required(params),
                (_, Some("opportunistic")) => Tls::Opportunistic(params),
                _ => return Err("ca_file needs smtps:// or ?tls=required".into()),
            };
            builder = builder.tls(tls);
        }
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("from {:?}: {e}", c.from))?;
        let domain = from.email.domain().to_owned();
        let server = url::Url::parse(url).map_or_else(
            |_| "the SMTP server".to_owned(),
            |u| match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                (None, _) => "the SMTP server".to_owned(),
            },
        );
        Ok(Self {
            server,
            transport: builder.build(),
            timeout: c.timeout,
            from,
            domain,
        })
    }

    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// Sends `m` to the resolved addresses (departments already looked up).
    async fn send(&self, m: &Rendered, r: &Recipients, a: Attempt<'_>) -> Result<(), ActionError> {
        if r.to.is_empty() && r.cc.is_empty() && r.bcc.is_empty() {
            return Err(ActionError::permanent("no recipients after rendering"));
        }
        let parse = |list: &[String]| -> Result<Vec<Mailbox>, ActionError> {
            list.iter()
                .map(|s| {
                    s.parse::<Mailbox>()
                        .map_err(|e| ActionError::permanent(format!("bad address {s:?}: {e}")))
                })
                .collect()
        };
        let (to, cc, bcc) = (parse(&r.to)?, parse(&r.cc)?, parse(&r.bcc)?);
        let groups: Vec<Vec<Mailbox>> = if m.one_per_recipient && to.len() > 1 {
            to.into_iter().map(|t| vec![t]).collect()
        } else {
            vec![to]
        };
        for (n, group) in groups.into_iter().enumerate() {
            let mut b = Message::builder()
                .from(self.from.clone())
                .subject(m.subject.clone())
                .message_id(Some(format!(
                    "<hookgate.{}.{n}@{}>",
                    a.delivery_id, self.domain
                )));
            for t in group {
                b = b.to(t);
            }
            for c in &cc {
                b = b.cc(c.clone());
            }
            for c in &bcc {
                b = b.bcc(c.clone());
            }
            let message = match &m.html {
                Some(html) => b.multipart(MultiPart::alternative_plain_html(
                    m.body.clone(),
                    html.clone(),
                )),
                None => b.header(ContentType::TEXT_PLAIN).body(m.body.clone()),
            }
            .map_err(|e| ActionError::permanent(format!("message: {e}")))?;
            // A message of a split group that fails stops the delivery; the retry sends the
            // whole group again with the same Message-IDs.
            self.transport
                .send(message)
                .await
                .map_err(|e| classify(&self.server, e))?;
        }
        Ok(())
    }
}

impl Rendered {
    /// As `explain` shows it.
    pub fn describe(&self) -> String {
        let mut s = format!("via: {}\nto: {}\n", self.via, join_people(&self.to));
        if !self.cc.is_empty() {
            s.push_str(&format!("cc: {}\n", join_people(&self.cc)));
        }
        if !self.bcc.is_empty() {
            s.push_str(&format!("bcc: {}\n", join_people(&self.bcc)));
        }
        if self.one_per_recipient {
            s.push_str("(one message per recipient)\n");
        }
        s.push_str(&format!("subject: {}\n\n{}", self.subject, self.body));
        if let Some(html) = &self.html {
            s.push_str(&format!("\n\n[html]\n{html}"));
        }
        s
    }

    /// Messages it makes: one, or one per `to` address.
    pub fn messages(&self) -> usize {
        if self.one_per_recipient {
            self.to.len().max(1)
        } else {
            1
        }
    }

    /// Resolves departments through the directory, then sends through `mailer`.
    pub async fn send(
        &self,
        mailer: &Mailer,
        directory: &Directory,
        apis: &Apis,
        a: Attempt<'_>,
    ) -> Result<(), ActionError> {
        let recipients = Recipients {
            to: addresses(&self.to, directory, apis, a).await?,
            cc: addresses(&self.cc, directory, apis, a).await?,
            bcc: addresses(&self.bcc, directory, apis, a).await?,
        };
        mailer.send(self, &recipients, a).await
    }
}

/// Email addresses for people: addresses as written; departments through the directory.
/// Members without a visible address are named in the log, not dropped silently.
async fn addresses(
    people: &[People],
    directory: &Directory,
    apis: &Apis,
    a: Attempt<'_>,
) -> Result<Vec<String>, ActionError> {
    let mut out = Vec::new();
    for p in people {
        match p {
            People::User(addr) => out.push(addr.clone()),
            People::Department { id, via, recursive } => {
                let via = via.as_deref().unwrap_or_default();
                let members = directory.members(apis, via, id, *recursive).await?;
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

/// SMTP 5xx replies are permanent; 4xx, timeouts, TLS and connection failures are retried.
fn classify(server: &str, e: lettre::transport::smtp::Error) -> ActionError {
    let reason = format!("smtp {server}: {}", crate::actions::error::with_causes(&e));
    if e.is_permanent() {
        ActionError::permanent(reason)
    } else {
        ActionError::retryable(reason)
    }
}

/// Errors that quote the URL must not show its password.
fn redact(text: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.password() {
            Some(p) if !p.is_empty() => text.replace(p, "***"),
            _ => text.to_owned(),
        },
        Err(_) => text.to_owned(),
    }
}
