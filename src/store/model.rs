//! Model test of the delivery state machine (waiting → pending → running → done | pending
//! (retry, defer) | dead; the next action of a rule leaves waiting when its predecessor is
//! done and is skipped (dead) when it dies; running → pending on restart; dead → pending or
//! waiting on requeue): random sequences of operations run against the real store (SQLite
//! and PostgreSQL) and a plain in-memory model, compared after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::Backend;
use super::{DeliveryFilter, DeliveryStatus, NewDelivery, Outcome, RequeueTarget, Store};
use crate::config::StoreConfig;
use crate::crypto::Verified;
use crate::event::{Event, Vendor};

#[derive(Debug, Clone)]
enum Op {
    /// A new event (or a vendor retry of event `key`) with `actions` deliveries.
    Accept {
        key: u8,
        actions: u8,
    },
    Advance {
        ms: i64,
    },
    Claim {
        limit: u8,
    },
    /// Finish the `nth` running delivery (if any) this way.
    Finish {
        nth: u8,
        how: u8,
        delay: i64,
    },
    Restart,
    RequeueDead,
    /// `deliveries retry ID` on the `nth` dead delivery.
    RequeueOne {
        nth: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, 0u8..3).prop_map(|(key, actions)| Op::Accept { key, actions }),
        2 => (0i64..5_000).prop_map(|ms| Op::Advance { ms }),
        3 => (1u8..4).prop_map(|limit| Op::Claim { limit }),
        4 => (0u8..4, 0u8..4, 0i64..3_000).prop_map(|(nth, how, delay)| Op::Finish { nth, how, delay }),
        1 => Just(Op::Restart),
        1 => Just(Op::RequeueDead),
        1 => (0u8..4).prop_map(|nth| Op::RequeueOne { nth }),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    status: DeliveryStatus,
    attempts: u32,
    next_at: i64,
}

/// Model-only bookkeeping beside each row.
#[derive(Debug, Clone, Default)]
struct Links {
    after: Option<i64>,
    skipped: bool,
}

#[derive(Default)]
struct Model {
    events: BTreeMap<u8, Vec<i64>>,
    rows: BTreeMap<i64, Row>,
    links: BTreeMap<i64, Links>,
    next_id: i64,
}

impl Model {
    fn due(&self, now: i64, limit: usize) -> Vec<i64> {
        let mut due: Vec<(i64, i64)> = self
            .rows
            .iter()
            .filter(|(_, r)| r.status == DeliveryStatus::Pending && r.next_at <= now)
            .map(|(id, r)| (r.next_at, *id))
            .collect();
        due.sort();
        due.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    fn successor(&self, id: i64) -> Option<i64> {
        self.links
            .iter()
            .find(|(_, l)| l.after == Some(id))
            .map(|(s, _)| *s)
    }

    fn unskip(&mut self, id: i64) {
        let mut next = id;
        while let Some(s) = self.successor(next) {
            if !(self.links[&s].skipped && self.rows[&s].status == DeliveryStatus::Dead) {
                break;
            }
            self.rows.get_mut(&s).unwrap().status = DeliveryStatus::Waiting;
            self.links.get_mut(&s).unwrap().skipped = false;
            next = s;
        }
    }

    fn running(&self) -> Vec<i64> {
        self.rows
            .iter()
            .filter(|(_, r)| r.status == DeliveryStatus::Running)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn event(key: u8, now: i64) -> Event {
    let xml = format!("<xml><MsgType>text</MsgType><MsgId>{key}</MsgId></xml>");
    Event::parse("r", Vendor::WeCom, Verified::new(xml), now).unwrap()
}

/// A PostgreSQL claim's lease in the model: a restart comes later than this, so the claims
/// of the process that "died" have lapsed (SQLite frees them at start anyway).
const LEASE_MS: i64 = 1_000;

fn run(backend: Backend, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        lease: std::time::Duration::from_millis(LEASE_MS as u64),
        ..backend.config(dir.path(), "model")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = Store::open(&config).await.unwrap();
        let mut model = Model::default();
        let mut now = 1_000_000i64;
        for op in ops {
            match op {
                Op::Accept { key, actions } => {
                    let deliveries = (0..actions)
                        .map(|a| NewDelivery {
                            spec: None,
                            rule: "r".into(),
                            action: a.into(),
                            kind: "log".into(),
                            due_ms: now,
                            key: None,
                            deadline_ms: i64::MAX,
                        })
                        .collect();
                    let stored = store
                        .accept(event(key, now), deliveries, Vec::new())
                        .await
                        .unwrap();
                    let known = model.events.contains_key(&key);
                    assert_eq!(stored.duplicate, known, "{key}");
                    if !known {
                        let mut ids: Vec<i64> = Vec::new();
                        for _ in 0..actions {
                            model.next_id += 1;
                            let after = ids.last().copied();
                            ids.push(model.next_id);
                            model.rows.insert(
                                model.next_id,
                                Row {
                                    status: if after.is_some() {
                                        DeliveryStatus::Waiting
                                    } else {
                                        DeliveryStatus::Pending
                                    },
                                    attempts: 0,
                                    next_at: now,
                                },
                            );
                            model.links.insert(
                                model.next_id,
                                Links {
                                    after,
                                    skipped: false,
                                },
                            );
                        }
                        model.events.insert(key, ids);
                    }
                }
                Op::Advance { ms } => now += ms,
                Op::Claim { limit } => {
                    let want = model.due(now, limit.into());
                    let got: Vec<i64> = store
                        .claim(now, limit.into())
                        .await
                        .unwrap()
                        .iter()
                        .map(|d| d.id)
                        .collect();
                    let mut sorted = want.clone();
                    sorted.sort();
                    assert_eq!(got, sorted, "claim at {now}");
                    for id in want {
                        let r = model.rows.get_mut(&id).unwrap();
                        r.status = DeliveryStatus::Running;
                        r.attempts += 1;
                    }
                }
                Op::Finish { nth, how, delay } => {
                    let running = model.running();
                    let Some(&id) = running.get(usize::from(nth) % running.len().max(1)) else {
                        continue;
                    };
                    let outcome = match how {
                        0 => Outcome::Done,
                        1 => Outcome::Retry {
                            at_ms: now + delay,
                            error: "e".into(),
                        },
                        2 => Outcome::Defer { at_ms: now + delay },
                        _ => Outcome::Dead { error: "e".into() },
                    };
                    store.finish(id, outcome.clone(), now).await.unwrap();
                    let r = model.rows.get_mut(&id).unwrap();
                    match outcome {
                        Outcome::Done => {
                            r.status = DeliveryStatus::Done;
                            if let Some(s) = model.successor(id) {
                                let s = model.rows.get_mut(&s).unwrap();
                                if s.status == DeliveryStatus::Waiting {
                                    s.status = DeliveryStatus::Pending;
                                    s.next_at = now;
                                }
                            }
                        }
                        Outcome::Retry { at_ms, .. } => {
                            r.status = DeliveryStatus::Pending;
                            r.next_at = at_ms;
                        }
                        Outcome::Defer { at_ms } => {
                            r.status = DeliveryStatus::Pending;
                            r.next_at = at_ms;
                            r.attempts = r.attempts.saturating_sub(1);
                        }
                        Outcome::Dead { .. } => {
                            r.status = DeliveryStatus::Dead;
                            let mut next = id;
                            while let Some(s) = model.successor(next) {
                                if model.rows[&s].status != DeliveryStatus::Waiting {
                                    break;
                                }
                                model.rows.get_mut(&s).unwrap().status = DeliveryStatus::Dead;
                                model.links.get_mut(&s).unwrap().skipped = true;
                                next = s;
                            }
                        }
                    }
                }
                Op::Restart => {
                    drop(store);
                    store = Store::open(&config).await.unwrap();
                    now += LEASE_MS + 1;
                    store.requeue(RequeueTarget::Running, now, 0).await.unwrap();
                    for r in model.rows.values_mut() {
                        if r.status == DeliveryStatus::Running {
                            r.status = DeliveryStatus::Pending;
                            r.next_at = now;
                        }
                    }
                }
                Op::RequeueOne { nth } => {
                    let dead: Vec<i64> = model
                        .rows
                        .iter()
                        .filter(|(_, r)| r.status == DeliveryStatus::Dead)
                        .map(|(id, _)| *id)
                        .collect();
                    let Some(&id) = dead.get(usize::from(nth) % dead.len().max(1)) else {
                        continue;
                    };
                    let n = store
                        .requeue(RequeueTarget::Id(id), now, i64::MAX)
                        .await
                        .unwrap();
                    assert_eq!(n, 1);
                    let skipped = model.links[&id].skipped;
                    let r = model.rows.get_mut(&id).unwrap();
                    r.status = if skipped {
                        DeliveryStatus::Waiting
                    } else {
                        DeliveryStatus::Pending
                    };
                    r.next_at = now;
                    model.links.get_mut(&id).unwrap().skipped = false;
                    model.unskip(id);
                }
                Op::RequeueDead => {
                    let n = store
                        .requeue(RequeueTarget::AllDead, now, i64::MAX)
                        .await
                        .unwrap();
                    let mut m = 0;
                    for (id, r) in model.rows.iter_mut() {
                        if r.status == DeliveryStatus::Dead {
                            let l = model.links.get_mut(id).unwrap();
                            r.status = if l.skipped {
                                DeliveryStatus::Waiting
                            } else {
                                DeliveryStatus::Pending
                            };
                            l.skipped = false;
                            r.next_at = now;
                            m += 1;
                        }
                    }
                    assert_eq!(n, m);
                }
            }
            let rows: BTreeMap<i64, Row> = store
                .deliveries(&DeliveryFilter {
                    limit: 10_000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|d| {
                    (
                        d.id,
                        Row {
                            status: d.status,
                            attempts: d.attempts,
                            next_at: d.next_attempt_at_ms,
                        },
                    )
                })
                .collect();
            assert_eq!(rows, model.rows);
            assert_eq!(
                store.next_due().await.unwrap(),
                model
                    .rows
                    .values()
                    .filter(|r| r.status == DeliveryStatus::Pending)
                    .map(|r| r.next_at)
                    .min()
            );
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_follows_the_delivery_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(Backend::Sqlite, ops);
    }

    #[test]
    fn postgres_follows_the_delivery_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(Backend::Postgres, ops);
    }
}
