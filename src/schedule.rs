//! When a scheduled rule fires: a five-field cron expression read in the server's time zone
//! (`schedule = "0 9 * * MON-FRI"`) or a fixed interval (`every = "10m"`), as slots. Slots
//! are the same for every process, so replicas and restarts agree on which slot is due.

use std::str::FromStr;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A rule's clock.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Five crontab fields (minute hour day-of-month month day-of-week) or `@daily`,
    /// `@hourly`, `@weekly`, `@monthly`, `@yearly`; `written` is what the config says.
    Cron {
        written: String,
        cron: Box<jiff_cron::Schedule>,
    },
    /// Every `interval`, counted from the Unix epoch (so `1h` fires on the hour).
    Every(Duration),
}

/// The fewest seconds `every` may be.
const MIN_EVERY: Duration = Duration::from_secs(1);

impl Schedule {
    /// Parses a crontab expression. Day-of-week numbers are crontab's (0 or 7 Sunday, 1
    /// Monday … 6 Saturday); names (`MON-FRI`) work too.
    pub fn cron(written: &str) -> Result<Self, String> {
        let written = written.trim();
        let expression = if written.starts_with('@') {
            written.to_owned()
        } else {
            let fields: Vec<&str> = written.split_whitespace().collect();
            let [minute, hour, dom, month, dow] = fields[..] else {
                return Err(format!(
                    "{written:?} has {} fields; a schedule has five: minute hour day-of-month month day-of-week",
                    fields.len()
                ));
            };
            format!("0 {minute} {hour} {dom} {month} {}", weekdays(dow)?)
        };
        let cron = jiff_cron::Schedule::from_str(&expression)
            .map_err(|e| format!("{written:?} is not a cron expression: {e}"))?;
        let schedule = Self::Cron {
            written: written.to_owned(),
            cron: Box::new(cron),
        };
        if schedule
            .next_after(Timestamp::now(), &TimeZone::UTC)
            .is_none()
        {
            return Err(format!("{written:?} never fires"));
        }
        Ok(schedule)
    }

    /// Parses an interval such as `30s`, `10m`, `1h30m`.
    pub fn every(written: &str) -> Result<Self, String> {
        let d = crate::time::parse_duration(written)?;
        if d < MIN_EVERY {
            return Err(format!("{written:?} is shorter than one second"));
        }
        Ok(Self::Every(d))
    }

    /// What the config says, to tell a changed schedule from the same one.
    pub fn written(&self) -> String {
        match self {
            Self::Cron { written, .. } => written.clone(),
            Self::Every(d) => format!("every {}s", d.as_secs()),
        }
    }

    /// The latest slot at or before `t`.
    pub fn latest(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Self::Cron { cron, .. } => {
                // `prev_from` is strictly before; slots are whole seconds.
                let after = Zoned::new(t, tz.clone())
                    .checked_add(jiff::SignedDuration::from_secs(1))
                    .ok()?;
                let mut it = cron.after(after);
                it.next_back().map(|z| z.timestamp())
            }
            Self::Every(d) => {
                let step = i64::try_from(d.as_secs()).ok()?;
                let s = t.as_second();
                Timestamp::from_second(s - s.rem_euclid(step)).ok()
            }
        }
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Self::Cron { cron, .. } => cron
                .after(Zoned::new(t, tz.clone()))
                .next()
                .map(|z| z.timestamp()),
            Self::Every(d) => {
                let step = i64::try_from(d.as_secs()).ok()?;
                let s = t.as_second();
                Timestamp::from_second(s - s.rem_euclid(step) + step).ok()
            }
        }
    }

    /// The next `n` slots after `t`.
    pub fn upcoming(&self, t: Timestamp, tz: &TimeZone, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at, tz) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }
}

/// What to do with a slot that passed while no process was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// The latest missed slot fires once at start (earlier ones are not made up).
    #[default]
    RunOnce,
    /// Missed slots are skipped; the next slot fires as usual.
    Skip,
}

/// Crontab's day-of-week field in the parser's terms: its numbers count Sunday as 1, so
/// crontab's numbers (0/7 Sunday, 1 Monday …) become names; names and `*` pass through.
fn weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    // A crontab number as a name; anything else (a name, `*`) as written.
    let day = |n: &str| -> Result<String, String> {
        match n.parse::<usize>() {
            Ok(i) => NAMES
                .get(i)
                .map(|d| (*d).to_owned())
                .ok_or_else(|| format!("day of week {n} is not 0-7")),
            Err(_) => Ok(n.to_owned()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let translated = match range.split_once('-') {
            // `1-7` is Monday to Sunday, a range the parser cannot wrap.
            Some((a, "7")) if step.is_none() && a != "0" && a != "7" => {
                format!("{}-SAT,SUN", day(a)?)
            }
            Some((a, b)) => format!("{}-{}", day(a)?, day(b)?),
            None => day(range)?,
        };
        items.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_weekday_nine_oclock_schedule_fires_on_weekdays_at_nine_local_time() {
        let s = Schedule::cron("0 9 * * MON-FRI").unwrap();
        let tz = shanghai();
        // 2026-12-04 is a Friday.
        let next = s.upcoming(at("2026-12-04T02:00:00Z"), &tz, 3);
        assert_eq!(
            next,
            vec![
                at("2026-12-07T01:00:00Z"),
                at("2026-12-08T01:00:00Z"),
                at("2026-12-09T01:00:00Z")
            ]
        );
        // Crontab's numbers mean the same days.
        let numeric = Schedule::cron("0 9 * * 1-5").unwrap();
        assert_eq!(numeric.upcoming(at("2026-12-04T02:00:00Z"), &tz, 3), next);
        let sunday = Schedule::cron("0 9 * * 0").unwrap();
        assert_eq!(
            sunday.next_after(at("2026-12-04T02:00:00Z"), &tz),
            Some(at("2026-12-06T01:00:00Z"))
        );
        let seven = Schedule::cron("0 9 * * 7").unwrap();
        assert_eq!(
            seven.next_after(at("2026-12-04T02:00:00Z"), &tz),
            Some(at("2026-12-06T01:00:00Z"))
        );
        let mon_sun = Schedule::cron("0 9 * * 1-7").unwrap();
        assert_eq!(
            mon_sun.upcoming(at("2026-12-04T02:00:00Z"), &tz, 3).len(),
            3
        );
        assert_eq!(
            mon_sun.next_after(at("2026-12-04T02:00:00Z"), &tz),
            Some(at("2026-12-05T01:00:00Z"))
        );
    }

    #[test]
    fn the_latest_slot_includes_the_instant_itself() {
        let s = Schedule::cron("0 9 * * *").unwrap();
        let tz = shanghai();
        assert_eq!(
            s.latest(at("2026-12-04T01:00:00Z"), &tz),
            Some(at("2026-12-04T01:00:00Z"))
        );
        assert_eq!(
            s.latest(at("2026-12-04T00:59:59Z"), &tz),
            Some(at("2026-12-03T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-04T01:00:00Z"), &tz),
            Some(at("2026-12-05T01:00:00Z"))
        );
        let every = Schedule::every("10m").unwrap();
        assert_eq!(
            every.latest(at("2026-12-04T01:09:59Z"), &tz),
            Some(at("2026-12-04T01:00:00Z"))
        );
        assert_eq!(
            every.latest(at("2026-12-04T01:10:00Z"), &tz),
            Some(at("2026-12-04T01:10:00Z"))
        );
        assert_eq!(
            every.next_after(at("2026-12-04T01:10:00Z"), &tz),
            Some(at("2026-12-04T01:20:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = Schedule::cron("0 9 * *").unwrap_err();
        assert!(e.contains("has 4 fields; a schedule has five"), "{e}");
        let e = Schedule::cron("0 9 * * 8").unwrap_err();
        assert!(e.contains("day of week 8 is not 0-7"), "{e}");
        let e = Schedule::cron("61 9 * * *").unwrap_err();
        assert!(e.contains("is not a cron expression"), "{e}");
        let e = Schedule::cron("0 0 30 2 *").unwrap_err();
        assert!(e.contains("never fires"), "{e}");
        assert!(Schedule::every("0s").is_err());
        assert!(Schedule::every("ten").is_err());
        assert!(Schedule::cron("@daily").is_ok());
        assert!(Schedule::cron("*/15 8-18 * * MON-FRI").is_ok());
        assert!(Schedule::cron("0 9 1,15 * 1-5/2").is_ok());
    }
}
