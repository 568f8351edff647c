//! `api`: any API of a WeCom or DingTalk app, through its connection with the managed access
//! token added ("call any API with the token" rather than one wrapper per endpoint): a
//! method, a `path` on the vendor's API host (the host is the connection's, never the
//! event's), query `params` and a `json` body, all templates. Vendor errcodes are classified
//! as for every app action. The answer (or the part `keep` picks) is its result.

#[cfg(feature = "server")]
mod send;

use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::app::{self, AppVendor};
use super::check::{Check, RawAction};
use super::http::{PathStep, parse_path};
use super::render::{RenderError, json, text};
use crate::template::{JsonTemplate, Template};

pub const KEYS: &[&str] = &["via", "method", "path", "params", "json", "keep"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub via: String,
    pub vendor: AppVendor,
    pub method: String,
    pub path: Template,
    pub params: Vec<(String, Template)>,
    pub json: Option<JsonTemplate>,
    pub keep: Option<Vec<PathStep>>,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub via: String,
    pub vendor: AppVendor,
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub json: Option<serde_json::Value>,
    pub keep: Option<Vec<PathStep>>,
}

impl Spec {
    /// `via`, `method` (GET or POST; default POST with a `json` body, else GET), `path`
    /// (starting with `/`), `params`, `json`, `keep`.
    pub fn validate(
        c: &mut dyn Check,
        prefix: &str,
        a: &RawAction,
        table: &Range<usize>,
    ) -> Option<Self> {
        let (via, vendor) = app::via(c, prefix, a, table);
        let path = c.required_template(prefix, "path", &a.path, table, "api");
        if let Some(p) = &a.path
            && !p.get_ref().starts_with('/')
        {
            let message = "a path on the connection's API host, starting with /";
            c.err(Some(p.span()), format!("{prefix}.path"), message);
        }
        let json = a
            .json
            .as_ref()
            .and_then(|j| c.json_template(&format!("{prefix}.json"), j.span(), j.get_ref()));
        let default = if a.json.is_some() { "POST" } else { "GET" };
        let method = c
            .string(&a.method, &format!("{prefix}.method"))
            .unwrap_or_else(|| default.into())
            .to_ascii_uppercase();
        if !["GET", "POST"].contains(&method.as_str()) {
            let s = a.method.as_ref().map(Spanned::span);
            let message = format!("{method:?} is not one of GET, POST");
            c.err(s, format!("{prefix}.method"), message);
        }
        let params = c.template_table(&format!("{prefix}.params"), &a.params);
        let keep = a.keep.as_ref().and_then(|k| match parse_path(k.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                c.err(Some(k.span()), format!("{prefix}.keep"), e);
                None
            }
        });
        Some(Self {
            via: via?,
            vendor: vendor?,
            method,
            path: path?,
            params,
            json,
            keep,
        })
    }

    pub fn templates<'a>(&'a self, out: &mut Vec<(String, &'a str)>) {
        out.push(("method".into(), self.method.as_str()));
        out.push(("path".into(), self.path.source()));
        for (name, t) in &self.params {
            out.push((format!("params.{name}"), t.source()));
        }
        if let Some(j) = &self.json {
            j.templates("json".into(), out);
        }
    }

    pub fn render(&self, ctx: &Value) -> Result<Rendered, RenderError> {
        let path = text(ctx, "path", &self.path)?;
        // Event data may fill the path, never leave the connection's host.
        if !path.starts_with('/') || path.contains(['#', ' ', '\n', '\\']) || path.contains("//") {
            return Err(RenderError::Template {
                field: "path".into(),
                reason: format!("{path:?} is not a path on the API host"),
            });
        }
        let mut params = Vec::with_capacity(self.params.len());
        for (name, t) in &self.params {
            params.push((name.clone(), text(ctx, &format!("params.{name}"), t)?));
        }
        Ok(Rendered {
            via: self.via.clone(),
            vendor: self.vendor,
            method: self.method.clone(),
            path,
            params,
            json: self
                .json
                .as_ref()
                .map(|j| json(ctx, "json", j))
                .transpose()?,
            keep: self.keep.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_api_call_stays_on_its_connections_host() {
        let src = r#"
[connections.ding]
kind = "dingtalk"
app_key = "k"
app_secret = "s"
[[receivers]]
name = "w"
vendor = "webhook"
path = "/w"
auth = "none"
[[rules]]
name = "r"
[[rules.actions]]
kind = "api"
via = "ding"
path = "https://evil.example.com/x"
method = "PUT"
[[rules.actions]]
kind = "api"
via = "ding"
path = "/v1.0/contact/users/{{ userId }}"
"#;
        let errs: Vec<String> = crate::config::parse(src, &|_| None)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errs.iter().any(
                |e| e.contains("rules[0].actions[0].path: a path on the connection's API host")
            ),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("rules[0].actions[0].method: \"PUT\" is not one of GET, POST")),
            "{errs:#?}"
        );
        // Event data fills the path, but cannot leave the host.
        let ok = src.split("[[rules.actions]]").collect::<Vec<_>>();
        let config =
            crate::config::parse(&format!("{}[[rules.actions]]{}", ok[0], ok[2]), &|_| None)
                .unwrap_or_else(|e| panic!("{e:?}"));
        let rules = crate::rules::RuleSet::new(&config);
        let fields = |v: serde_json::Value| v.as_object().unwrap().clone();
        for (user, fine) in [("u1", true), ("/evil.example.com", false), ("a#b", false)] {
            let f = fields(serde_json::json!({ "userId": user }));
            let view = crate::template::EventView {
                id: 1,
                receiver: "w",
                vendor: "webhook",
                kind: "webhook",
                dedupe_key: "k",
                received_at_ms: 0,
                fields: &f,
            };
            assert_eq!(rules.render("r", 0, &view).is_ok(), fine, "{user}");
        }
    }
}
