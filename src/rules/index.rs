//! Which rules an event can fire, found without trying them all: every rule with a `when`
//! is filed under one of its conditions (the field whose values tell rules apart best, by
//! how many distinct values the rules name for it), by each value it accepts. An event
//! looks up its own value of each filed field and gets the rules filed there, plus the
//! rules with nothing to file (no `when`, or scheduled), in declared order. Each candidate
//! is then checked in full, so the index only ever leaves out rules that cannot fire.
//! The field comparisons a `when` makes live here too.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use crate::config::Rule;

pub(super) struct Index {
    /// Rules every event tries (ascending).
    always: Vec<usize>,
    /// A `when` path, and the rules filed under each value it may have (ascending).
    fields: Vec<(String, HashMap<String, Vec<usize>>)>,
}

impl Index {
    pub(super) fn new(rules: &[Rule]) -> Self {
        // How many distinct values rules name per path: the more, the fewer rules per value.
        let mut distinct: HashMap<&str, HashSet<&str>> = HashMap::new();
        for rule in rules.iter().filter(|r| r.schedule.is_none()) {
            for c in &rule.when {
                let values = distinct.entry(c.path.as_str()).or_default();
                values.extend(c.any_of.iter().map(String::as_str));
            }
        }
        let mut always = Vec::new();
        let mut fields: Vec<(String, HashMap<String, Vec<usize>>)> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let best = rule
                .when
                .iter()
                .filter(|_| rule.schedule.is_none())
                .max_by_key(|c| distinct.get(c.path.as_str()).map_or(0, HashSet::len));
            let Some(c) = best else {
                always.push(i);
                continue;
            };
            let slot = match fields.iter().position(|(p, _)| *p == c.path) {
                Some(s) => s,
                None => {
                    fields.push((c.path.clone(), HashMap::new()));
                    fields.len() - 1
                }
            };
            for v in &c.any_of {
                let list = fields[slot].1.entry(v.clone()).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Self { always, fields }
    }

    /// The rules `fields` can fire, ascending, into `out` (cleared first).
    pub(super) fn candidates(&self, fields: &Map<String, Json>, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.always);
        let mut lists = 0;
        for (path, by_value) in &self.fields {
            let mut take = |v: &Json| {
                let found = match v {
                    Json::String(s) => by_value.get(s.as_str()),
                    Json::Number(n) => by_value.get(n.to_string().as_str()),
                    Json::Bool(b) => by_value.get(if *b { "true" } else { "false" }),
                    _ => None,
                };
                if let Some(list) = found {
                    out.extend_from_slice(list);
                    lists += 1;
                }
            };
            match lookup(fields, path) {
                Some(Json::Array(items)) => items.iter().for_each(&mut take),
                Some(v) => take(v),
                None => {}
            }
        }
        if lists > 0 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

/// Whether the field at a dotted path equals one of the values, compared as text; an array
/// matches if any of its items does (repeated XML elements).
pub(super) fn field_matches(fields: &Map<String, Json>, path: &str, any_of: &[String]) -> bool {
    match lookup(fields, path) {
        Some(Json::Array(items)) => items.iter().any(|v| scalar_in(v, any_of)),
        Some(v) => scalar_in(v, any_of),
        None => false,
    }
}

/// The value at a dotted path.
pub(super) fn lookup<'a>(fields: &'a Map<String, Json>, path: &str) -> Option<&'a Json> {
    if !path.contains('.') {
        return fields.get(path);
    }
    let mut parts = path.split('.');
    let mut value = fields.get(parts.next()?);
    for p in parts {
        value = value.and_then(|v| v.get(p));
    }
    value
}

fn scalar_in(value: &Json, any_of: &[String]) -> bool {
    match value {
        Json::String(s) => any_of.iter().any(|a| a == s),
        Json::Number(n) => any_of.contains(&n.to_string()),
        Json::Bool(b) => any_of
            .iter()
            .any(|a| a == if *b { "true" } else { "false" }),
        _ => false,
    }
}
