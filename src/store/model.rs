//! Model test of the delivery state machine (waiting → pending → running → done | pending
//! (retry, defer) | dead; the next action of a rule leaves waiting when its predecessor is
//! done and is skipped (dead) when it dies; running → pending on restart; dead → pending or
//! waiting on requeue): random sequences of operations run against the real store (SQLite
//! and PostgreSQL) and a plain in-memory model, compared after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::Backend;
use super::{DeliveryFilter, DeliveryStatus, NewDelivery, Outcome, RequeueTarget, Store};
use crate::crypto::Verified;
use crate::event::{Event, Vendor};
use crate::store::StoreConfig;

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
        4 => (0u8..4, 0u8..5, 0i64..3_000).prop_map(|(nth, how, delay)| Op::Finish { nth, how, delay }),
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

impl Model {
    /// A new event with `actions` deliveries, each waiting for the one before it; whether it
    /// was already there.
    fn accept(&mut self, key: u8, actions: u8, now: i64) -> bool {
        if self.events.contains_key(&key) {
            return true;
        }
        let mut ids: Vec<i64> = Vec::new();
        for _ in 0..actions {
            self.next_id += 1;
            let after = ids.last().copied();
            ids.push(self.next_id);
            let status = if after.is_some() {
                DeliveryStatus::Waiting
            } else {
                DeliveryStatus::Pending
            };
            self.rows.insert(
                self.next_id,
                Row {
                    status,
                    attempts: 0,
                    next_at: now,
                },
            );
            self.links.insert(
                self.next_id,
                Links {
                    after,
                    skipped: false,
                },
            );
        }
        self.events.insert(key, ids);
        false
    }

    fn finish(&mut self, id: i64, outcome: &Outcome, now: i64) {
        let r = self.rows.get_mut(&id).unwrap();
        match outcome {
            Outcome::Done { .. } => {
                r.status = DeliveryStatus::Done;
                if let Some(s) = self.successor(id) {
                    let s = self.rows.get_mut(&s).unwrap();
                    if s.status == DeliveryStatus::Waiting {
                        s.status = DeliveryStatus::Pending;
                        s.next_at = now;
                    }
                }
            }
            Outcome::Retry { at_ms, .. } => {
                r.status = DeliveryStatus::Pending;
                r.next_at = *at_ms;
            }
            Outcome::Defer { at_ms } => {
                r.status = DeliveryStatus::Pending;
                r.next_at = *at_ms;
                r.attempts = r.attempts.saturating_sub(1);
            }
            Outcome::Skipped { .. } => {
                r.status = DeliveryStatus::Skipped;
                let mut next = id;
                while let Some(s) = self.successor(next) {
                    if self.rows[&s].status != DeliveryStatus::Waiting {
                        break;
                    }
                    self.rows.get_mut(&s).unwrap().status = DeliveryStatus::Skipped;
                    next = s;
                }
            }
            Outcome::Dead { .. } => {
                r.status = DeliveryStatus::Dead;
                let mut next = id;
                while let Some(s) = self.successor(next) {
                    if self.rows[&s].status != DeliveryStatus::Waiting {
                        break;
                    }
                    self.rows.get_mut(&s).unwrap().status = DeliveryStatus::Dead;
                    self.links.get_mut(&s).unwrap().skipped = true;
                    next = s;
                }
            }
        }
    }

    /// Dead `id` runs again: a skipped one waits for its predecessor again.
    fn requeue_one(&mut self, id: i64, now: i64) {
        let skipped = self.links[&id].skipped;
        let r = self.rows.get_mut(&id).unwrap();
        r.status = if skipped {
            DeliveryStatus::Waiting
        } else {
            DeliveryStatus::Pending
        };
        r.next_at = now;
        self.links.get_mut(&id).unwrap().skipped = false;
        self.unskip(id);
    }

    /// Every dead one runs again; how many.
    fn requeue_dead(&mut self, now: i64) -> usize {
        let mut n = 0;
        for (id, r) in self.rows.iter_mut() {
            if r.status == DeliveryStatus::Dead {
                let l = self.links.get_mut(id).unwrap();
                r.status = if l.skipped {
                    DeliveryStatus::Waiting
                } else {
                    DeliveryStatus::Pending
                };
                l.skipped = false;
                r.next_at = now;
                n += 1;
            }
        }
        n
    }

    fn dead(&self) -> Vec<i64> {
        self.rows
            .iter()
            .filter(|(_, r)| r.status == DeliveryStatus::Dead)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn deliveries(actions: u8, now: i64) -> Vec<NewDelivery> {
    (0..actions)
        .map(|a| NewDelivery {
            spec: None,
            rule: "r".into(),
            action: a.into(),
            kind: "log".into(),
            due_ms: now,
            key: None,
            deadline_ms: i64::MAX,
        })
        .collect()
}

fn outcome(how: u8, now: i64, delay: i64) -> Outcome {
    match how {
        0 => Outcome::Done { result: None },
        1 => Outcome::Retry {
            at_ms: now + delay,
            error: "e".into(),
        },
        2 => Outcome::Defer { at_ms: now + delay },
        3 => Outcome::Skipped { reason: "r".into() },
        _ => Outcome::Dead { error: "e".into() },
    }
}

/// The store holds exactly the model's rows, and its next due time is the model's.
async fn check(store: &Store, model: &Model) {
    let rows: BTreeMap<i64, Row> = store
        .deliveries(&DeliveryFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let row = Row {
                status: d.status,
                attempts: d.attempts,
                next_at: d.next_attempt_at_ms,
            };
            (d.id, row)
        })
        .collect();
    assert_eq!(rows, model.rows);
    let due = model
        .rows
        .values()
        .filter(|r| r.status == DeliveryStatus::Pending)
        .map(|r| r.next_at)
        .min();
    assert_eq!(store.next_due().await.unwrap(), due);
}

/// Runs `op` on the store and the model (a restart is [`run`]'s: it replaces the store).
async fn step(store: &Store, model: &mut Model, now: &mut i64, op: Op) {
    match op {
        Op::Accept { key, actions } => {
            let stored = store
                .accept(event(key, *now), deliveries(actions, *now), Vec::new())
                .await
                .unwrap();
            let known = model.accept(key, actions, *now);
            assert_eq!(stored.duplicate, known, "{key}");
        }
        Op::Advance { ms } => *now += ms,
        Op::Claim { limit } => {
            let want = model.due(*now, limit.into());
            let claimed = store.claim(*now, limit.into()).await.unwrap();
            let got: Vec<i64> = claimed.iter().map(|d| d.id).collect();
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
                return;
            };
            let outcome = outcome(how, *now, delay);
            store.finish(id, outcome.clone(), *now).await.unwrap();
            model.finish(id, &outcome, *now);
        }
        Op::Restart => {
            *now += LEASE_MS + 1;
            store
                .requeue(RequeueTarget::Running, *now, 0)
                .await
                .unwrap();
            for r in model.rows.values_mut() {
                if r.status == DeliveryStatus::Running {
                    r.status = DeliveryStatus::Pending;
                    r.next_at = *now;
                }
            }
        }
        Op::RequeueOne { nth } => {
            let dead = model.dead();
            let Some(&id) = dead.get(usize::from(nth) % dead.len().max(1)) else {
                return;
            };
            let n = store
                .requeue(RequeueTarget::Id(id), *now, i64::MAX)
                .await
                .unwrap();
            assert_eq!(n, 1);
            model.requeue_one(id, *now);
        }
        Op::RequeueDead => {
            let n = store
                .requeue(RequeueTarget::AllDead, *now, i64::MAX)
                .await
                .unwrap();
            assert_eq!(n, model.requeue_dead(*now));
        }
    }
}

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
            if matches!(op, Op::Restart) {
                drop(store);
                store = Store::open(&config).await.unwrap();
            }
            step(&store, &mut model, &mut now, op).await;
            check(&store, &model).await;
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
