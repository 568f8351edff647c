//! `/api/v1/…`: one route per operator question or action (see `docs/admin-api.md`), each
//! a thin call into [`crate::operate`] answered as JSON; the live tail as server-sent events.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response};
use serde_json::json;

use super::auth::Caller;
use super::{Admin, Body, json, json_error, read_body};
use crate::operate::{self, DeliveryQuery, EventQuery, OperateError};

/// The query string's parameters (the last of a repeated name wins).
fn params(req: &Request<Incoming>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A request refused before it reached the store: the status and why.
pub(super) struct Refusal(pub u16, pub String);

fn int(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Refusal> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Refusal(400, format!("{name} must be an integer, not {v:?}"))),
    }
}

fn text(p: &HashMap<String, String>, name: &str) -> Option<String> {
    p.get(name).filter(|v| !v.is_empty()).cloned()
}

fn event_query(p: &HashMap<String, String>) -> Result<EventQuery, Refusal> {
    Ok(EventQuery {
        receiver: text(p, "receiver"),
        kind: text(p, "kind"),
        since_ms: int(p, "since_ms")?,
        until_ms: int(p, "until_ms")?,
        text: text(p, "text"),
        before: int(p, "before")?,
        limit: int(p, "limit")?.map(|l| usize::try_from(l).unwrap_or(0)),
    })
}

fn delivery_query(p: &HashMap<String, String>) -> Result<DeliveryQuery, Refusal> {
    Ok(DeliveryQuery {
        status: text(p, "status"),
        rule: text(p, "rule"),
        receiver: text(p, "receiver"),
        event: int(p, "event")?,
        key: text(p, "key"),
        before: int(p, "before")?,
        limit: int(p, "limit")?.map(|l| usize::try_from(l).unwrap_or(0)),
    })
}

/// An operation's answer, or its error as the right status.
fn answer<T: serde::Serialize>(result: Result<T, OperateError>) -> Response<Body> {
    match result {
        Ok(v) => json(200, &v),
        Err(OperateError::NotFound(m)) => json_error(404, &m),
        Err(OperateError::Invalid(m)) => json_error(400, &m),
        Err(OperateError::Store(e)) => {
            tracing::error!(error = %e, "Admin API: the store failed.");
            json_error(503, &format!("the store failed: {e}"))
        }
    }
}

/// A JSON request body as `T`.
async fn body<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Refusal> {
    let bytes = read_body(req)
        .await
        .map_err(|()| Refusal(413, "the body is over 1 MiB or was cut off".into()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| Refusal(400, format!("the body: {e}")))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DeadFilter {
    rule: Option<String>,
    receiver: Option<String>,
}

/// A replay's body: the events (a filtered replay), and only one rule's actions if given.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ReplayBody {
    #[serde(flatten)]
    events: EventQuery,
    rule: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct KeyBody {
    key: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ExplainBody {
    receiver: String,
    body: String,
}

pub(super) async fn route(
    admin: &Admin,
    caller: &Caller,
    req: Request<Incoming>,
) -> Response<Body> {
    match dispatch(admin, caller, req).await {
        Ok(resp) => resp,
        Err(Refusal(status, why)) => json_error(status, &why),
    }
}

async fn dispatch(
    admin: &Admin,
    caller: &Caller,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let Some(rest) = path.strip_prefix("/api/v1") else {
        return Err(Refusal(404, "unknown API version; this is /api/v1".into()));
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let answered = match method {
        Method::GET => read(admin, caller, &segments, &params(&req)).await?,
        Method::POST => write(admin, caller, &segments, req).await?,
        _ => None,
    };
    Ok(answered.unwrap_or_else(|| json_error(404, &format!("no {method} {path}"))))
}

fn id(s: &str) -> Result<i64, Refusal> {
    s.parse::<i64>()
        .map_err(|_| Refusal(400, format!("{s:?} is not an id")))
}

/// The GET routes; `None` for an unknown path.
async fn read(
    admin: &Admin,
    caller: &Caller,
    segments: &[&str],
    p: &HashMap<String, String>,
) -> Result<Option<Response<Body>>, Refusal> {
    let store = admin.intake.store();
    let loaded = admin.intake.loaded();
    Ok(Some(match segments {
        ["whoami"] => json(200, caller),
        ["events"] => answer(operate::events(store, &event_query(p)?).await),
        ["events", n] => answer(operate::event(store, id(n)?).await),
        ["deliveries"] => answer(operate::deliveries(store, &delivery_query(p)?).await),
        ["deliveries", n] => answer(operate::delivery(store, id(n)?).await),
        ["timers"] => {
            let q = DeliveryQuery {
                status: Some("scheduled".into()),
                ..delivery_query(p)?
            };
            answer(operate::deliveries(store, &q).await)
        }
        ["groups"] => {
            let limit = int(p, "limit")?.unwrap_or(200);
            answer(operate::groups(store, usize::try_from(limit).unwrap_or(1)).await)
        }
        ["connections"] => json(200, &admin.streams.snapshot()),
        ["rules"] => json(200, &rules(&loaded)),
        ["receivers"] => {
            let mut list: Vec<_> = loaded
                .receivers
                .values()
                .map(|r| json!({ "name": r.name, "vendor": r.vendor().as_str(), "path": r.path }))
                .collect();
            list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            json(200, &list)
        }
        ["audit"] => {
            let limit = int(p, "limit")?.map(|l| usize::try_from(l).unwrap_or(0));
            answer(operate::audit_trail(store, int(p, "before")?, limit).await)
        }
        ["summary"] => answer(summary(admin).await),
        ["tail"] => tail(admin),
        _ => return Ok(None),
    }))
}

/// The POST routes (an operator's, checked for CSRF already); `None` for an unknown path.
async fn write(
    admin: &Admin,
    caller: &Caller,
    segments: &[&str],
    req: Request<Incoming>,
) -> Result<Option<Response<Body>>, Refusal> {
    let store = admin.intake.store();
    let loaded = admin.intake.loaded();
    let who = caller.name.as_str();
    let give_up = loaded.give_up_after_ms;
    Ok(Some(match segments {
        ["events", n, "replay"] => {
            let id = id(n)?;
            let r: ReplayBody = body(req).await?;
            answer(operate::replay(store, &loaded, who, id, r.rule.as_deref()).await)
        }
        ["events", "replay"] => {
            let r: ReplayBody = body(req).await?;
            let rule = r.rule.as_deref();
            answer(operate::replay_matching(store, &loaded, who, &r.events, rule).await)
        }
        ["deliveries", n, "retry"] => {
            let n = operate::retry(store, who, id(n)?, give_up).await;
            answer(n.map(|n| json!({ "queued": n })))
        }
        ["deliveries", "retry-dead"] => {
            let f: DeadFilter = body(req).await?;
            let n = operate::retry_dead(store, who, f.rule, f.receiver, give_up).await;
            answer(n.map(|n| json!({ "queued": n })))
        }
        ["deliveries", n, "cancel"] => {
            let n = operate::cancel(store, who, Some(id(n)?), None).await;
            answer(n.map(|n| json!({ "cancelled": n })))
        }
        ["deliveries", "cancel"] => {
            let k: KeyBody = body(req).await?;
            let n = operate::cancel(store, who, None, k.key).await;
            answer(n.map(|n| json!({ "cancelled": n })))
        }
        ["explain"] => {
            let e: ExplainBody = body(req).await?;
            answer(operate::explain(&loaded, &e.receiver, e.body))
        }
        ["reload"] => reload(admin, caller).await,
        _ => return Ok(None),
    }))
}

/// The rules as loaded, with where each starts in the config file.
fn rules(loaded: &crate::loaded::Loaded) -> serde_json::Value {
    let list: Vec<_> = loaded
        .rules
        .rules()
        .iter()
        .map(|r| {
            let actions: Vec<_> = r
                .actions
                .iter()
                .map(|a| json!({ "kind": a.action.kind(), "as": a.step, "after_s": a.delay.map(|d| d.as_secs()) }))
                .collect();
            json!({
                "name": r.name,
                "line": r.line,
                "receivers": r.receivers,
                "schedule": r.schedule.as_ref().map(|s| s.schedule.written().to_owned()),
                "stop": r.stop,
                "actions": actions,
            })
        })
        .collect();
    json!(list)
}

/// What `/metrics` would tell, in a few numbers: the backlog, dead letters and timers by rule.
async fn summary(admin: &Admin) -> Result<serde_json::Value, OperateError> {
    let store = admin.intake.store();
    let now = crate::clock::now_ms();
    let (pending, oldest) = store.pending_stats().await?;
    let backlog = store.backlog(now).await?;
    let by_rule = |v: Vec<(String, i64)>| -> serde_json::Map<String, serde_json::Value> {
        v.into_iter().map(|(r, n)| (r, n.into())).collect()
    };
    Ok(json!({
        "pending": pending,
        "oldest_pending_ms": oldest,
        "dead_by_rule": by_rule(backlog.dead),
        "scheduled_by_rule": by_rule(backlog.scheduled),
        "connections": admin.streams.snapshot(),
    }))
}

/// Asks the process to re-read its config file and waits for the answer.
async fn reload(admin: &Admin, caller: &Caller) -> Response<Body> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if admin.reload.send(tx).await.is_err() {
        return json_error(
            409,
            "this process was not started from a config file it can re-read",
        );
    }
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), rx).await;
    let (status, outcome) = match answer {
        Ok(Ok(Ok(m))) => (200, json!({ "reloaded": true, "message": m })),
        Ok(Ok(Err(m))) => (422, json!({ "reloaded": false, "error": m })),
        _ => (
            503,
            json!({ "reloaded": false, "error": "no answer from the reloader" }),
        ),
    };
    let detail = Some(outcome.to_string());
    let store = admin.intake.store();
    operate::record(store, &caller.name, "reload", "config".into(), detail).await;
    json(status, &outcome)
}

/// Committed callbacks as they arrive, as server-sent events (`event: callback`); a comment
/// every 15 s keeps proxies from closing the stream.
fn tail(admin: &Admin) -> Response<Body> {
    let rx = admin.intake.tail();
    let stopping = admin.stopping.clone();
    let events = futures_util::stream::unfold(
        (rx, stopping),
        |(mut rx, mut stopping)| async move {
            let frame = tokio::select! {
                _ = stopping.wait_for(|s| *s) => return None,
                got = rx.recv() => match got {
                    Ok(t) => format!("event: callback\ndata: {}\n\n", serde_json::to_string(&*t).unwrap_or_default()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => format!("event: lagged\ndata: {n}\n\n"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(std::time::Duration::from_secs(15)) => ":\n\n".to_owned(),
            };
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(frame))),
                (rx, stopping),
            ))
        },
    );
    let opening = futures_util::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b":tail\n\n")))
    });
    let body = BodyExt::boxed(StreamBody::new(opening.chain(events)));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
