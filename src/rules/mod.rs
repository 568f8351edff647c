//! Rules: which events fire which actions, and rendering an action's templates for an
//! event. Matching runs on the callback path before the event is stored (one delivery
//! per matched action goes into the same transaction); rendering runs in the delivery worker,
//! when the event has its id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use minijinja::Value;
use serde_json::{Map, Value as Json};

use crate::actions::Destination;
use crate::config::{Action, Config, Rule, RuleAction};
use crate::event::Vendor;
use crate::template::Template;
pub use crate::template::{EventView, MAX_RENDERED};
pub use crate::time::parse_time;

pub use crate::actions::{RenderError, Rendered};

mod index;
mod run;

use index::{field_matches, lookup};

/// Why a rule does or does not fire, cheap to make.
enum Check {
    Fires,
    Receiver,
    /// A scheduled rule and a received event, or a slot of another rule (or the reverse).
    Clock,
    /// The index of the first `when` condition that failed.
    When(usize),
    IfFalse,
    IfFailed(String),
}

/// Whether one rule fires for an event (`hookgate explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub index: usize,
    pub rule: String,
    pub fired: bool,
    pub why_not: Option<String>,
}

/// One action a rule selected for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub rule: String,
    pub action: usize,
    pub kind: &'static str,
    /// The action's fingerprint ([`crate::config::Action::fingerprint`]).
    pub spec: String,
    /// `after = …`: how long after the event it runs.
    pub delay: Option<std::time::Duration>,
    /// The rendered `key` (a `cancel` calls off pending deliveries with the same key).
    pub key: Option<String>,
    /// The rendered `at = …`: when it runs (see [`parse_time`]).
    pub at: Option<String>,
    /// For a `cancel`: the rules whose deliveries it calls off (empty: all).
    pub cancel: Option<Vec<String>>,
}

/// The rules of one config (their templates were compiled when the config was validated).
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Each action's fingerprint, by rule and action index (computed once).
    specs: Vec<Vec<String>>,
    /// Each action's destination (`None`: it runs here), by rule and action index.
    destinations: Vec<Vec<Option<Arc<str>>>>,
    /// Each rule's index by its name (names are unique): every delivery looks its rule up.
    by_name: HashMap<String, usize>,
    tables: Json,
    /// The rules an event can fire, by a field of their `when`.
    index: index::Index,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl RuleSet {
    pub fn new(config: &Config) -> Self {
        let tables = serde_json::to_value(&config.tables).unwrap_or(Json::Null);
        let specs = config
            .rules
            .iter()
            .map(|r| r.actions.iter().map(|a| a.action.fingerprint()).collect())
            .collect();
        let destinations = config
            .rules
            .iter()
            .map(|r| {
                let own = |j| Arc::from(format!("rule {:?} action {j}", r.name));
                (r.actions.iter().enumerate())
                    .map(|(j, a)| match a.action.destination() {
                        Destination::Local => None,
                        Destination::Named(name) => Some(Arc::from(name)),
                        Destination::ThisAction => Some(own(j)),
                    })
                    .collect()
            })
            .collect();
        let by_name = (config.rules.iter().enumerate())
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        Self {
            specs,
            destinations,
            by_name,
            index: index::Index::new(&config.rules),
            rules: config.rules.clone(),
            tables,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The context templates see: the event's fields at the top level, `event` (the fields'
    /// own `event` object, if any, with `id`, `receiver`, `vendor`, `kind`, `dedupe_key` and
    /// `received_at` laid over it), `fields` (all fields), and `tables`.
    pub fn context(&self, ev: &EventView<'_>) -> Json {
        ev.context(&self.tables)
    }

    /// Every action that fires for the event, in file order, honouring `stop`. A condition
    /// that fails to evaluate does not match (and is logged). This runs on the callback path:
    /// nothing is formatted for rules that do not fire.
    pub fn matching(&self, ev: &EventView<'_>) -> Vec<Match> {
        let mut out = Vec::new();
        let mut ctx: Option<Value> = None;
        // Only the rules the index says can fire are tried, in declared order: the others'
        // `when` cannot hold.
        let mut candidates = Vec::new();
        self.index.candidates(ev.fields, &mut candidates);
        for i in candidates {
            let rule = &self.rules[i];
            if !matches!(self.check(rule, ev, &mut ctx), Check::Fires) {
                continue;
            }
            for (j, a) in rule.actions.iter().enumerate() {
                out.push(self.planned(i, j, rule, a, ev, &mut ctx));
            }
            if rule.stop {
                break;
            }
        }
        out
    }

    /// What one action of a firing rule plans: its key and `at` rendered (a failure is
    /// logged: no key, or at once), its delay and fingerprint.
    fn planned(
        &self,
        i: usize,
        j: usize,
        rule: &Rule,
        a: &RuleAction,
        ev: &EventView<'_>,
        ctx: &mut Option<Value>,
    ) -> Match {
        let mut render = |t: &Template| {
            let ctx =
                ctx.get_or_insert_with(|| Value::from(minijinja::value::Serde(self.context(ev))));
            t.render(ctx)
        };
        let key = a.key.as_ref().and_then(|t| match render(t) {
            Ok(k) if !k.trim().is_empty() => Some(k),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(rule = %rule.name, action = j, error = %e, "Action key did not render; no key.");
                None
            }
        });
        let at = a.at.as_ref().and_then(|t| match render(t) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(rule = %rule.name, action = j, error = %e, "`at` did not render; the action runs at once.");
                None
            }
        });
        Match {
            rule: rule.name.clone(),
            action: j,
            kind: a.action.kind(),
            spec: self.specs[i][j].clone(),
            delay: a.delay,
            key,
            at,
            cancel: match &a.action {
                Action::Cancel(c) => Some(c.rules.clone()),
                _ => None,
            },
        }
    }

    /// Whether each rule fires for the event and, if not, why; rules after a firing `stop`
    /// rule are not considered (and not listed).
    pub fn verdicts(&self, ev: &EventView<'_>) -> Vec<Verdict> {
        let mut out = Vec::new();
        let mut ctx: Option<Value> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let why_not = match self.check(rule, ev, &mut ctx) {
                Check::Fires => None,
                Check::Clock
                    if rule.schedule.is_some() && ev.vendor == Vendor::Schedule.as_str() =>
                {
                    Some(format!("this is a slot of rule {:?}", ev.kind))
                }
                Check::Clock if rule.schedule.is_some() => {
                    Some("it fires on its schedule, not on received events".into())
                }
                Check::Clock => Some("it fires on received events, not on a schedule".into()),
                Check::Receiver => Some(format!(
                    "receiver {:?} is not in {:?}",
                    ev.receiver,
                    rule.receivers.as_deref().unwrap_or_default()
                )),
                Check::When(c) => {
                    let c = &rule.when[c];
                    let actual = lookup(ev.fields, &c.path)
                        .map_or_else(|| "missing".to_owned(), |v| v.to_string());
                    Some(format!(
                        "when.{} is {actual}, not one of {:?}",
                        c.path, c.any_of
                    ))
                }
                Check::IfFalse => Some("if is false".into()),
                Check::IfFailed(e) => Some(format!("if failed: {e}")),
            };
            let fired = why_not.is_none();
            out.push(Verdict {
                index: i,
                rule: rule.name.clone(),
                fired,
                why_not,
            });
            if fired && rule.stop {
                break;
            }
        }
        out
    }

    fn check(&self, rule: &Rule, ev: &EventView<'_>, ctx: &mut Option<Value>) -> Check {
        // A slot's event is its own rule's, whose kind is the rule's name.
        let slot = ev.vendor == Vendor::Schedule.as_str();
        if slot != rule.schedule.is_some() || (slot && ev.kind != rule.name) {
            return Check::Clock;
        }
        if let Some(receivers) = &rule.receivers
            && !receivers.iter().any(|r| r == ev.receiver)
        {
            return Check::Receiver;
        }
        if let Some(c) = rule
            .when
            .iter()
            .position(|c| !field_matches(ev.fields, &c.path, &c.any_of))
        {
            return Check::When(c);
        }
        if let Some(condition) = &rule.condition {
            let ctx =
                ctx.get_or_insert_with(|| Value::from(minijinja::value::Serde(self.context(ev))));
            match condition.holds(ctx) {
                Ok(true) => {}
                Ok(false) => return Check::IfFalse,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "Rule condition failed; the rule does not fire.");
                    return Check::IfFailed(e);
                }
            }
        }
        Check::Fires
    }

    /// The fingerprint of the action now at `rule`'s index `action`, if there is one.
    pub fn spec(&self, rule: &str, action: usize) -> Option<&str> {
        let i = self.position(rule)?;
        self.specs[i].get(action).map(String::as_str)
    }

    /// The index of the rule named `rule`, if the config still has it.
    fn position(&self, rule: &str) -> Option<usize> {
        self.by_name.get(rule).copied()
    }

    /// Where the action at `rule`'s index `action` sends; `None` when it runs here (or the
    /// config no longer has it).
    pub fn destination(&self, rule: &str, action: usize) -> Option<&Arc<str>> {
        let i = self.position(rule)?;
        self.destinations[i].get(action)?.as_ref()
    }

    /// The rule's index and its action, if the config still has them.
    pub fn action(&self, rule: &str, action: usize) -> Option<(usize, &Action)> {
        let i = self.position(rule)?;
        Some((i, &self.rules[i].actions.get(action)?.action))
    }

    /// Renders one action for an event (before any step has run: `steps` is empty).
    pub fn render(
        &self,
        rule: &str,
        action: usize,
        ev: &EventView<'_>,
    ) -> Result<Rendered, RenderError> {
        let ctx = self.run_context(ev, &Json::Object(Map::new()));
        self.render_in(rule, action, &ctx, ev)
    }
}

/// `BTreeMap` of tables as the config keeps them.
pub type Tables = BTreeMap<String, BTreeMap<String, Json>>;

#[cfg(test)]
mod tests;
