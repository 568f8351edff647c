//! `sql`: a query through a `mysql` or `postgres` connection, its `:name` parameters bound
//! from templates (never written into the statement: the statement is the config's, as
//! written). The rows, as JSON objects by column, are its result (`steps.NAME.rows`). It
//! runs in a read-only transaction unless the action says `write = true` (a write-back into a
//! business table), and keeps at most `max_rows` rows.

#[cfg(feature = "server")]
mod send;

use std::collections::BTreeSet;
use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::check::{Check, RawAction};
use super::connection::{Connection, SqlBackend};
use super::render::{RenderError, text};
use crate::template::Template;

pub const KEYS: &[&str] = &["via", "query", "params", "max_rows", "write"];

/// Rows kept when `max_rows` is not given.
const DEFAULT_MAX_ROWS: usize = 100;

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    pub backend: SqlBackend,
    /// The statement as written, with `:name` placeholders.
    pub query: String,
    /// The statement with the backend's placeholders (`$1`, `?`).
    pub positional: String,
    /// The parameter bound to each placeholder of `positional`, in order.
    pub order: Vec<String>,
    pub params: Vec<(String, Template)>,
    pub max_rows: usize,
    pub write: bool,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub via: String,
    pub backend: SqlBackend,
    pub query: String,
    pub positional: String,
    /// The values bound, in placeholder order, with their names.
    pub values: Vec<(String, String)>,
    pub max_rows: usize,
    pub write: bool,
}

impl Spec {
    /// `via` (a mysql or postgres connection), `query`, `params` (name → template),
    /// `max_rows`, `write`.
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let via = c.string(&a.via, &format!("{prefix}.via"));
        let backend = match via.as_deref().map(|v| (v, c.connection(v))) {
            Some((_, Some(Connection::Sql(s)))) => Some(s.backend),
            Some((v, _)) => {
                let s = a.via.as_ref().map(Spanned::span);
                let message = format!("no mysql or postgres connection named {v:?}");
                c.err(s, format!("{prefix}.via"), message);
                None
            }
            None => {
                c.err(
                    Some(table.clone()),
                    format!("{prefix}.via"),
                    "missing (required for kind sql)",
                );
                None
            }
        };
        let query = c.string(&a.query, &format!("{prefix}.query"));
        if query.is_none() && a.query.is_none() {
            c.err(
                Some(table.clone()),
                format!("{prefix}.query"),
                "missing (required for kind sql)",
            );
        }
        let params = c.template_table(&format!("{prefix}.params"), &a.params);
        let max_rows = a
            .max_rows
            .as_ref()
            .map_or(DEFAULT_MAX_ROWS as u64, |m| *m.get_ref());
        if !(1..=10_000).contains(&max_rows) {
            let s = a.max_rows.as_ref().map(Spanned::span);
            c.err(s, format!("{prefix}.max_rows"), "must be 1 to 10000");
        }
        let (query, backend) = (query?, backend?);
        let (positional, order) = match placeholders(&query, backend) {
            Ok(p) => p,
            Err(e) => {
                let s = a.query.as_ref().map(Spanned::span);
                c.err(s, format!("{prefix}.query"), e);
                return None;
            }
        };
        matching_params(c, prefix, a, &order, &params);
        Some(Self {
            via: via?,
            backend,
            query,
            positional,
            order,
            params,
            max_rows: usize::try_from(max_rows).unwrap_or(DEFAULT_MAX_ROWS),
            write: a.write.as_ref().is_some_and(|w| *w.get_ref()),
        })
    }

    /// The statement (not a template, but what the action does) and each parameter.
    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("query".into(), self.query.as_str()));
        for (name, t) in &self.params {
            out.push((format!("params.{name}"), t.source()));
        }
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        let mut values = Vec::with_capacity(self.order.len());
        for name in &self.order {
            let t = self
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| RenderError::Template {
                    field: format!("params.{name}"),
                    reason: "missing".into(),
                })?;
            values.push((name.clone(), text(ctx, &format!("params.{name}"), t)?));
        }
        Ok(Rendered {
            via: self.via.clone(),
            backend: self.backend,
            query: self.query.clone(),
            positional: self.positional.clone(),
            values,
            max_rows: self.max_rows,
            write: self.write,
        })
    }
}

/// Every `:name` of the query has a value in `params`, and every value a `:name`.
fn matching_params(
    c: &mut dyn Check,
    prefix: &str,
    a: &RawAction,
    order: &[String],
    params: &[(String, Template)],
) {
    let used: BTreeSet<&String> = order.iter().collect();
    for name in &used {
        if !params.iter().any(|(n, _)| n == *name) {
            let s = a.query.as_ref().map(Spanned::span);
            let message = format!(":{name} has no value in params");
            c.err(s, format!("{prefix}.query"), message);
        }
    }
    for (name, _) in params {
        if !used.contains(name) {
            let s = a.params.as_ref().map(Spanned::span);
            let message = format!("{name:?} is not a :{name} of the query");
            c.err(s, format!("{prefix}.params"), message);
        }
    }
}

/// The statement with `:name` placeholders replaced by the backend's (`$1` for PostgreSQL,
/// one number per name; `?` for MySQL, one per use), and the names in binding order.
/// Quoted text, quoted identifiers, comments and PostgreSQL's `::` casts are left alone.
pub fn placeholders(query: &str, backend: SqlBackend) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(query.len());
    let mut order: Vec<String> = Vec::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let end = query[i + 1..]
                    .find(c as char)
                    .map(|e| i + 1 + e + 1)
                    .ok_or_else(|| format!("an unclosed {} in the query", c as char))?;
                out.push_str(&query[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = query[i..].find('\n').map_or(bytes.len(), |e| i + e);
                out.push_str(&query[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = query[i + 2..]
                    .find("*/")
                    .map(|e| i + 2 + e + 2)
                    .ok_or("an unclosed /* comment in the query")?;
                out.push_str(&query[i..end]);
                i = end;
            }
            b':' if bytes.get(i + 1) == Some(&b':') => {
                out.push_str("::");
                i += 2;
            }
            b':' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                let len = query[i + 1..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(bytes.len() - i - 1);
                let name = &query[i + 1..i + 1 + len];
                match backend {
                    SqlBackend::Postgres => {
                        let n = match order.iter().position(|o| o == name) {
                            Some(p) => p + 1,
                            None => {
                                order.push(name.to_owned());
                                order.len()
                            }
                        };
                        out.push_str(&format!("${n}"));
                    }
                    SqlBackend::Mysql => {
                        order.push(name.to_owned());
                        out.push('?');
                    }
                }
                i += 1 + len;
            }
            _ => {
                let ch = query[i..].chars().next().unwrap_or_default();
                out.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    Ok((out, order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sql_action_names_its_connection_and_every_parameter() {
        let src = r#"
[connections.db]
kind = "mysql"
url = "mysql://u:p@127.0.0.1/ipaas"
[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1"
from = "a@b.c"
[[receivers]]
name = "w"
vendor = "webhook"
path = "/w"
auth = "none"
[[rules]]
name = "r"
[[rules.actions]]
kind = "sql"
via = "mail"
query = "select 1"
[[rules.actions]]
kind = "sql"
via = "db"
query = "select * from t where a = :a and b = :b"
params = { a = "{{ x }}", c = "y" }
max_rows = 0
[[rules.actions]]
kind = "sql"
via = "db"
"#;
        let errs: Vec<String> = crate::config::parse(src, &|_| None)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        for want in [
            "rules[0].actions[0].via: no mysql or postgres connection named \"mail\"",
            "rules[0].actions[1].query: :b has no value in params",
            "rules[0].actions[1].params: \"c\" is not a :c of the query",
            "rules[0].actions[1].max_rows: must be 1 to 10000",
            "rules[0].actions[2].query: missing (required for kind sql)",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn named_parameters_become_the_backends_placeholders_outside_quotes_and_comments() {
        let q = "select * from t where app = :app and type = :change_type -- :not\n\
                 and note = ':quoted' and x::text = :app /* :nope */ and `:id` = 1";
        let (pg, names) = placeholders(q, SqlBackend::Postgres).unwrap();
        assert_eq!(
            pg,
            "select * from t where app = $1 and type = $2 -- :not\n\
             and note = ':quoted' and x::text = $1 /* :nope */ and `:id` = 1"
        );
        assert_eq!(names, ["app", "change_type"]);
        let (my, names) = placeholders(q, SqlBackend::Mysql).unwrap();
        assert!(
            my.starts_with("select * from t where app = ? and type = ?"),
            "{my}"
        );
        assert_eq!(names, ["app", "change_type", "app"]);
        assert!(placeholders("select ':open", SqlBackend::Mysql).is_err());
        let (s, n) = placeholders("select '中文' as 名, :x", SqlBackend::Mysql).unwrap();
        assert_eq!((s.as_str(), n.len()), ("select '中文' as 名, ?", 1));
    }
}
