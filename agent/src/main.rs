//! `sr-agent`: keeps an agent's `sweep.json` in step with the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sr_agent::{AgentConfig, PollOutcome, SweepAgent};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "sr-agent",
    version,
    about = "Pull sweep config from the ServiceRadar gateway into sweep.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull the sweep config and keep the sweep file current.
    Run {
        /// The agent config file (written by onboarding).
        #[arg(long)]
        config: PathBuf,
        /// Pull once and exit (for cron): non-zero when the gateway is
        /// unreachable; the sweep file is then left as it is.
        #[arg(long)]
        once: bool,
    },
    /// Fetch an onboarding package (certificate, key, CA, config) with the
    /// one-time token the operator created.
    Enroll {
        /// The enrollment token (single use, expiring).
        #[arg(long)]
        token: String,
        /// Directory to write the files to.
        #[arg(long)]
        dir: PathBuf,
        /// Replace an existing key in the directory.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sr-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let (config, once) = match command {
        Command::Run { config, once } => (config, once),
        Command::Enroll { token, dir, force } => return enroll(&token, &dir, force).await,
    };
    let config = AgentConfig::load(&config)?;
    let mut agent = SweepAgent::new(&config)?;
    if once {
        let poll = agent
            .poll_once()
            .await
            .context("sweep config not updated (the sweep file is unchanged)")?;
        println!("{}", summary(&poll.outcome, &config));
        return Ok(());
    }
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    agent.run(shutdown).await;
    Ok(())
}

async fn enroll(token: &str, dir: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use sr_proto::enrollment::client::{EnrollOptions, enroll_with};
    let outcome = enroll_with(token, dir, EnrollOptions { force }).await?;
    if outcome.component_type != "agent" {
        anyhow::bail!(
            "this token enrolls a {} component ({}); use sr-sync enroll for sync services",
            outcome.component_type,
            outcome.component_id
        );
    }
    println!(
        "enrolled agent {} of tenant {} into {}",
        outcome.component_id,
        outcome.tenant_slug,
        outcome.dir.display()
    );
    println!(
        "start it with: sr-agent run --config {}",
        outcome.config_file.display()
    );
    Ok(())
}

fn summary(outcome: &PollOutcome, config: &AgentConfig) -> String {
    let file = config.sweep_file.display();
    match outcome {
        PollOutcome::NotModified => format!("not modified: {file} unchanged"),
        PollOutcome::Kept(reason) => {
            format!("kept the current sweep config ({reason:?}): {file} unchanged")
        }
        PollOutcome::Written {
            config_hash,
            targets,
            networks,
            warnings,
        } => format!(
            "wrote {file}: {targets} targets, {networks} networks, config_hash {config_hash}, {} entries skipped",
            warnings.len()
        ),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
