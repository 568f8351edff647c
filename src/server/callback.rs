//! One callback: read the body within its limits, open it through the receiver's
//! [`crate::ingress`] opener, admit a robot's sign once, commit the event through the
//! [`Intake`], and only then answer what the vendor expects. A refusal tells the caller the
//! vendor's code and nothing else; the reason goes to the log.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tracing::{debug, error, info, warn};

use super::{HyperHeaders, body, plain, respond};
use crate::clock::now_ms;
use crate::config::Receiver;
use crate::ingress::{self, Method};
use crate::intake::Intake;
use crate::loaded::Loaded;

/// A callback's answer with its outcome and rejection-reason labels.
type Answer = (Response<Full<Bytes>>, &'static str, &'static str);

/// The header an accepted callback's answer names its outcome in: `accepted` (stored),
/// `duplicate` (stored before: no rule ran again) or `url_check`.
pub const OUTCOME_HEADER: &str = "x-hookgate-outcome";

/// One callback to one receiver, with the config state it started with.
pub(super) struct Call<'a> {
    pub intake: &'a Intake,
    pub loaded: &'a Loaded,
    pub receiver: &'a Receiver,
    pub guard: &'a ingress::Guard,
    pub started: Instant,
    /// The connection's remote address.
    pub peer: std::net::IpAddr,
}

/// The synchronous part: verify, decrypt, parse (kept out of the async fn, whose state must be `Send`).
/// With the robot sign use of an accepted robot event, which the store must also admit.
fn open(
    receiver: &Receiver,
    guard: &ingress::Guard,
    method: Method,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    peer: std::net::IpAddr,
) -> Result<(ingress::Accepted, Option<crate::store::SignUse>), ingress::Rejected> {
    let request = ingress::Request {
        method,
        query: parts.uri.query().unwrap_or(""),
        headers: &HyperHeaders(&parts.headers),
        body,
        now_ms: now_ms(),
        peer: Some(peer),
    };
    let accepted = ingress::open_with(receiver, guard, &request)?;
    let used = accepted
        .event
        .as_ref()
        .and_then(|_| ingress::sign_use(receiver, &request));
    Ok((accepted, used))
}

/// The answer to a refused callback: the vendor's code and nothing else (the reason goes to
/// the log); with the outcome and reason labels.
fn refused(
    receiver: &Receiver,
    rejected: &ingress::Rejected,
    body: &[u8],
    latency_ms: f64,
) -> Answer {
    let code = rejected
        .code
        .map_or_else(|| "none".to_owned(), |c| c.to_string());
    warn!(
        receiver = %receiver.name,
        vendor = %receiver.vendor(),
        code = %code,
        status = rejected.status(),
        reason = %rejected.error,
        hint = ingress::setting_hint(&rejected.error, receiver.vendor()).unwrap_or(""),
        latency_ms,
        "Callback rejected."
    );
    debug!(receiver = %receiver.name, body = %ingress::preview(body), "Rejected body.");
    let text = match rejected.code {
        Some(code) => format!("rejected ({code})\n"),
        None => "rejected\n".to_owned(),
    };
    (
        respond(rejected.status(), "text/plain; charset=utf-8", text),
        "rejected",
        rejected.error.label(),
    )
}

/// The 503 that makes the vendor retry while the store cannot commit.
fn unavailable() -> Answer {
    (
        plain(503, "store unavailable, retry later\n"),
        "error",
        "store",
    )
}

impl Call<'_> {
    fn ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// The whole callback: (response, outcome label, rejection reason label).
    pub(super) async fn answer(&self, req: Request<Incoming>) -> Answer {
        let receiver = self.receiver;
        let method = match *req.method() {
            hyper::Method::GET | hyper::Method::HEAD => Method::Get,
            hyper::Method::POST => Method::Post,
            _ => Method::Other,
        };
        let (parts, incoming) = req.into_parts();
        let body = match self.read_body(incoming, &parts.headers).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let (accepted, used) = match open(receiver, self.guard, method, &parts, &body, self.peer) {
            Ok(opened) => opened,
            Err(rejected) => return refused(receiver, &rejected, &body, self.ms()),
        };
        if let Some(used) = used
            && let Err(answer) = self.admit_sign(used, &body).await
        {
            return answer;
        }
        let outcome = match accepted.event {
            Some(event) => match self.commit(event).await {
                Ok(outcome) => outcome,
                Err(answer) => return answer,
            },
            None => {
                info!(receiver = %receiver.name, vendor = %receiver.vendor(), latency_ms = self.ms(), "Answered a URL check or hint; nothing to store.");
                "url_check"
            }
        };
        let reply = accepted.reply;
        let mut response = respond(reply.status, reply.content_type, reply.body);
        // For `hookgate simulate` (the caller proved who it is): stored, a duplicate, or a
        // URL check. Vendors ignore it.
        response.headers_mut().insert(
            OUTCOME_HEADER,
            hyper::header::HeaderValue::from_static(outcome),
        );
        (response, outcome, "")
    }

    /// The body within `[server]`'s size limit and read timeout.
    async fn read_body(
        &self,
        incoming: Incoming,
        headers: &hyper::HeaderMap,
    ) -> Result<Bytes, Answer> {
        body::read(incoming, headers, &self.loaded.server)
            .await
            .map_err(|e| {
                let status = e.status();
                warn!(receiver = %self.receiver.name, status, reason = %e, latency_ms = self.ms(), "Callback body refused.");
                let reason = if status == 413 {
                    "too_large"
                } else {
                    "slow_body"
                };
                (
                    respond(status, "text/plain; charset=utf-8", format!("{e}\n")),
                    "rejected",
                    reason,
                )
            })
    }

    /// A robot's sign covers no body: every process on the store admits a pair for one body.
    async fn admit_sign(&self, used: crate::store::SignUse, body: &[u8]) -> Result<(), Answer> {
        match self.intake.store().sign_once(used, now_ms()).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let replayed = ingress::Rejected::new(
                    self.receiver.vendor(),
                    crate::crypto::OpenError::Replayed,
                );
                Err(refused(self.receiver, &replayed, body, self.ms()))
            }
            Err(e) => {
                error!(receiver = %self.receiver.name, error = %e, "Could not record the robot sign; answering 503 so the vendor retries.");
                Err(unavailable())
            }
        }
    }

    /// Commits the event with its deliveries; the outcome label, or the 503 to answer.
    async fn commit(&self, event: crate::event::Event) -> Result<&'static str, Answer> {
        let receiver = &self.receiver.name;
        let (kind, key) = (event.kind().to_owned(), event.dedupe_key().to_owned());
        debug!(receiver = %receiver, raw = %event.raw(), "Decrypted callback.");
        match self.intake.commit(self.loaded, event).await {
            Ok(c) => {
                info!(
                    receiver = %receiver,
                    kind = %kind,
                    event_id = c.stored.id,
                    duplicate = c.stored.duplicate,
                    dedupe_key = %key,
                    actions = if c.stored.duplicate { 0 } else { c.actions },
                    "Callback accepted."
                );
                Ok(if c.stored.duplicate {
                    "duplicate"
                } else {
                    "accepted"
                })
            }
            Err(e) => {
                error!(receiver = %receiver, kind = %kind, error = %e, "Could not store the callback; answering 503 so the vendor retries.");
                Err(unavailable())
            }
        }
    }
}
