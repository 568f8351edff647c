//! Times and durations as rules and templates write them: durations such as `90s` or
//! `1h30m` (`after`, timeouts, the `shift` filter), and points in time as epoch seconds or
//! milliseconds, RFC 3339, or a local date and time in the configured zone (`at`).

use std::time::Duration;

/// A duration as rules write it: `90s`, `15m`, `24h`, `2d`, or a sum such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{text:?}: unknown unit {c:?} (s, m, h, d)")),
        };
        total = total.saturating_add(Duration::from_secs(n.saturating_mul(unit)));
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?}: the number {digits} has no unit (s, m, h, d)"
        ));
    }
    Ok(total)
}

/// A point in time as events and templates write it: epoch seconds or milliseconds, RFC 3339
/// (`2026-11-22T09:00:00+08:00`), or a local `YYYY-MM-DD[ HH:MM[:SS]]` in `tz`.
pub fn parse_time(text: &str, tz: &jiff::tz::TimeZone) -> Option<jiff::Timestamp> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        let ms = if n.abs() > 100_000_000_000 {
            n
        } else {
            n.saturating_mul(1000)
        };
        return jiff::Timestamp::from_millisecond(ms).ok();
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let civil = t.parse::<jiff::civil::DateTime>().ok().or_else(|| {
        t.parse::<jiff::civil::Date>()
            .ok()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    })?;
    civil.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_rules_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("24").unwrap_err().contains("no unit"));
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("h")
                .unwrap_err()
                .contains("a number must come before")
        );
    }
}
