//! Validation of a rule's clock: `schedule` (crontab) or `every`, and `missed`. A scheduled
//! rule takes no `receiver` or `when`: nothing is received for it.

use toml::Spanned;

use super::Scheduled;
use super::raw::{RawRule, S};
use super::validate::Ctx;
use crate::schedule::{Missed, Schedule};

impl Ctx<'_> {
    /// `schedule = "0 9 * * MON-FRI"` or `every = "10m"`, and `missed = "run_once" | "skip"`.
    /// A scheduled rule takes no `receiver` or `when`: nothing is received for it.
    pub(super) fn scheduled(&mut self, prefix: &str, r: &RawRule) -> Option<Scheduled> {
        let span = |v: &S<String>| v.as_ref().map(Spanned::span);
        let cron = self.string(&r.schedule, &format!("{prefix}.schedule"));
        let every = self.string(&r.every, &format!("{prefix}.every"));
        let missed = self.string(&r.missed, &format!("{prefix}.missed"));
        let schedule = match (cron, every) {
            (None, None) => {
                if missed.is_some() {
                    self.err(
                        span(&r.missed),
                        format!("{prefix}.missed"),
                        "only a scheduled rule (schedule = … or every = …) can miss a slot",
                    );
                }
                return None;
            }
            (Some(_), Some(_)) => {
                self.err(
                    span(&r.every),
                    format!("{prefix}.every"),
                    "a rule has either schedule or every, not both",
                );
                return None;
            }
            (Some(c), None) => (Schedule::cron(&c), "schedule", span(&r.schedule)),
            (None, Some(e)) => (Schedule::every(&e), "every", span(&r.every)),
        };
        let schedule = match schedule {
            (Ok(s), _, _) => s,
            (Err(e), key, s) => {
                self.err(s, format!("{prefix}.{key}"), e);
                return None;
            }
        };
        for (present, key) in [
            (r.receiver.as_ref().map(Spanned::span), "receiver"),
            (r.when.as_ref().map(Spanned::span), "when"),
        ] {
            if present.is_some() {
                self.err(
                    present,
                    format!("{prefix}.{key}"),
                    "a scheduled rule fires on its clock, not on received events; use `if` to decide at the fire time",
                );
            }
        }
        let missed = match missed.as_deref() {
            None | Some("run_once") => Missed::RunOnce,
            Some("skip") => Missed::Skip,
            Some(other) => {
                self.err(
                    span(&r.missed),
                    format!("{prefix}.missed"),
                    format!("{other:?} is not one of \"run_once\", \"skip\""),
                );
                Missed::RunOnce
            }
        };
        Some(Scheduled { schedule, missed })
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::tests::{RECEIVER, errors};

    #[test]
    fn a_scheduled_rule_problem_names_the_key_and_line() {
        let errs = errors(
            r#"
[[rules]]
name = "a"
schedule = "0 9 * *"
[[rules.actions]]
kind = "log"
message = "x"
[[rules]]
name = "b"
schedule = "0 9 * * 1-5"
every = "1h"
receiver = "hr"
[[rules.actions]]
kind = "log"
message = "x"
[[rules]]
name = "c"
every = "1h"
receiver = "hr"
when = { Event = "x" }
missed = "later"
[[rules.actions]]
kind = "log"
message = "x"
[[rules]]
name = "d"
missed = "skip"
[[rules.actions]]
kind = "log"
message = "x"
"#,
        );
        for want in [
            "line 11: rules[0].schedule: \"0 9 * *\" has 4 fields; a schedule has five",
            "line 18: rules[1].every: a rule has either schedule or every, not both",
            "line 26: rules[2].receiver: a scheduled rule fires on its clock",
            "line 27: rules[2].when: a scheduled rule fires on its clock",
            "line 28: rules[2].missed: \"later\" is not one of \"run_once\", \"skip\"",
            "line 34: rules[3].missed: only a scheduled rule",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        // No receivers at all is fine when a scheduled rule gives the gateway work.
        let config = crate::config::parse(
            "[[rules]]\nname = \"t\"\nevery = \"10m\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"x\"\n",
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(config.rules[0].schedule.is_some() && config.receivers.is_empty());
        let e = crate::config::parse("[server]\n", &|_| None).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("no [[receivers]] and no scheduled rules"),
            "{e:?}"
        );
        let e = crate::config::parse(
            &RECEIVER.replace("name = \"hr\"", "name = \"schedule\""),
            &|_| None,
        )
        .unwrap_err();
        assert!(
            e[0].to_string()
                .contains("receivers[0].name: \"schedule\" is the name"),
            "{e:?}"
        );
    }
}
