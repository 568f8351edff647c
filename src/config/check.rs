//! The config validator as the action kinds see it ([`Check`]): problems with their line,
//! `${VAR}`, templates compiled once into the config's one environment, the connections that
//! validated and `[outbound]`.

use std::ops::Range;

use super::raw::S;
use super::validate::Ctx;
use super::{Connection, OutboundConfig};
use crate::actions::check::Check;
use crate::template::{Compiler, Template};

impl Ctx<'_> {
    /// Compiles a template (`key` names it for `hookgate check`); a problem is reported and
    /// the handle still returned, so the checks after it run as on a good one.
    pub(super) fn compile(
        &mut self,
        key: &str,
        span: Option<Range<usize>>,
        src: &str,
        condition: bool,
    ) -> Template {
        let compiler = self
            .compiler
            .get_or_insert_with(|| Compiler::new(jiff::tz::TimeZone::UTC));
        let (template, problem) = if condition {
            compiler.condition(key, src)
        } else {
            compiler.compile(key, src)
        };
        if let Some(problem) = problem {
            self.err(span, key, problem);
        } else if let Some(known) = &self.table_names {
            // `tables.NAME` (a name chosen at run time, `tables[x]`, is not known here).
            let mut unknown: Vec<String> = compiler
                .variables(&template)
                .iter()
                .filter_map(|v| v.strip_prefix("tables."))
                .map(|rest| rest.split('.').next().unwrap_or(rest).to_owned())
                .filter(|t| !known.contains(t))
                .collect();
            unknown.sort();
            unknown.dedup();
            if !unknown.is_empty() {
                let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
                names.sort_unstable();
                let have = if names.is_empty() {
                    "there are no [tables]".to_owned()
                } else {
                    format!("[tables]: {}", names.join(", "))
                };
                let message = format!(
                    "names tables.{} that is not defined ({have}); it would render empty",
                    unknown.join(", tables.")
                );
                self.err(span, key, message);
            }
        }
        template
    }

    /// The zone of `[server] timezone` (templates and times read without one).
    pub(super) fn timezone(&self) -> jiff::tz::TimeZone {
        self.compiler
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone().clone())
    }

    /// This validator as the action kinds see it.
    pub(super) fn check(&mut self) -> &mut dyn Check {
        self
    }
}

/// What the action kinds' validation asks of the config being validated.
impl Check for Ctx<'_> {
    fn report(&mut self, span: Option<Range<usize>>, key: String, message: String) {
        self.err(span, key, message);
    }

    // Ctx's own (inherent) methods of the same names.
    fn errors_len(&self) -> usize {
        Ctx::errors_len(self)
    }

    fn string(&mut self, value: &S<String>, key: &str) -> Option<String> {
        Ctx::string(self, value, key)
    }

    fn compile(&mut self, key: &str, span: Option<Range<usize>>, src: &str) -> Template {
        Ctx::compile(self, key, span, src, false)
    }

    fn connection(&self, name: &str) -> Option<&Connection> {
        self.valid_connections.get(name)
    }

    fn declared(&self, name: &str) -> bool {
        self.declared_connections.contains(name)
    }

    fn outbound(&self) -> &OutboundConfig {
        &self.outbound_config
    }
}
