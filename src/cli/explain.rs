//! Checks of a config against events: `hookgate explain` (which rules fire for an event
//! file and what each action would send) and `hookgate simulate` (a vendor-exact probe sent
//! through the proxy).

use anyhow::{Context, Result, bail};

use super::{Cli, format_ms, load};
use crate::clock::now_ms;
use crate::rules::{EventView, RuleSet};

pub(super) fn simulate(
    cli: &Cli,
    receiver: &str,
    url: Option<&str>,
    event_file: Option<&std::path::Path>,
) -> Result<()> {
    let config = load(cli)?;
    let Some(r) = config.receivers.iter().find(|r| r.name == receiver) else {
        let names: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "no receiver named {receiver:?} (receivers: {})",
            names.join(", ")
        );
    };
    let event = event_file
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .transpose()?;
    crate::tls::install_provider();
    let client = reqwest::Client::builder()
        .timeout(crate::simulate::TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let local = crate::simulate::local_url(config.server.listen, &r.path);
    let target = url.unwrap_or(&local).to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let verdict = runtime.block_on(async {
        let probe = crate::simulate::probe(r, event.as_deref())?;
        let verdict = crate::simulate::run(&client, r, &probe, &target).await;
        anyhow::Ok((probe, verdict))
    })?;
    let (probe, verdict) = verdict;
    println!("{} -> {target}", probe.what);
    println!("{}", verdict.line);
    if verdict.ok {
        return Ok(());
    }
    // Through a proxy: is hookgate itself fine? Then the proxy is what changes the request.
    if url.is_some() && event.is_none() {
        let direct = runtime.block_on(async {
            let probe = crate::simulate::probe(r, None)?;
            anyhow::Ok(crate::simulate::run(&client, r, &probe, &local).await)
        })?;
        if direct.ok {
            println!(
                "Direct to hookgate at {local} the same check passes: the proxy between is what breaks it."
            );
        } else {
            println!("Direct to hookgate at {local}: {}", direct.line);
        }
    }
    bail!("simulation failed")
}

pub(super) fn explain(cli: &Cli, receiver: &str, event_file: &std::path::Path) -> Result<()> {
    let config = load(cli)?;
    let Some(r) = config.receivers.iter().find(|r| r.name == receiver) else {
        let names: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "no receiver named {receiver:?} (receivers: {})",
            names.join(", ")
        );
    };
    let text = std::fs::read_to_string(event_file)
        .with_context(|| format!("reading {}", event_file.display()))?;
    // The operator's own file, not a callback: nothing to verify.
    let event = crate::ingress::unverified_event(r, text, now_ms())
        .with_context(|| format!("parsing {}", event_file.display()))?;
    explain_event(&config, &event);
    Ok(())
}

/// `hookgate explain --schedule [RULE]`: every scheduled rule's next fire times in the server's
/// zone; with a rule's name, also what its next slot would do.
pub(super) fn schedules(cli: &Cli, only: &str) -> Result<()> {
    let config = load(cli)?;
    let tz = &config.server.timezone;
    let now = jiff::Timestamp::now();
    let scheduled: Vec<_> = config
        .rules
        .iter()
        .filter_map(|r| Some((r, r.schedule.as_ref()?)))
        .filter(|(r, _)| only.is_empty() || r.name == only)
        .collect();
    if scheduled.is_empty() {
        let names: Vec<&str> = config
            .rules
            .iter()
            .filter(|r| r.schedule.is_some())
            .map(|r| r.name.as_str())
            .collect();
        match (only, names.is_empty()) {
            (_, true) => println!("no scheduled rules configured"),
            (rule, false) => bail!(
                "no scheduled rule named {rule:?} (scheduled rules: {})",
                names.join(", ")
            ),
        }
        return Ok(());
    }
    let local = |t: jiff::Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %a")
            .to_string()
    };
    for (rule, s) in &scheduled {
        let missed = match s.missed {
            crate::schedule::Missed::RunOnce => "a missed slot runs once at start",
            crate::schedule::Missed::Skip => "missed slots are skipped",
        };
        println!(
            "rule {:?}: {} ({missed}); next, in {}:",
            rule.name,
            s.schedule.written(),
            tz.iana_name().unwrap_or("the server's time zone"),
        );
        for t in s.schedule.upcoming(now, tz, 5) {
            println!("  {}", local(t));
        }
    }
    if let [(rule, s)] = scheduled[..]
        && !only.is_empty()
        && let Some(next) = s.schedule.next_after(now, tz)
    {
        println!("\nits next slot, {}:", local(next));
        let event = crate::event::Event::scheduled(&rule.name, next, tz, next.as_millisecond());
        explain_event(&config, &event);
    }
    Ok(())
}

/// Which rules fire for `event` and what each of their actions would send.
fn explain_event(config: &crate::config::Config, event: &crate::event::Event) {
    let rules = RuleSet::new(config);
    let view = EventView::unstored(event);
    println!(
        "event: receiver {}, kind {}, dedupe key {}",
        view.receiver, view.kind, view.dedupe_key
    );
    if config.rules.is_empty() {
        println!("no rules configured");
    }
    let matches = rules.matching(&view);
    let slot = event.vendor() == crate::event::Vendor::Schedule;
    for v in rules.verdicts(&view) {
        // Scheduled rules never fire for a received event, nor other rules for a rule's slot.
        let rule = &config.rules[v.index];
        if rule.schedule.is_some() != slot || (slot && rule.name != view.kind) {
            continue;
        }
        if let Some(why) = &v.why_not {
            println!("\nrule {:?}: does not fire: {why}", v.rule);
            continue;
        }
        println!("\nrule {:?}: FIRES", v.rule);
        for (j, action) in config.rules[v.index].actions.iter().enumerate() {
            // When it would run and under which key, as the server would store it.
            let timing = matches
                .iter()
                .find(|m| m.rule == v.rule && m.action == j)
                .map(|m| timing(m, &config.server.timezone, view.received_at_ms))
                .unwrap_or_default();
            // Lookups are not run: what they would keep shows as ⟨steps.name…⟩.
            let ctx = rules.context_with(&view, rules.placeholder_steps(&v.rule));
            let decided = match &action.condition {
                Some(c) => format!(
                    ", if {:?} (decided when it runs)",
                    crate::template::condition_expression(c.source())
                ),
                None => String::new(),
            };
            let keeps = action
                .step
                .as_ref()
                .map(|n| format!(", keeps its result as steps.{n}"))
                .unwrap_or_default();
            match rules.render_in(&v.rule, j, &ctx, &view) {
                Ok(rendered) => println!(
                    "  action {j} ({}{timing}{keeps}{decided}):\n{}",
                    action.action.kind(),
                    indent(&rendered.describe())
                ),
                Err(e) => println!("  action {j} ({}): render error: {e}", action.action.kind()),
            }
        }
    }
}

/// When a matched action would run and under which key: ", scheduled for … (at)" and the
/// like.
fn timing(m: &crate::rules::Match, tz: &jiff::tz::TimeZone, received_at_ms: i64) -> String {
    let mut t = String::new();
    if let Some(at) = &m.at {
        match crate::time::parse_time(at, tz) {
            Some(ts) => t.push_str(&format!(
                ", scheduled for {} (at)",
                format_ms(ts.as_millisecond())
            )),
            None => t.push_str(&format!(", at {at:?} is not a time: runs at once")),
        }
    }
    if let Some(d) = m.delay {
        let due = received_at_ms + i64::try_from(d.as_millis()).unwrap_or(0);
        t.push_str(&format!(
            ", scheduled for {} (after {}s)",
            format_ms(due),
            d.as_secs()
        ));
    }
    if let (Some(k), None) = (&m.key, &m.cancel) {
        t.push_str(&format!(", key {k:?}"));
    }
    t
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_owned()
}
