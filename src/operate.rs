//! What operators read and do, one layer for the admin API and the CLI: pages of events and
//! deliveries by filter, one event with its deliveries and their attempts, timers, groups,
//! the audit trail; retry, cancel and replay (through the rules loaded now), each one logged
//! and stored with who did it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tracing::info;

use crate::clock::now_ms;
use crate::loaded::Loaded;
use crate::rules::EventView;
use crate::store::{
    AuditRow, DeliveryFilter, DeliveryRow, DeliveryStatus, GroupRow, ListFilter, Replayed,
    RequeueTarget, Store, StoreError, StoredEvent,
};

/// The most rows one page holds.
pub const MAX_PAGE: usize = 500;

/// How many events one text search reads (newest first); the page says where it stopped,
/// and the next page goes on from there.
pub const TEXT_WINDOW: i64 = 20_000;

/// The most events one filtered replay takes.
pub const MAX_REPLAY: usize = 500;

/// Why an operator's request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of a list, newest first; `next_before` continues it.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<i64>,
    /// A text search read the events down to this id (not below).
    pub searched_down_to: Option<i64>,
}

/// An event as the list shows it: no body.
#[derive(Debug, Serialize)]
pub struct EventSummary {
    pub id: i64,
    pub received_at_ms: i64,
    pub receiver: String,
    pub vendor: String,
    pub kind: String,
    pub dedupe_key: String,
}

/// A delivery with what it kept (as JSON) and each attempt it made.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub row: DeliveryRow,
    /// What it kept for later actions (`as`), parsed.
    pub result: Value,
    pub attempt_log: Vec<Value>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> Self {
        let result = row
            .result
            .as_deref()
            .map(|r| serde_json::from_str(r).unwrap_or_else(|_| Value::from(r)))
            .unwrap_or_default();
        let attempt_log = row.attempt_log();
        Self {
            row,
            result,
            attempt_log,
        }
    }
}

/// One event in full: its body and fields, every delivery it made, and the rules they came
/// from (in the order they were first planned).
#[derive(Debug, Serialize)]
pub struct EventDetail {
    pub event: StoredEvent,
    pub deliveries: Vec<DeliveryView>,
    pub rules: Vec<String>,
}

/// What the event list is filtered by.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct EventQuery {
    pub receiver: Option<String>,
    pub kind: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub text: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(50).clamp(1, MAX_PAGE)
}

fn next(ids: impl DoubleEndedIterator<Item = i64>, len: usize, limit: usize) -> Option<i64> {
    (len == limit).then(|| ids.last()).flatten()
}

/// Events newest first. A text search reads at most [`TEXT_WINDOW`] events per page.
pub async fn events(store: &Store, q: &EventQuery) -> Result<Page<EventSummary>, OperateError> {
    let limit = limit(q.limit);
    let text = q.text.clone().filter(|t| !t.is_empty());
    let mut floor = None;
    if text.is_some() {
        let top = match q.before {
            Some(b) => b,
            None => newest_id(store).await? + 1,
        };
        floor = Some((top - TEXT_WINDOW).max(1));
    }
    let filter = ListFilter {
        receiver: q.receiver.clone().filter(|r| !r.is_empty()),
        kind: q.kind.clone().filter(|k| !k.is_empty()),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        text,
        before: q.before,
        floor,
        limit,
    };
    let rows = store.list(&filter).await?;
    let full = next(rows.iter().map(|e| e.id), rows.len(), limit);
    // A text search that read its whole window goes on below it.
    let next_before = full.or(floor.filter(|f| *f > 1));
    let items = rows
        .into_iter()
        .map(|e| EventSummary {
            id: e.id,
            received_at_ms: e.received_at_ms,
            receiver: e.receiver,
            vendor: e.vendor,
            kind: e.kind,
            dedupe_key: e.dedupe_key,
        })
        .collect();
    Ok(Page {
        items,
        next_before,
        searched_down_to: floor,
    })
}

async fn newest_id(store: &Store) -> Result<i64, StoreError> {
    let newest = store
        .list(&ListFilter {
            limit: 1,
            ..ListFilter::default()
        })
        .await?;
    Ok(newest.first().map_or(0, |e| e.id))
}

/// One event with every delivery it made.
pub async fn event(store: &Store, id: i64) -> Result<EventDetail, OperateError> {
    let event = store
        .get(id)
        .await?
        .ok_or_else(|| OperateError::NotFound(format!("no event {id}")))?;
    let rows = store
        .deliveries(&DeliveryFilter {
            event_id: Some(id),
            limit: 10_000,
            ..DeliveryFilter::default()
        })
        .await?;
    let mut deliveries: Vec<DeliveryView> = rows.into_iter().map(DeliveryView::from).collect();
    deliveries.sort_by_key(|d| d.row.id);
    let mut rules: Vec<String> = Vec::new();
    for d in &deliveries {
        if !rules.contains(&d.row.rule) {
            rules.push(d.row.rule.clone());
        }
    }
    Ok(EventDetail {
        event,
        deliveries,
        rules,
    })
}

/// What the delivery list is filtered by.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct DeliveryQuery {
    pub status: Option<String>,
    pub rule: Option<String>,
    pub receiver: Option<String>,
    pub event: Option<i64>,
    pub key: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

impl DeliveryQuery {
    fn filter(&self) -> Result<DeliveryFilter, OperateError> {
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
                OperateError::Invalid(format!(
                    "status {s:?} is not one of waiting, pending, running, done, dead, cancelled, skipped, failed, scheduled"
                ))
            })?),
        };
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(DeliveryFilter {
            status,
            event_id: self.event,
            id: None,
            rule: text(&self.rule),
            receiver: text(&self.receiver),
            key: text(&self.key),
            before: self.before,
            limit: limit(self.limit),
        })
    }
}

/// Deliveries newest first (timers: soonest first).
pub async fn deliveries(
    store: &Store,
    q: &DeliveryQuery,
) -> Result<Page<DeliveryView>, OperateError> {
    let filter = q.filter()?;
    let rows = store.deliveries(&filter).await?;
    let scheduled = filter.status == Some(DeliveryStatus::Scheduled);
    // Timers are ordered by due time: they come in one page.
    let next_before = if scheduled {
        None
    } else {
        next(rows.iter().map(|d| d.id), rows.len(), filter.limit)
    };
    Ok(Page {
        items: rows.into_iter().map(DeliveryView::from).collect(),
        next_before,
        searched_down_to: None,
    })
}

pub async fn delivery(store: &Store, id: i64) -> Result<DeliveryView, OperateError> {
    let filter = DeliveryFilter {
        id: Some(id),
        limit: 1,
        ..DeliveryFilter::default()
    };
    let row = store.deliveries(&filter).await?.pop();
    row.map(DeliveryView::from)
        .ok_or_else(|| OperateError::NotFound(format!("no delivery {id}")))
}

pub async fn groups(store: &Store, limit: usize) -> Result<Vec<GroupRow>, OperateError> {
    Ok(store.groups(limit.clamp(1, 10_000)).await?)
}

pub async fn audit_trail(
    store: &Store,
    before: Option<i64>,
    limit: Option<usize>,
) -> Result<Page<AuditRow>, OperateError> {
    let limit = self::limit(limit);
    let rows = store.audit_list(before, limit).await?;
    Ok(Page {
        next_before: next(rows.iter().map(|a| a.id), rows.len(), limit),
        items: rows,
        searched_down_to: None,
    })
}

/// Logs an operator's action and stores it in the audit trail.
pub async fn record(
    store: &Store,
    who: &str,
    action: &str,
    target: String,
    detail: Option<String>,
) {
    info!(who, action, target = %target, detail = detail.as_deref().unwrap_or(""), "Operator action.");
    let row = AuditRow {
        id: 0,
        at_ms: now_ms(),
        who: who.to_owned(),
        action: action.to_owned(),
        target,
        detail,
    };
    if let Err(e) = store.audit(row).await {
        tracing::error!(error = %e, who, action, "The audit trail could not store an operator action.");
    }
}

/// Runs a dead (or pending) delivery again now, with a fresh retry window.
pub async fn retry(
    store: &Store,
    who: &str,
    id: i64,
    give_up_after_ms: i64,
) -> Result<usize, OperateError> {
    let now = now_ms();
    let n = store
        .requeue(
            RequeueTarget::Id(id),
            now,
            now.saturating_add(give_up_after_ms),
        )
        .await?;
    if n == 0 {
        return Err(OperateError::NotFound(format!(
            "no dead or pending delivery {id}"
        )));
    }
    record(store, who, "retry", format!("delivery {id}"), None).await;
    Ok(n)
}

/// Runs every dead delivery of `rule` / `receiver` (all, when neither is given) again now.
pub async fn retry_dead(
    store: &Store,
    who: &str,
    rule: Option<String>,
    receiver: Option<String>,
    give_up_after_ms: i64,
) -> Result<usize, OperateError> {
    let now = now_ms();
    let deadline = now.saturating_add(give_up_after_ms);
    let shown = format!(
        "dead deliveries{}{}",
        rule.as_ref()
            .map(|r| format!(" of rule {r:?}"))
            .unwrap_or_default(),
        receiver
            .as_ref()
            .map(|r| format!(" from receiver {r:?}"))
            .unwrap_or_default()
    );
    let n = if rule.is_none() && receiver.is_none() {
        store.requeue(RequeueTarget::AllDead, now, deadline).await?
    } else {
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Dead),
            rule,
            receiver,
            limit: 100_000,
            ..DeliveryFilter::default()
        };
        let mut n = 0;
        // Oldest first, so each rule's first action is pending before its successors are
        // looked at (a skipped successor waits for it again instead of running).
        let mut dead = store.deliveries(&filter).await?;
        dead.reverse();
        for d in dead {
            n += store
                .requeue(RequeueTarget::Id(d.id), now, deadline)
                .await?;
        }
        n
    };
    record(store, who, "retry", shown, Some(format!("{n} queued"))).await;
    Ok(n)
}

/// Calls off a pending or waiting delivery by id, or every one with `key`.
pub async fn cancel(
    store: &Store,
    who: &str,
    id: Option<i64>,
    key: Option<String>,
) -> Result<usize, OperateError> {
    let target = match (&id, &key) {
        (Some(id), _) => format!("delivery {id}"),
        (None, Some(k)) => format!("key {k:?}"),
        (None, None) => return Err(OperateError::Invalid("give a delivery id or a key".into())),
    };
    let reason = format!("cancelled by {who}");
    let n = store.cancel(key, id, &reason, now_ms()).await?;
    if n == 0 && id.is_some() {
        return Err(OperateError::NotFound(format!(
            "no pending or waiting {target}"
        )));
    }
    record(store, who, "cancel", target, Some(format!("{n} cancelled"))).await;
    Ok(n)
}

/// Plans stored event `id` again through the rules loaded now and stores the deliveries as
/// its next replay. Timers count from now; `cancel` actions are not applied again; a rule
/// with deliveries of this event still unfinished is left out (it would run twice).
/// With `rule`, only that rule's actions are planned (the rule just fixed, say).
pub async fn replay(
    store: &Store,
    loaded: &Loaded,
    who: &str,
    id: i64,
    rule: Option<&str>,
) -> Result<Replayed, OperateError> {
    known_rule(loaded, rule)?;
    let event = store
        .get(id)
        .await?
        .ok_or_else(|| OperateError::NotFound(format!("no event {id}")))?;
    let replayed = replay_stored(store, loaded, &event, rule).await?;
    let detail = format!(
        "replay {}{}: {} deliveries, {} left out (unfinished)",
        replayed.replay,
        rule.map(|r| format!(" of rule {r:?}")).unwrap_or_default(),
        replayed.deliveries,
        replayed.unfinished
    );
    record(store, who, "replay", format!("event {id}"), Some(detail)).await;
    Ok(replayed)
}

fn known_rule(loaded: &Loaded, rule: Option<&str>) -> Result<(), OperateError> {
    match rule {
        Some(r) if !loaded.rules.rules().iter().any(|x| x.name == r) => {
            Err(OperateError::Invalid(format!("no rule named {r:?}")))
        }
        _ => Ok(()),
    }
}

async fn replay_stored(
    store: &Store,
    loaded: &Loaded,
    event: &StoredEvent,
    rule: Option<&str>,
) -> Result<Replayed, OperateError> {
    let empty = serde_json::Map::new();
    let view = EventView {
        id: event.id,
        receiver: &event.receiver,
        vendor: &event.vendor,
        kind: &event.kind,
        dedupe_key: &event.dedupe_key,
        received_at_ms: event.received_at_ms,
        fields: event.fields.as_object().unwrap_or(&empty),
    };
    let now = now_ms();
    let (mut planned, _cancels) = crate::intake::plan_view(loaded, &view, now);
    if let Some(r) = rule {
        planned.retain(|d| d.rule == r);
    }
    Ok(store.replay(event.id, planned, now).await?)
}

/// Replays every event `q` selects (at most [`MAX_REPLAY`], newest first).
pub async fn replay_matching(
    store: &Store,
    loaded: &Loaded,
    who: &str,
    q: &EventQuery,
    rule: Option<&str>,
) -> Result<Vec<Replayed>, OperateError> {
    known_rule(loaded, rule)?;
    let q = EventQuery {
        limit: Some(q.limit.unwrap_or(MAX_REPLAY).min(MAX_REPLAY)),
        ..q.clone()
    };
    let page = events(store, &q).await?;
    let mut out = Vec::with_capacity(page.items.len());
    for e in &page.items {
        if let Some(event) = store.get(e.id).await? {
            out.push(replay_stored(store, loaded, &event, rule).await?);
        }
    }
    let stored: usize = out.iter().map(|r| r.deliveries).sum();
    let detail = format!(
        "{} events{}, {stored} deliveries",
        out.len(),
        rule.map(|r| format!(" through rule {r:?}"))
            .unwrap_or_default()
    );
    let target = format!("events {}", describe_query(&q));
    record(store, who, "replay", target, Some(detail)).await;
    Ok(out)
}

fn describe_query(q: &EventQuery) -> String {
    let mut parts = BTreeMap::new();
    parts.insert("receiver", q.receiver.clone());
    parts.insert("kind", q.kind.clone());
    parts.insert("text", q.text.clone());
    parts.insert("since_ms", q.since_ms.map(|v| v.to_string()));
    parts.insert("until_ms", q.until_ms.map(|v| v.to_string()));
    let shown: Vec<String> = parts
        .into_iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", v?)))
        .collect();
    if shown.is_empty() {
        "(all)".into()
    } else {
        shown.join(" ")
    }
}

/// What the rules loaded now would do with a pasted body (`explain`): nothing is sent and
/// lookups are not run; their answers show as placeholders.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub receiver: String,
    pub kind: String,
    pub dedupe_key: String,
    pub rules: Vec<RuleVerdict>,
}

#[derive(Debug, Serialize)]
pub struct RuleVerdict {
    pub rule: String,
    /// Where the rule starts in the config file.
    pub line: usize,
    pub fires: bool,
    pub why_not: Option<String>,
    pub actions: Vec<ActionPreview>,
}

#[derive(Debug, Serialize)]
pub struct ActionPreview {
    pub index: usize,
    pub kind: &'static str,
    /// The action's own `if`, decided when it runs.
    pub condition: Option<String>,
    /// `as`: the name later actions read its result under.
    pub keeps: Option<String>,
    /// What it would send, as `hookgate explain` prints it.
    pub rendered: Option<String>,
    pub error: Option<String>,
}

/// Parses `body` as receiver `receiver` would store it (nothing is verified: the operator
/// pasted it) and says which rules fire and what each action would send.
pub fn explain(loaded: &Loaded, receiver: &str, body: String) -> Result<Explanation, OperateError> {
    let Some(r) = loaded.receivers.values().find(|r| r.name == receiver) else {
        let mut names: Vec<&str> = loaded.receivers.values().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        return Err(OperateError::Invalid(format!(
            "no receiver named {receiver:?} (receivers: {})",
            names.join(", ")
        )));
    };
    let event = crate::ingress::unverified_event(r, body, now_ms())
        .map_err(|e| OperateError::Invalid(format!("the body does not parse: {e}")))?;
    let rules = &loaded.rules;
    let view = EventView::unstored(&event);
    let mut out = Vec::new();
    for v in rules.verdicts(&view) {
        let rule = &rules.rules()[v.index];
        // Scheduled rules never fire for a received event.
        if rule.schedule.is_some() {
            continue;
        }
        let mut actions = Vec::new();
        if v.why_not.is_none() {
            let ctx = rules.context_with(
                &view,
                minijinja::Value::from(rules.placeholder_steps(&v.rule)),
            );
            for (j, a) in rule.actions.iter().enumerate() {
                let rendered = rules.render_in(&v.rule, j, &ctx, &view);
                actions.push(ActionPreview {
                    index: j,
                    kind: a.action.kind(),
                    condition: a
                        .condition
                        .as_ref()
                        .map(|c| crate::template::condition_expression(c.source()).to_owned()),
                    keeps: a.step.clone(),
                    rendered: rendered.as_ref().ok().map(|r| r.describe()),
                    error: rendered.err().map(|e| e.to_string()),
                });
            }
        }
        out.push(RuleVerdict {
            rule: v.rule,
            line: rule.line,
            fires: v.why_not.is_none(),
            why_not: v.why_not,
            actions,
        });
    }
    Ok(Explanation {
        receiver: view.receiver.to_owned(),
        kind: view.kind.to_owned(),
        dedupe_key: view.dedupe_key.to_owned(),
        rules: out,
    })
}
