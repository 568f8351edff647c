//! `hookgate serve`: load the config, wait for the store, bind, run the app until SIGTERM
//! or SIGINT, reloading on SIGHUP and when the file changes.

use anyhow::{Context, Result};

use super::{Cli, load};
use crate::app::{self, App, Listeners, Reloads};

pub(super) fn serve(cli: &Cli) -> Result<()> {
    // Read before the config: an edit from here on is reloaded once the app runs.
    let loaded = app::file_digest(&cli.config);
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
            asked: None,
            loaded,
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
            tracing::info!(addr = %addr, "Admin listener (API, metrics, health) ready.");
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
