//! What a delivery needs of its rule when it runs: the context with `steps` (what the
//! rule's earlier actions kept) and `now`, the action's own `if`, rendering in that context,
//! and for `explain` the steps not run as placeholders.

use std::collections::BTreeMap;

use minijinja::Value;
use serde_json::Value as Json;

use super::{EventView, RenderError, Rendered, RuleSet};
use crate::config::{Rule, RuleAction};

impl RuleSet {
    /// The context an action sees when it runs: the event's, plus `steps` (what the rule's
    /// earlier actions kept with `as`) and `now` (epoch milliseconds as it runs, for the
    /// timestamps other systems' request signatures carry).
    pub fn run_context(&self, ev: &EventView<'_>, steps: &Json) -> Value {
        self.context_with(ev, Value::from(minijinja::value::Serde(steps)))
    }

    /// [`RuleSet::run_context`] with `steps` as template values (`explain` shows steps not
    /// run as [`crate::template::Placeholder`]s).
    pub fn context_with(&self, ev: &EventView<'_>, steps: Value) -> Value {
        let now = jiff::Timestamp::now().as_millisecond();
        let base = Value::from(minijinja::value::Serde(self.context(ev)));
        minijinja::context! { steps => steps, now => now, ..base }
    }

    /// `steps` for `explain`: each `as` name of the rule a placeholder.
    pub fn placeholder_steps(&self, rule: &str) -> BTreeMap<String, Value> {
        self.steps_before(rule, usize::MAX)
            .into_iter()
            .map(|(_, name)| {
                let path = format!("steps.{name}");
                (
                    name.to_owned(),
                    Value::from_object(crate::template::Placeholder(path)),
                )
            })
            .collect()
    }

    /// Renders one action in a context from [`RuleSet::run_context`].
    pub fn render_in(
        &self,
        rule: &str,
        action: usize,
        ctx: &Value,
        ev: &EventView<'_>,
    ) -> Result<Rendered, RenderError> {
        let (_, spec) = self.action(rule, action).ok_or_else(|| RenderError::Gone {
            rule: rule.to_owned(),
            action,
        })?;
        spec.render(ctx, ev)
    }

    /// Whether the action's own `if` holds now (`Ok(true)` without one); `Err` when it
    /// fails to evaluate.
    pub fn action_holds(&self, rule: &str, action: usize, ctx: &Value) -> Result<bool, String> {
        let condition = self
            .rule_action(rule, action)
            .and_then(|a| a.condition.as_ref());
        match condition {
            Some(c) => c.holds(ctx),
            None => Ok(true),
        }
    }

    /// The `as` names of the actions of `rule` before `action`, by index.
    pub fn steps_before(&self, rule: &str, action: usize) -> Vec<(usize, &str)> {
        self.rule(rule)
            .map(|r| {
                r.actions
                    .iter()
                    .enumerate()
                    .take(action)
                    .filter_map(|(i, a)| Some((i, a.step.as_deref()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the action keeps its result (`as`).
    pub fn keeps(&self, rule: &str, action: usize) -> bool {
        self.rule_action(rule, action)
            .is_some_and(|a| a.step.is_some())
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules().iter().find(|r| r.name == name)
    }

    fn rule_action(&self, rule: &str, action: usize) -> Option<&RuleAction> {
        self.rule(rule)?.actions.get(action)
    }
}
