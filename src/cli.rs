//! The `hookgate` command line: `serve`, `check`, `events list`, `events show`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::server::{self, AppState};
use crate::store::{ListFilter, Store};

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
    /// Read stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
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
    config::load(&cli.config).map_err(|errors| anyhow::anyhow!("{}", errors.to_string().trim_end()))
}

pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Check => check(&cli),
        Command::Serve => serve(&cli),
        Command::Events { command } => events(&cli, command),
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
        println!("  {:<20} {:<15} {}", r.name, r.vendor().as_str(), r.path);
    }
    Ok(())
}

fn serve(cli: &Cli) -> Result<()> {
    let config = load(cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(&config.store).context("opening the store")?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, receivers = config.receivers.len(), store = %config.store.path.display(), "hookgate listening.");
        for r in &config.receivers {
            tracing::info!(receiver = %r.name, vendor = %r.vendor(), path = %r.path, "Receiver ready.");
        }
        let state = Arc::new(AppState::new(&config, store));
        server::run(listener, state, shutdown_signal()).await;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn events(cli: &Cli, command: &EventsCommand) -> Result<()> {
    let config = load(cli)?;
    if !config.store.path.exists() {
        bail!(
            "no store at {} yet: nothing has been received",
            config.store.path.display()
        );
    }
    let store = Store::open(&config.store)?;
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
            for e in store.list(&filter)? {
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
        EventsCommand::Show { id } => match store.get(*id)? {
            Some(e) => println!("{}", serde_json::to_string_pretty(&e)?),
            None => bail!("no event with id {id}"),
        },
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
