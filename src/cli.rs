//! The `hookgate` command line: `serve`, `check`, `explain`, `events list|show`,
//! `deliveries list|retry`, `groups list|show|set|forget`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{self, App, Listeners, Reloads};
use crate::clock::now_ms;
use crate::config::{self, Config};
use crate::event::Event;
use crate::rules::{EventView, RuleSet};
use crate::store::{DeliveryFilter, DeliveryStatus, ListFilter, RequeueTarget, Store};

#[derive(Debug, Parser)]
#[command(
    name = "hookgate",
    version,
    about = "Webhook callback gateway for WeCom, WeChat MP, DingTalk and Feishu/Lark"
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        env = "HOOKGATE_CONFIG",
        default_value = "hookgate.toml"
    )]
    pub config: PathBuf,
    /// `KEY=VALUE` lines that fill `${KEY}` in the config where the environment does not
    /// (as systemd's EnvironmentFile); `config/demo.env` holds the example's demo values.
    #[arg(long, global = true, env = "HOOKGATE_ENV_FILE")]
    pub env_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Validate the config, print every problem with its line, list the receivers.
    Check,
    /// Show which rules a decrypted event (an XML or JSON file) fires and the rendered
    /// actions; sends nothing.
    Explain {
        /// The receiver the event arrives at.
        #[arg(long)]
        receiver: String,
        /// The decrypted callback body, as `hookgate events show` prints in `raw`.
        event_file: PathBuf,
    },
    /// Send a URL check (or, with an event file, an event) exactly as the vendor would, to
    /// the local listener or through the proxy at --url, and say what is wrong if anything.
    Simulate {
        #[arg(long)]
        receiver: String,
        /// The public URL the vendor calls (through nginx, a load balancer, …); default the
        /// local listener.
        #[arg(long)]
        url: Option<String>,
        /// A decrypted event to send instead of the URL check (it is stored, rules fire).
        event_file: Option<PathBuf>,
    },
    /// Read stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Read and retry deliveries (one per action a rule fired).
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// The group registry: chats made by group_create, by key.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Create or upgrade the store's schema and exit (`serve` does this on start too).
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// The newest groups, one per line.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One group by its key, as JSON.
    Show {
        key: String,
        /// The connection (needed only when several have this key).
        #[arg(long)]
        via: Option<String>,
    },
    /// Records a key's chat by hand: a DingTalk group whose creation was left unsure (the
    /// delivery says so) and that exists.
    Set {
        key: String,
        #[arg(long)]
        via: String,
        #[arg(long)]
        chat_id: String,
        /// DingTalk's `cid…` id, which group_send needs.
        #[arg(long)]
        open_conversation_id: Option<String>,
    },
    /// Removes a key, so the next group_create for it makes a new group.
    Forget {
        key: String,
        #[arg(long)]
        via: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The newest deliveries, one per line.
    List {
        /// waiting, pending, running, done, dead, cancelled, failed (pending after a failure)
        /// or scheduled (timers not due yet).
        #[arg(long, value_parser = parse_status)]
        status: Option<DeliveryStatus>,
        /// Only the deliveries of this event.
        #[arg(long)]
        event: Option<i64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Call off a pending delivery (a timer) by id, or every one with a key.
    Cancel {
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        id: Option<i64>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Run a dead delivery (or every dead one) again now, with a fresh retry deadline.
    Retry {
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<i64>,
        #[arg(long)]
        dead: bool,
    },
}

fn parse_status(s: &str) -> Result<DeliveryStatus, String> {
    DeliveryStatus::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of waiting, pending, running, done, dead, cancelled, failed, scheduled"))
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The newest events, one per line.
    List {
        #[arg(long)]
        receiver: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One event with all its fields, as JSON.
    Show { id: i64 },
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info`. Lines are formatted on the
/// request's thread and written by a logging thread that batches whatever is queued into one
/// write, so one line per callback costs no syscall on the callback path. Never lossy: when
/// 128k lines are queued, logging waits. Keep the guard until exit; dropping it flushes.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to files or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("hookgate-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

fn load(cli: &Cli) -> Result<Config> {
    config::load(&cli.config, cli.env_file.as_deref())
        .map_err(|errors| anyhow::anyhow!("{}", errors.to_string().trim_end()))
}

pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Check => check(&cli),
        Command::Serve => serve(&cli),
        Command::Events { command } => events(&cli, command),
        Command::Deliveries { command } => deliveries(&cli, command),
        Command::Groups { command } => groups(&cli, command),
        Command::Migrate => migrate(&cli),
        Command::Simulate {
            receiver,
            url,
            event_file,
        } => simulate(&cli, receiver, url.as_deref(), event_file.as_deref()),
        Command::Explain {
            receiver,
            event_file,
        } => explain(&cli, receiver, event_file),
    }
}

fn check(cli: &Cli) -> Result<()> {
    let config = load(cli)?;
    println!(
        "{}: OK, {} receiver(s)",
        cli.config.display(),
        config.receivers.len()
    );
    for r in &config.receivers {
        let at = if r.is_stream() {
            "(long connection)"
        } else {
            r.path.as_str()
        };
        println!("  {:<20} {:<15} {at}", r.name, r.vendor().as_str());
    }
    if !config.rules.is_empty() {
        println!("{} rule(s)", config.rules.len());
        for r in &config.rules {
            let kinds: Vec<&str> = r.actions.iter().map(|a| a.kind()).collect();
            println!("  {:<36} {}", r.name, kinds.join(", "));
        }
    }
    Ok(())
}

fn serve(cli: &Cli) -> Result<()> {
    let config = load(cli)?;
    // Idle sockets must not use up the descriptors callbacks need.
    let nofile = crate::server::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Before anything that takes time: SIGTERM during start-up is a clean stop too, and a
        // SIGHUP then is a reload, not the default (which would end the process).
        let mut stop_signal = shutdown_signal();
        let reloads = Reloads {
            path: cli.config.clone(),
            env_file: cli.env_file.clone(),
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        };
        let Some(store) = app::open_store(&config.store, &mut stop_signal)
            .await
            .context("opening the store")?
        else {
            return Ok(());
        };
        let listeners = Listeners::bind(&config.server).await?;
        let (receivers, location) = (config.receivers.clone(), store.location());
        let app = App::start(config, store, listeners).await?;
        tracing::info!(addr = %app.addr(), receivers = receivers.len(), store = %location, nofile, "hookgate listening.");
        for r in receivers.iter().filter(|r| !r.is_stream()) {
            tracing::info!(receiver = %r.name, vendor = %r.vendor(), path = %r.path, "Receiver ready.");
        }
        if let Some(addr) = app.admin_addr() {
            tracing::info!(addr = %addr, "Admin listener (metrics, health) ready.");
        }
        app.run_until(stop_signal, Some(reloads)).await;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (not when
/// first polled), so a signal that arrives while the gateway is still starting is caught too.
fn shutdown_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }),
            _ => Box::pin(async {
                let _ = tokio::signal::ctrl_c().await;
            }),
        }
    }
    #[cfg(not(unix))]
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The store a command reads (a SQLite file must exist: `nothing` says why it does not), on
/// a runtime for its calls.
fn open_existing(config: &Config, nothing: &str) -> Result<(tokio::runtime::Runtime, Store)> {
    if config.store.url.is_none() && !config.store.path.exists() {
        bail!("no store at {} yet: {nothing}", config.store.path.display());
    }
    crate::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(Store::open(&config.store))?;
    Ok((runtime, store))
}

fn migrate(cli: &Cli) -> Result<()> {
    let config = load(cli)?;
    crate::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime
        .block_on(Store::open(&config.store))
        .context("opening the store")?;
    match store.schema_versions() {
        (was, now) if was == now => {
            println!("{}: schema up to date (version {now})", store.location())
        }
        (was, now) => println!(
            "{}: schema migrated from version {was} to {now}",
            store.location()
        ),
    }
    Ok(())
}

fn events(cli: &Cli, command: &EventsCommand) -> Result<()> {
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

fn deliveries(cli: &Cli, command: &DeliveriesCommand) -> Result<()> {
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

fn simulate(
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

fn groups(cli: &Cli, command: &GroupsCommand) -> Result<()> {
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

fn explain(cli: &Cli, receiver: &str, event_file: &std::path::Path) -> Result<()> {
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
    let event = Event::parse(
        &r.name,
        r.vendor(),
        crate::crypto::Verified::new(text),
        now_ms(),
    )
    .with_context(|| format!("parsing {}", event_file.display()))?;
    let rules = RuleSet::new(&config).map_err(|e| anyhow::anyhow!(e))?;
    let view = EventView {
        id: 0,
        receiver: event.receiver(),
        vendor: event.vendor().as_str(),
        kind: event.kind(),
        dedupe_key: event.dedupe_key(),
        received_at_ms: event.received_at_ms(),
        fields: event.fields(),
    };
    println!(
        "event: receiver {}, kind {}, dedupe key {}",
        view.receiver, view.kind, view.dedupe_key
    );
    if config.rules.is_empty() {
        println!("no rules configured");
    }
    let matches = rules.matching(&view);
    for v in rules.verdicts(&view) {
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
                .map(|m| {
                    let mut t = String::new();
                    if let Some(at) = &m.at {
                        match crate::time::parse_time(at, &config.server.timezone) {
                            Some(ts) => t.push_str(&format!(
                                ", scheduled for {} (at)",
                                format_ms(ts.as_millisecond())
                            )),
                            None => t.push_str(&format!(", at {at:?} is not a time: runs at once")),
                        }
                    }
                    if let Some(d) = m.delay {
                        let due = view.received_at_ms + i64::try_from(d.as_millis()).unwrap_or(0);
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
                })
                .unwrap_or_default();
            match rules.render(&v.rule, j, &view) {
                Ok(rendered) => println!(
                    "  action {j} ({}{timing}):\n{}",
                    action.kind(),
                    indent(&describe(&rendered))
                ),
                Err(e) => println!("  action {j} ({}): render error: {e}", action.kind()),
            }
        }
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// A rendered action as `explain` shows it; secrets are not shown.
fn describe(r: &crate::rules::Rendered) -> String {
    use crate::rules::Rendered;
    match r {
        Rendered::Log { level, message } => format!("level: {level}\nmessage: {message}"),
        Rendered::Http(h) => {
            let mut s = format!("{} {}\n", h.method, h.url);
            for (k, v) in &h.headers {
                s.push_str(&format!("{k}: {v}\n"));
            }
            if h.secret.is_some() {
                s.push_str("X-Hookgate-Signature: sha256=<hmac of the body>\n");
            }
            s.push_str(&format!("\n{}", h.body));
            s
        }
        Rendered::App(a) => format!("via: {} ({:?})\n{:#?}", a.via, a.vendor, a.op),
        Rendered::AibotReply(r) => format!(
            "{} over {:?}'s connection, req_id {}\n{}",
            r.cmd,
            r.receiver,
            r.req_id,
            serde_json::to_string_pretty(&r.body).unwrap_or_default()
        ),
        Rendered::Cancel { key, rules } if rules.is_empty() => {
            format!("cancels every pending delivery with key {key:?}")
        }
        Rendered::Cancel { key, rules } => {
            format!("cancels the pending deliveries with key {key:?} of rules {rules:?}")
        }
        Rendered::Robot(r) => {
            let mut s = format!("POST {}\n", crate::actions::webhook_key(&r.webhook));
            if r.secret.is_some() {
                s.push_str("(signed with the robot's secret)\n");
            }
            s.push_str(&serde_json::to_string_pretty(&r.message).unwrap_or_default());
            s
        }
        Rendered::Email(m) => {
            let mut s = format!("via: {}\nto: {}\n", m.via, crate::rules::join_people(&m.to));
            if !m.cc.is_empty() {
                s.push_str(&format!("cc: {}\n", crate::rules::join_people(&m.cc)));
            }
            if !m.bcc.is_empty() {
                s.push_str(&format!("bcc: {}\n", crate::rules::join_people(&m.bcc)));
            }
            if m.one_per_recipient {
                s.push_str("(one message per recipient)\n");
            }
            s.push_str(&format!("subject: {}\n\n{}", m.subject, m.body));
            if let Some(html) = &m.html {
                s.push_str(&format!("\n\n[html]\n{html}"));
            }
            s
        }
    }
}

/// Unix milliseconds in the machine's time zone, to the second.
fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S%:z")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}
