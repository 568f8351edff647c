//! What the store holds, for operators: `events list|show`, `deliveries list|retry`,
//! `groups list|show|set|forget`.

use anyhow::{Result, bail};

use super::{Cli, format_ms, load, open_existing};
use crate::clock::now_ms;
use crate::store::{DeliveryFilter, DeliveryStatus, ListFilter, RequeueTarget};

use super::{DeliveriesCommand, EventsCommand, GroupsCommand};

pub(super) fn events(cli: &Cli, command: &EventsCommand) -> Result<()> {
    let config = load(cli)?;
    let (rt, store) = open_existing(&config, "nothing has been received")?;
    match command {
        EventsCommand::List {
            receiver,
            kind,
            limit,
        } => {
            let filter = ListFilter {
                receiver: receiver.clone(),
                kind: kind.clone(),
                limit: *limit,
                ..ListFilter::default()
            };
            println!(
                "{:>8}  {:<25}  {:<16}  {:<14}  {:<28}  DEDUPE KEY",
                "ID", "RECEIVED", "RECEIVER", "VENDOR", "KIND"
            );
            for e in rt.block_on(store.list(&filter))? {
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
        }
        EventsCommand::Show { id } => match rt.block_on(store.get(*id))? {
            Some(e) => println!("{}", serde_json::to_string_pretty(&e)?),
            None => bail!("no event with id {id}"),
        },
    }
    Ok(())
}

pub(super) fn deliveries(cli: &Cli, command: &DeliveriesCommand) -> Result<()> {
    let config = load(cli)?;
    let (runtime, store) = open_existing(&config, "nothing has been received")?;
    match command {
        DeliveriesCommand::List {
            status,
            event,
            limit,
        } => {
            let filter = DeliveryFilter {
                status: *status,
                event_id: *event,
                limit: *limit,
                ..DeliveryFilter::default()
            };
            println!(
                "{:>8}  {:>8}  {:<16}  {:<28}  {:<6}  {:<9}  {:>3}  {:<25}  {:<20}  LAST ERROR",
                "ID", "EVENT", "RECEIVER", "RULE", "ACTION", "STATUS", "TRY", "NEXT ATTEMPT", "KEY"
            );
            for d in runtime.block_on(store.deliveries(&filter))? {
                let next = if d.status == DeliveryStatus::Pending {
                    format_ms(d.next_attempt_at_ms)
                } else {
                    "-".into()
                };
                println!(
                    "{:>8}  {:>8}  {:<16}  {:<28}  {:<6}  {:<9}  {:>3}  {:<25}  {:<20}  {}",
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
        }
        DeliveriesCommand::Show { id } => show_delivery(&runtime, &store, *id)?,
        DeliveriesCommand::Cancel { id, key } => {
            let n = runtime.block_on(store.cancel(
                key.clone(),
                *id,
                "cancelled by hookgate deliveries cancel",
                now_ms(),
            ))?;
            if n == 0 && id.is_some() {
                bail!("no pending or waiting delivery with that id");
            }
            println!("{n} deliver{} cancelled", if n == 1 { "y" } else { "ies" });
        }
        DeliveriesCommand::Retry { id, dead } => {
            let target = match (id, dead) {
                (Some(id), _) => RequeueTarget::Id(*id),
                (None, true) => RequeueTarget::AllDead,
                (None, false) => bail!("give a delivery id or --dead"),
            };
            let now = now_ms();
            let deadline = now.saturating_add(
                i64::try_from(config.delivery.give_up_after.as_millis()).unwrap_or(i64::MAX),
            );
            let n = runtime.block_on(store.requeue(target, now, deadline))?;
            if n == 0 && matches!(target, RequeueTarget::Id(_)) {
                bail!("no dead or pending delivery with that id");
            }
            println!(
                "{n} deliver{} queued to run now",
                if n == 1 { "y" } else { "ies" }
            );
        }
    }
    Ok(())
}

pub(super) fn groups(cli: &Cli, command: &GroupsCommand) -> Result<()> {
    let config = load(cli)?;
    let (rt, store) = open_existing(&config, "no group made")?;
    match command {
        GroupsCommand::List { limit } => {
            println!(
                "{:<12}  {:<32}  {:<34}  {:<25}  NAME",
                "CONNECTION", "KEY", "CHAT ID", "CREATED"
            );
            for g in rt.block_on(store.groups(*limit))? {
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
                [g] => println!("{}", serde_json::to_string_pretty(g)?),
                _ => bail!("several connections have key {key:?}: give --via"),
            }
        }
        GroupsCommand::Set {
            key,
            via,
            chat_id,
            open_conversation_id,
        } => {
            let existing = rt.block_on(store.group(via, key))?;
            if let Some(g) = &existing
                && !g.chat_id.is_empty()
                && &g.chat_id != chat_id
            {
                bail!(
                    "key {key:?} already has chat {}; `hookgate groups forget {key} --via {via}` first",
                    g.chat_id
                );
            }
            let now = now_ms();
            rt.block_on(store.put_group(crate::store::GroupRow {
                connection: via.clone(),
                key: key.clone(),
                chat_id: chat_id.clone(),
                open_conversation_id: open_conversation_id.clone(),
                name: existing.map_or_else(|| key.clone(), |g| g.name),
                created_at_ms: now,
                updated_at_ms: now,
            }))?;
            println!("key {key:?} of {via} is chat {chat_id}");
        }
        GroupsCommand::Forget { key, via } => {
            if !rt.block_on(store.forget_group(via, key))? {
                bail!("no group with key {key:?} for connection {via}");
            }
            println!("forgot key {key:?} of {via}; the next group_create for it makes a group");
        }
    }
    Ok(())
}

/// `deliveries show ID`: the delivery as JSON, with the result it kept as JSON (not as a
/// string holding JSON).
fn show_delivery(
    runtime: &tokio::runtime::Runtime,
    store: &crate::store::Store,
    id: i64,
) -> Result<()> {
    let filter = DeliveryFilter {
        id: Some(id),
        limit: 1,
        ..DeliveryFilter::default()
    };
    let Some(d) = runtime.block_on(store.deliveries(&filter))?.pop() else {
        bail!("no delivery with id {id}");
    };
    let result = d
        .result
        .as_deref()
        .map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap_or(r.into()));
    let mut shown = serde_json::to_value(&d)?;
    shown["result"] = result.unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}
