//! What the store holds, for operators, through [`crate::operate`] as the admin API:
//! `events list|show|replay`, `deliveries list|show|retry|cancel`,
//! `groups list|show|set|forget`, `audit`. Reading needs only the config's `[store]`;
//! `--json` prints the admin API's shapes.

use anyhow::{Result, bail};

use super::{
    Cli, DeliveriesCommand, EventFilter, EventsCommand, GroupsCommand, format_ms, load, load_store,
    open_existing,
};
use crate::clock::now_ms;
use crate::operate::{self, DeliveryQuery, EventQuery};
use crate::store::DeliveryStatus;

/// Who the audit trail says did it: `cli:<login>`.
fn who() -> String {
    // SAFETY: getuid cannot fail and touches no memory of ours.
    let uid = unsafe { libc::getuid() };
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {uid}"));
    format!("cli:{user}")
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `--since 2h` (ago) or a time in this machine's zone.
fn when(text: &Option<String>, flag: &str) -> Result<Option<i64>> {
    let Some(t) = text else { return Ok(None) };
    if let Ok(d) = crate::time::parse_duration(t) {
        return Ok(Some(
            now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2),
        ));
    }
    match crate::time::parse_time(t, &jiff::tz::TimeZone::system()) {
        Some(ts) => Ok(Some(ts.as_millisecond())),
        None => bail!("{flag} {t:?} is neither a time (2026-12-01 09:00) nor a duration (2h)"),
    }
}

fn event_query(f: &EventFilter, before: Option<i64>, limit: usize) -> Result<EventQuery> {
    Ok(EventQuery {
        receiver: f.receiver.clone(),
        kind: f.kind.clone(),
        since_ms: when(&f.since, "--since")?,
        until_ms: when(&f.until, "--until")?,
        text: f.text.clone(),
        before,
        limit: Some(limit),
    })
}

pub(super) fn events(cli: &Cli, command: &EventsCommand) -> Result<()> {
    if let EventsCommand::Replay { id, filter, rule } = command {
        return replay(cli, *id, filter, rule.as_deref());
    }
    let config = load_store(cli)?;
    let (rt, store) = open_existing(&config.store, "nothing has been received")?;
    match command {
        EventsCommand::List {
            filter,
            before,
            limit,
        } => {
            let page = rt.block_on(operate::events(
                &store,
                &event_query(filter, *before, *limit)?,
            ))?;
            if cli.json {
                return print_json(&page);
            }
            println!(
                "{:>8}  {:<25}  {:<16}  {:<14}  {:<28}  DEDUPE KEY",
                "ID", "RECEIVED", "RECEIVER", "VENDOR", "KIND"
            );
            for e in &page.items {
                println!(
                    "{:>8}  {:<25}  {:<16}  {:<14}  {:<28}  {}",
                    e.id,
                    format_ms(e.received_at_ms),
                    e.receiver,
                    e.vendor,
                    e.kind,
                    e.dedupe_key
                );
            }
            if let Some(next) = page.next_before {
                println!("more: --before {next}");
            }
        }
        EventsCommand::Show { id } => print_json(&rt.block_on(operate::event(&store, *id))?)?,
        EventsCommand::Replay { .. } => {}
    }
    Ok(())
}

/// `events replay`: the rules render, so the whole config (and its secrets) is loaded.
fn replay(cli: &Cli, id: Option<i64>, filter: &EventFilter, rule: Option<&str>) -> Result<()> {
    let config = load(cli)?;
    let (rt, store) = open_existing(&config.store, "nothing has been received")?;
    let loaded = {
        let _inside = rt.enter();
        crate::loaded::Loaded::build(
            &config,
            &store,
            &std::sync::Arc::new(crate::metrics::Metrics::new()),
            &std::sync::Arc::default(),
        )?
    };
    let who = who();
    let replayed = match id {
        Some(id) => vec![rt.block_on(operate::replay(&store, &loaded, &who, id, rule))?],
        None => {
            let q = event_query(filter, None, operate::MAX_REPLAY)?;
            rt.block_on(operate::replay_matching(&store, &loaded, &who, &q, rule))?
        }
    };
    {
        // Its clients' pools live on the runtime.
        let _inside = rt.enter();
        drop(loaded);
    }
    if cli.json {
        return print_json(&replayed);
    }
    for r in &replayed {
        println!(
            "event {}: replay {}, {} deliveries stored{}",
            r.event_id,
            r.replay,
            r.deliveries,
            match r.unfinished {
                0 => String::new(),
                n => format!(", {n} left out (their rule has not finished with this event)"),
            }
        );
    }
    if replayed.is_empty() {
        println!("no events matched");
    }
    Ok(())
}

pub(super) fn deliveries(cli: &Cli, command: &DeliveriesCommand) -> Result<()> {
    let config = load_store(cli)?;
    let (rt, store) = open_existing(&config.store, "nothing has been received")?;
    let give_up = i64::try_from(config.give_up_after.as_millis()).unwrap_or(i64::MAX);
    let who = who();
    let plural = |n: usize| if n == 1 { "delivery" } else { "deliveries" };
    match command {
        DeliveriesCommand::List {
            status,
            event,
            rule,
            receiver,
            key,
            before,
            limit,
        } => {
            let q = DeliveryQuery {
                status: status.map(|s| s.as_str().to_owned()),
                rule: rule.clone(),
                receiver: receiver.clone(),
                event: *event,
                key: key.clone(),
                before: *before,
                limit: Some(*limit),
            };
            let page = rt.block_on(operate::deliveries(&store, &q))?;
            if cli.json {
                return print_json(&page);
            }
            print_deliveries(&page);
        }
        DeliveriesCommand::Show { id } => {
            print_json(&rt.block_on(operate::delivery(&store, *id))?)?
        }
        DeliveriesCommand::Cancel { id, key } => {
            let n = rt.block_on(operate::cancel(&store, &who, *id, key.clone()))?;
            println!("{n} {} cancelled", plural(n));
        }
        DeliveriesCommand::Retry {
            id,
            dead,
            rule,
            receiver,
        } => {
            let n = match (id, dead) {
                (Some(id), _) => rt.block_on(operate::retry(&store, &who, *id, give_up))?,
                (None, true) => rt.block_on(operate::retry_dead(
                    &store,
                    &who,
                    rule.clone(),
                    receiver.clone(),
                    give_up,
                ))?,
                (None, false) => bail!("give a delivery id or --dead"),
            };
            println!("{n} {} queued to run now", plural(n));
        }
    }
    Ok(())
}

fn print_deliveries(page: &operate::Page<operate::DeliveryView>) {
    println!(
        "{:>8}  {:>8}  {:<16}  {:<28}  {:<6}  {:<9}  {:>3}  {:<25}  {:<20}  LAST ERROR",
        "ID", "EVENT", "RECEIVER", "RULE", "ACTION", "STATUS", "TRY", "NEXT ATTEMPT", "KEY"
    );
    for v in &page.items {
        let d = &v.row;
        let next = if d.status == DeliveryStatus::Pending {
            format_ms(d.next_attempt_at_ms)
        } else {
            "-".into()
        };
        let replay = if d.replay > 0 {
            format!(" (replay {})", d.replay)
        } else {
            String::new()
        };
        println!(
            "{:>8}  {:>8}  {:<16}  {:<28}  {:<6}  {:<9}  {:>3}  {:<25}  {:<20}  {}{replay}",
            d.id,
            d.event_id,
            d.receiver,
            format!("{}#{}", d.rule, d.action),
            d.kind,
            d.status.as_str(),
            d.attempts,
            next,
            d.key.as_deref().unwrap_or("-"),
            d.last_error.as_deref().unwrap_or("")
        );
    }
    if let Some(next) = page.next_before {
        println!("more: --before {next}");
    }
}

pub(super) fn audit(cli: &Cli, limit: usize, before: Option<i64>) -> Result<()> {
    let config = load_store(cli)?;
    let (rt, store) = open_existing(&config.store, "nothing has been done")?;
    let page = rt.block_on(operate::audit_trail(&store, before, Some(limit)))?;
    if cli.json {
        return print_json(&page);
    }
    println!(
        "{:>6}  {:<25}  {:<20}  {:<8}  {:<28}  DETAIL",
        "ID", "WHEN", "WHO", "ACTION", "TARGET"
    );
    for a in &page.items {
        println!(
            "{:>6}  {:<25}  {:<20}  {:<8}  {:<28}  {}",
            a.id,
            format_ms(a.at_ms),
            a.who,
            a.action,
            a.target,
            a.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub(super) fn prune(
    cli: &Cli,
    events: Option<std::time::Duration>,
    deliveries: Option<std::time::Duration>,
) -> Result<()> {
    let config = load_store(cli)?;
    let mut keep = config.store.retention;
    keep.keep_events = events.or(keep.keep_events);
    keep.keep_deliveries = deliveries.or(keep.keep_deliveries);
    if keep.keep_events.is_none() && keep.keep_deliveries.is_none() {
        bail!(
            "nothing to prune: set [store] keep_events or keep_deliveries, or pass --events or --deliveries"
        );
    }
    if let (Some(e), Some(d)) = (keep.keep_events, keep.keep_deliveries)
        && d > e
    {
        bail!("deliveries cannot be kept longer than events: they go with their event");
    }
    let (rt, store) = open_existing(&config.store, "nothing is stored")?;
    let mut cursors = crate::retention::Cursors::default();
    let report = rt.block_on(crate::retention::pass(
        &store,
        &keep,
        crate::clock::now_ms(),
        &mut cursors,
        std::time::Duration::ZERO,
    ))?;
    if cli.json {
        return print_json(&report);
    }
    println!(
        "Pruned {} events and {} deliveries.",
        report.events, report.deliveries
    );
    Ok(())
}

pub(super) fn groups(cli: &Cli, command: &GroupsCommand) -> Result<()> {
    let config = load_store(cli)?;
    let (rt, store) = open_existing(&config.store, "no group made")?;
    match command {
        GroupsCommand::List { limit } => {
            let groups = rt.block_on(operate::groups(&store, *limit))?;
            if cli.json {
                return print_json(&groups);
            }
            println!(
                "{:<12}  {:<32}  {:<34}  {:<25}  NAME",
                "CONNECTION", "KEY", "CHAT ID", "CREATED"
            );
            for g in groups {
                println!(
                    "{:<12}  {:<32}  {:<34}  {:<25}  {}",
                    g.connection,
                    g.key,
                    if g.chat_id.is_empty() {
                        "(being created, or unsure)"
                    } else {
                        &g.chat_id
                    },
                    format_ms(g.created_at_ms),
                    g.name
                );
            }
        }
        GroupsCommand::Show { key, via } => {
            let found: Vec<_> = rt
                .block_on(store.groups(usize::MAX))?
                .into_iter()
                .filter(|g| &g.key == key && via.as_ref().is_none_or(|v| &g.connection == v))
                .collect();
            match found.as_slice() {
                [] => bail!("no group with key {key:?}"),
                [g] => print_json(g)?,
                _ => bail!("several connections have key {key:?}: give --via"),
            }
        }
        GroupsCommand::Set {
            key,
            via,
            chat_id,
            open_conversation_id,
        } => set_group(&rt, &store, key, via, chat_id, open_conversation_id.clone())?,
        GroupsCommand::Forget { key, via } => {
            if !rt.block_on(store.forget_group(via, key))? {
                bail!("no group with key {key:?} for connection {via}");
            }
            let target = format!("group {key:?} of {via}");
            rt.block_on(operate::record(
                &store,
                &who(),
                "group forget",
                target,
                None,
            ));
            println!("forgot key {key:?} of {via}; the next group_create for it makes a group");
        }
    }
    Ok(())
}

/// `groups set`: records a key's chat by hand (never repointing one that has a chat).
fn set_group(
    rt: &tokio::runtime::Runtime,
    store: &crate::store::Store,
    key: &str,
    via: &str,
    chat_id: &str,
    open_conversation_id: Option<String>,
) -> Result<()> {
    let existing = rt.block_on(store.group(via, key))?;
    if let Some(g) = &existing
        && !g.chat_id.is_empty()
        && g.chat_id != chat_id
    {
        bail!(
            "key {key:?} already has chat {}; `hookgate groups forget {key} --via {via}` first",
            g.chat_id
        );
    }
    let now = now_ms();
    rt.block_on(store.put_group(crate::store::GroupRow {
        connection: via.to_owned(),
        key: key.to_owned(),
        chat_id: chat_id.to_owned(),
        open_conversation_id,
        name: existing.map_or_else(|| key.to_owned(), |g| g.name),
        created_at_ms: now,
        updated_at_ms: now,
    }))?;
    let target = format!("group {key:?} of {via}");
    let detail = Some(format!("chat {chat_id}"));
    rt.block_on(operate::record(store, &who(), "group set", target, detail));
    println!("key {key:?} of {via} is chat {chat_id}");
    Ok(())
}
