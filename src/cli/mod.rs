//! The `hookgate` command line: `serve` (`serve.rs`), `check`, `migrate`, `simulate` and
//! `explain` (`explain.rs`), `events list|show|replay`, `deliveries list|show|retry|cancel`,
//! `groups list|show|set|forget`, `audit` (`inspect.rs`, through [`crate::operate`] as the
//! admin API).

mod explain;
mod inspect;
mod serve;

use explain::{explain, simulate};
use inspect::{deliveries, events, groups};
use serve::serve;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::store::{DeliveryStatus, Store};

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
    /// List and show commands print JSON (the admin API's shapes) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
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
    Check {
        /// Sample events for a receiver (a file, or a directory of .json/.xml files), e.g.
        /// `hr=config/examples/events/wecom-contact-create-user.xml`; every firing rule's
        /// actions are rendered: a failure, or recipients all empty, is a warning.
        #[arg(long, value_name = "RECEIVER=FILE|DIR")]
        events: Vec<String>,
    },
    /// Show which rules a decrypted event (an XML or JSON file) fires and the rendered
    /// actions; sends nothing.
    Explain {
        /// The receiver the event arrives at.
        #[arg(long, required_unless_present = "schedule")]
        receiver: Option<String>,
        /// The decrypted callback body, as `hookgate events show` prints in `raw`;
        /// `config/examples/events/` has one for every vendor and recipe.
        #[arg(required_unless_present = "schedule")]
        event_file: Option<PathBuf>,
        /// Instead: the scheduled rules' next fire times; with a rule's name, also what its
        /// next slot would do.
        #[arg(long, value_name = "RULE", num_args = 0..=1, default_missing_value = "",
              conflicts_with_all = ["receiver", "event_file"])]
        schedule: Option<String>,
        /// Run the read-only lookups (a sql without write, an http GET, an api GET) for
        /// real, and render the later actions with their answers. Nothing is sent.
        #[arg(long, conflicts_with = "schedule")]
        live: bool,
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
        /// A decrypted event to send instead of the URL check (it is stored, rules fire):
        /// `config/examples/events/` has one for each vendor and recipe.
        event_file: Option<PathBuf>,
        /// Give the event new ids (message id, event id, time) so the gateway stores it and
        /// runs the rules, rather than taking it for the one it already has.
        #[arg(long, requires = "event_file")]
        fresh: bool,
        /// Trust this CA (PEM) for the --url's certificate besides the system's (a private
        /// CA in front of a test gateway; vendors themselves trust only public CAs).
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
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
    /// Remove now what `[store] keep_events` and `keep_deliveries` let go (`serve` does it
    /// in the background every `prune_every`). Never an event with a delivery not finished.
    Prune {
        /// Keep events this long (e.g. 30d) instead of `keep_events`.
        #[arg(long, value_parser = parse_keep)]
        events: Option<std::time::Duration>,
        /// Keep finished deliveries this long instead of `keep_deliveries`.
        #[arg(long, value_parser = parse_keep)]
        deliveries: Option<std::time::Duration>,
    },
    /// Ask the running gateway's /readyz (on admin_listen if set, else listen) and exit 0 if
    /// it is ready, 1 if not: a container HEALTHCHECK, a monitoring probe.
    Ready {
        /// Another URL to ask instead, e.g. http://127.0.0.1:9090/readyz.
        #[arg(long)]
        url: Option<String>,
    },
    /// Write the man pages (hookgate.1, and hookgate-serve.1 and so on for each command)
    /// into a directory; the Debian package ships them.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// What operators did (retries, cancels, replays, reloads), newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only entries below this id (the next page).
        #[arg(long)]
        before: Option<i64>,
    },
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
        /// waiting, pending, running, done, dead, cancelled, skipped (an `if` false when
        /// due), failed (pending after a failure) or scheduled (timers not due yet).
        #[arg(long, value_parser = parse_status)]
        status: Option<DeliveryStatus>,
        /// Only the deliveries of this event.
        #[arg(long)]
        event: Option<i64>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long)]
        receiver: Option<String>,
        /// Only those with this `key`.
        #[arg(long)]
        key: Option<String>,
        /// Only ids below this (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One delivery in full, with what it kept for the rule's later actions (`as`).
    Show { id: i64 },
    /// Call off a pending delivery (a timer) by id, or every one with a key.
    Cancel {
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        id: Option<i64>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Run a dead delivery (or every dead one, of a rule or receiver) again now, with a
    /// fresh retry deadline.
    Retry {
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<i64>,
        #[arg(long)]
        dead: bool,
        #[arg(long, requires = "dead")]
        rule: Option<String>,
        #[arg(long, requires = "dead")]
        receiver: Option<String>,
    },
}

fn parse_keep(s: &str) -> Result<std::time::Duration, String> {
    crate::time::parse_duration(s)
}

fn parse_status(s: &str) -> Result<DeliveryStatus, String> {
    DeliveryStatus::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of waiting, pending, running, done, dead, cancelled, skipped, failed, scheduled"))
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The newest events, one per line.
    List {
        #[command(flatten)]
        filter: EventFilter,
        /// Only ids below this (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One event with all its fields and every delivery it made, as JSON.
    Show { id: i64 },
    /// Run a stored event (or every one a filter selects, at most 500) through the rules as
    /// loaded now: new deliveries, marked as a replay; a rule with deliveries of the event
    /// still unfinished is left out. Needs the config's secrets (the rules render).
    Replay {
        #[arg(conflicts_with_all = ["receiver", "kind", "since", "until", "text"],
              required_unless_present_any = ["receiver", "kind", "since", "until", "text"])]
        id: Option<i64>,
        #[command(flatten)]
        filter: EventFilter,
        /// Only this rule's actions (say, the rule just fixed).
        #[arg(long)]
        rule: Option<String>,
    },
}

/// Which events a list or a replay takes.
#[derive(Debug, Clone, clap::Args)]
pub struct EventFilter {
    #[arg(long)]
    pub receiver: Option<String>,
    #[arg(long)]
    pub kind: Option<String>,
    /// Received at or after: a time (`2026-12-01 09:00`, in this machine's zone) or a
    /// duration ago (`2h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before: as `--since`.
    #[arg(long)]
    pub until: Option<String>,
    /// Text the stored body contains.
    #[arg(long)]
    pub text: Option<String>,
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
        Command::Check { events } => check(&cli, events),
        Command::Serve => serve(&cli),
        Command::Events { command } => events(&cli, command),
        Command::Deliveries { command } => deliveries(&cli, command),
        Command::Groups { command } => groups(&cli, command),
        Command::Migrate => migrate(&cli),
        Command::Man { dir } => man(dir),
        Command::Ready { url } => ready(&cli, url.as_deref()),
        Command::Audit { limit, before } => inspect::audit(&cli, *limit, *before),
        Command::Prune { events, deliveries } => inspect::prune(&cli, *events, *deliveries),
        Command::Simulate {
            receiver,
            url,
            event_file,
            fresh,
            ca_file,
        } => simulate(
            &cli,
            receiver,
            url.as_deref(),
            event_file.as_deref(),
            *fresh,
            ca_file.as_deref(),
        ),
        Command::Explain {
            schedule: Some(rule),
            ..
        } => explain::schedules(&cli, rule),
        Command::Explain {
            receiver: Some(receiver),
            event_file: Some(event_file),
            live,
            ..
        } => explain(&cli, receiver, event_file, *live),
        Command::Explain { .. } => {
            bail!("explain takes --receiver and an event file, or --schedule")
        }
    }
}

fn check(cli: &Cli, events: &[String]) -> Result<()> {
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
            let kinds: Vec<&str> = r.actions.iter().map(|a| a.action.kind()).collect();
            println!("  {:<36} {}", r.name, kinds.join(", "));
        }
    }
    if !events.is_empty() {
        let warnings = explain::sample_warnings(&config, events)?;
        for w in &warnings {
            println!("warning: {w}");
        }
        if warnings.is_empty() {
            println!("The sample events render every firing action.");
        }
    }
    Ok(())
}

/// `hookgate ready`: GET /readyz on the gateway this config runs; its answer printed.
fn ready(cli: &Cli, url: Option<&str>) -> Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let server = load(cli)?.server;
            crate::simulate::local_url(server.admin_listen.unwrap_or(server.listen), "/readyz")
        }
    };
    crate::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .no_proxy()
            .build()?
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(crate::actions::error::transport(&e)))?;
        let status = resp.status();
        anyhow::Ok((status, resp.text().await.unwrap_or_default()))
    })?;
    print!("{body}");
    if !status.is_success() {
        bail!("{url}: HTTP {status}: not ready");
    }
    Ok(())
}

/// `hookgate man DIR`: roff pages for the command and each subcommand.
fn man(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    println!("Man pages written to {}.", dir.display());
    Ok(())
}

/// The store a command reads (a SQLite file must exist: `nothing` says why it does not), on
/// a runtime for its calls.
fn open_existing(
    config: &crate::config::StoreConfig,
    nothing: &str,
) -> Result<(tokio::runtime::Runtime, Store)> {
    if config.url.is_none() && !config.path.exists() {
        bail!("no store at {} yet: {nothing}", config.path.display());
    }
    crate::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(Store::open(config))?;
    Ok((runtime, store))
}

/// `[store]` and `[delivery]` only: the commands that read the store need no other secret.
fn load_store(cli: &Cli) -> Result<crate::config::StoreOnly> {
    config::load_store(&cli.config, cli.env_file.as_deref())
        .map_err(|errors| anyhow::anyhow!("{}", errors.to_string().trim_end()))
}

fn migrate(cli: &Cli) -> Result<()> {
    let config = load_store(cli)?;
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
