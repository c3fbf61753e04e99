//! `sr-sync run`: the sync service daemon.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use sr_host::daemon::config::HostConfig;
use sr_host::daemon::{DaemonOptions, start};

/// Arguments of `run`.
#[derive(Args)]
pub struct RunArgs {
    /// The sync config file (written by `sr-gateway bootstrap` or `sr-sync enroll`).
    #[arg(long)]
    config: PathBuf,
    /// Run every integration once, then exit (cron-style).
    #[arg(long)]
    once: bool,
    /// Seconds runs in flight may take to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
}

/// Runs the daemon until SIGTERM/SIGINT (or, with `--once`, until every
/// integration ran once).
pub async fn run(args: RunArgs) -> Result<()> {
    let config = HostConfig::load(&args.config)?;
    let mut daemon = start(config, DaemonOptions { once: args.once })
        .await
        .context("starting the sync service")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = daemon.wait() => {
            let status = daemon.status().borrow().clone();
            let failed: Vec<String> = status
                .sources
                .iter()
                .filter_map(|(key, s)| s.last_error.as_ref().map(|e| format!("{key}: {e}")))
                .collect();
            if !failed.is_empty() {
                anyhow::bail!("{} integration(s) failed: {}", failed.len(), failed.join("; "));
            }
            return Ok(());
        }
        _ = terminate.recv() => tracing::info!("SIGTERM: finishing runs in flight"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: finishing runs in flight"),
    }
    daemon.shutdown(Duration::from_secs(args.grace_secs)).await;
    Ok(())
}
