//! `email` over SMTP with lettre (tokio, rustls/ring, pooled connections). Every message
//! carries `Message-ID: <hookgate.D.N@domain>` from its delivery id, so a delivery that runs
//! again after a crash sends the same id and mail systems can tell the copies apart.

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{ActionError, Attempt};
use crate::config::SmtpConnection;
use crate::rules::RenderedEmail;

/// Addresses after departments were resolved.
#[derive(Debug, Default)]
pub(super) struct Recipients {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
}

pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: std::time::Duration,
    from: Mailbox,
    /// The right-hand side of Message-IDs: the sender's domain.
    domain: String,
}

impl Mailer {
    pub(super) fn new(c: &SmtpConnection) -> Result<Self, String> {
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
        Ok(Self {
            transport: builder.build(),
            timeout: c.timeout,
            from,
            domain,
        })
    }

    pub(super) fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// Sends `m` to the resolved addresses (departments already looked up).
    pub(super) async fn send(
        &self,
        m: &RenderedEmail,
        r: &Recipients,
        a: Attempt<'_>,
    ) -> Result<(), ActionError> {
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
            self.transport.send(message).await.map_err(classify)?;
        }
        Ok(())
    }
}

/// SMTP 5xx replies are permanent; 4xx, timeouts, TLS and connection failures are retried.
fn classify(e: lettre::transport::smtp::Error) -> ActionError {
    let reason = format!("smtp: {e}");
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
