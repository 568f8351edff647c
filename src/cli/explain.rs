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
    fresh: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<()> {
    let config = load(cli)?;
    let Some(r) = config.receivers.iter().find(|r| r.name == receiver) else {
        let names: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "no receiver named {receiver:?} (receivers: {})",
            names.join(", ")
        );
    };
    let mut event = event_file
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .transpose()?;
    if fresh && let Some(text) = &event {
        event = Some(crate::simulate::freshen(r, text).map_err(anyhow::Error::msg)?);
    }
    crate::tls::install_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(crate::simulate::TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca_file {
        let tls = crate::tls::client(crate::tls::Verify::Full, Some(ca))?;
        builder = builder.tls_backend_preconfigured(tls);
    }
    let client = builder.build()?;
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
    // (Not when this machine does not trust the certificate: no request was made.)
    if url.is_some() && event.is_none() && !verdict.untrusted {
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

pub(super) fn explain(
    cli: &Cli,
    receiver: &str,
    event_file: &std::path::Path,
    live: bool,
) -> Result<()> {
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
    let live = if live {
        Some(Live::new(&config)?)
    } else {
        None
    };
    explain_event(&config, &event, live.as_ref());
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
        explain_event(&config, &event, None);
    }
    Ok(())
}

/// What `--live` runs: the read-only lookups (a `sql` without `write`, an `http` GET or
/// HEAD, an `api` GET), through the config's clients on a scratch store.
struct Live {
    /// Made, used and dropped inside the runtime (its pools live on it).
    actions: Option<crate::actions::Actions>,
    runtime: tokio::runtime::Runtime,
    /// The scratch store's directory (access tokens fetched while explaining), removed after.
    dir: std::path::PathBuf,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.actions.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Live {
    fn new(config: &crate::config::Config) -> Result<Self> {
        crate::tls::install_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let dir = std::env::temp_dir().join(format!("hookgate-explain-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let store = runtime.block_on(crate::store::Store::open(
            &crate::config::StoreConfig::sqlite(dir.join("explain.db")),
        ))?;
        let _inside = runtime.enter();
        let actions = crate::actions::Actions::new(
            &config.connections,
            &config.outbound,
            &store,
            std::sync::Arc::new(crate::metrics::Metrics::new()),
            std::sync::Arc::default(),
        )?;
        drop(_inside);
        Ok(Self {
            actions: Some(actions),
            runtime,
            dir,
        })
    }

    /// Runs `rendered` if it only reads; its answer, or why not.
    fn lookup(
        &self,
        rendered: &crate::rules::Rendered,
        rule: &str,
    ) -> Option<Result<serde_json::Value, String>> {
        use crate::rules::Rendered as R;
        let reads = match rendered {
            R::Sql(q) => !q.write,
            R::Http(h) => matches!(h.method.as_str(), "GET" | "HEAD"),
            R::Api(a) => a.method == "GET",
            _ => false,
        };
        if !reads {
            return None;
        }
        let attempt = crate::actions::Attempt {
            delivery_id: 0,
            rule,
            receiver: "explain",
        };
        let actions = self.actions.as_ref()?;
        let answer = self.runtime.block_on(actions.run(rendered, attempt));
        Some(answer.map_err(|e| e.reason))
    }
}

/// Which rules fire for `event` and what each of their actions would send; with `live`, the
/// read-only lookups run and later actions render with their answers.
fn explain_event(config: &crate::config::Config, event: &crate::event::Event, live: Option<&Live>) {
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
        // What the rule's steps hold so far: answers (live) or placeholders.
        let mut steps = std::collections::BTreeMap::new();
        for (j, action) in rule.actions.iter().enumerate() {
            // When it would run and under which key, as the server would store it.
            let timing = matches
                .iter()
                .find(|m| m.rule == v.rule && m.action == j)
                .map(|m| timing(m, &config.server.timezone, view.received_at_ms))
                .unwrap_or_default();
            explain_action(&rules, &view, &v.rule, j, action, &mut steps, live, &timing);
        }
    }
}

/// One action of a firing rule as `explain` shows it: rendered with the steps so far
/// (answers with `--live`, placeholders otherwise), its `if`, and a live lookup's answer.
#[allow(clippy::too_many_arguments)]
fn explain_action(
    rules: &RuleSet,
    view: &EventView<'_>,
    rule: &str,
    j: usize,
    action: &crate::config::RuleAction,
    steps: &mut std::collections::BTreeMap<String, minijinja::Value>,
    live: Option<&Live>,
    timing: &str,
) {
    // Answers (live) over placeholders for the steps not run.
    let mut context_steps = rules.placeholder_steps(rule);
    context_steps.extend(steps.clone());
    let ctx = rules.context_with(view, minijinja::Value::from(context_steps));
    let decided = match (&action.condition, live) {
        (Some(c), Some(_)) => format!(
            ", if {:?}: {}",
            crate::template::condition_expression(c.source()),
            match rules.action_holds(rule, j, &ctx) {
                Ok(true) => "true now".to_owned(),
                Ok(false) => "false now: it would be skipped".to_owned(),
                Err(e) => format!("fails: {e}"),
            }
        ),
        (Some(c), None) => format!(
            ", if {:?} (decided when it runs)",
            crate::template::condition_expression(c.source())
        ),
        (None, _) => String::new(),
    };
    let keeps = action
        .step
        .as_ref()
        .map(|n| format!(", keeps its result as steps.{n}"))
        .unwrap_or_default();
    let kind = action.action.kind();
    match rules.render_in(rule, j, &ctx, view) {
        Ok(rendered) => {
            println!(
                "  action {j} ({kind}{timing}{keeps}{decided}):\n{}",
                indent(&rendered.describe())
            );
            if let Some(why) = rendered.nobody() {
                println!("    warning: {why}");
            }
            match live.and_then(|l| l.lookup(&rendered, rule)) {
                Some(Ok(answer)) => {
                    let shown = serde_json::to_string_pretty(&answer).unwrap_or_default();
                    println!("    answered (live):\n{}", indent(&indent(&shown)));
                    if let Some(name) = &action.step {
                        steps.insert(
                            name.clone(),
                            minijinja::Value::from(minijinja::value::Serde(answer)),
                        );
                    }
                }
                Some(Err(e)) => println!("    failed (live): {e}"),
                None => {}
            }
        }
        Err(e) => println!("  action {j} ({kind}): render error: {e}"),
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

/// `hookgate check --events RECEIVER=PATH`: each sample event (a file, or every .json and
/// .xml file of a directory) as that receiver would store it; every action of every rule it
/// fires, rendered: a failure, or recipients that all render empty, is a warning naming the
/// file, rule and action.
pub(super) fn sample_warnings(
    config: &crate::config::Config,
    pairs: &[String],
) -> Result<Vec<String>> {
    let rules = RuleSet::new(config);
    let mut warnings = Vec::new();
    for pair in pairs {
        let Some((name, path)) = pair.split_once('=') else {
            bail!("--events takes RECEIVER=FILE or RECEIVER=DIR, not {pair:?}");
        };
        let Some(r) = config.receivers.iter().find(|r| r.name == name) else {
            let names: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
            bail!(
                "--events {pair}: no receiver named {name:?} (receivers: {})",
                names.join(", ")
            );
        };
        let path = std::path::Path::new(path);
        let files = if path.is_dir() {
            let mut inside: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "json" || x == "xml"))
                .collect();
            inside.sort();
            inside
        } else {
            vec![path.to_owned()]
        };
        for file in &files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let event = match crate::ingress::unverified_event(r, text, now_ms()) {
                Ok(e) => e,
                Err(e) => {
                    warnings.push(format!("{}: not an event of {name}: {e}", file.display()));
                    continue;
                }
            };
            let view = EventView::unstored(&event);
            for v in rules.verdicts(&view) {
                let rule = &rules.rules()[v.index];
                if v.why_not.is_some() || rule.schedule.is_some() {
                    continue;
                }
                let ctx = rules.context_with(
                    &view,
                    minijinja::Value::from(rules.placeholder_steps(&v.rule)),
                );
                for (j, action) in rule.actions.iter().enumerate() {
                    let why = match rules.render_in(&v.rule, j, &ctx, &view) {
                        Ok(rendered) => rendered.nobody().map(str::to_owned),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(why) = why {
                        warnings.push(format!(
                            "{}: rule {:?} action {j} ({}): {why}",
                            file.display(),
                            v.rule,
                            action.action.kind()
                        ));
                    }
                }
            }
        }
    }
    Ok(warnings)
}
