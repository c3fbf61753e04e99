//! `sr-sync mock armis|netbox`: a mock source API for adapter authors.
//! The first line on stdout is the base URL (so scripts and tests can read
//! it even with `--port 0`); the next lines say how to use it.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use sr_host::mock::SourceKnobs;
use sr_host::mock::armis::{ArmisMock, ArmisOptions, DEFAULT_SECRET_KEY};
use sr_host::mock::inventory::{Churn, InventoryParams};
use sr_host::mock::netbox::{DEFAULT_TOKEN, DEFAULT_V2_TOKEN, NetboxMock, NetboxOptions};
use tokio::signal::unix::{SignalKind, signal};

/// Which API to mock.
#[derive(Clone, Copy, ValueEnum)]
pub enum Source {
    /// The Armis v1 REST API (token + AQL device search).
    Armis,
    /// The NetBox REST API (devices, interfaces, MAC addresses).
    Netbox,
}

/// Arguments of `mock`.
#[derive(Args)]
pub struct MockArgs {
    /// The API to mock.
    source: Source,
    /// Devices in the inventory.
    #[arg(long, default_value_t = 1000)]
    devices: u64,
    /// Port to listen on (0: any free port; the URL is printed first).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Seed of the generated inventory.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start at this run (churn applied for runs 1..=N).
    #[arg(long, default_value_t = 0)]
    run: u64,
    /// Percentage of device pairs swapping IPs per run.
    #[arg(long, default_value_t = 0)]
    ip_swap_percent: u32,
    /// Devices added per run.
    #[arg(long, default_value_t = 0)]
    add_per_run: u64,
    /// Devices removed per run.
    #[arg(long, default_value_t = 0)]
    remove_per_run: u64,
    /// Armis secret key to accept.
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    secret_key: String,
    /// NetBox classic token to accept (v2 `nbt_` tokens go with --v2-token).
    #[arg(long, default_value = DEFAULT_TOKEN)]
    token: String,
    /// NetBox v2 token to accept.
    #[arg(long, default_value = DEFAULT_V2_TOKEN)]
    v2_token: String,
    /// Delay every data page by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    page_delay_ms: u64,
}

/// Serves the mock until SIGINT or SIGTERM; SIGUSR1 moves to the next run.
pub async fn run(args: MockArgs) -> Result<()> {
    let bind = SocketAddr::new(args.bind, args.port);
    let inventory = InventoryParams {
        seed: args.seed,
        devices: args.devices,
        churn: Churn {
            ip_swap_percent: args.ip_swap_percent.min(100),
            add_per_run: args.add_per_run,
            remove_per_run: args.remove_per_run,
        },
    };
    let delay = std::time::Duration::from_millis(args.page_delay_ms);
    let mut out = std::io::stdout().lock();
    let set_run: Box<dyn Fn(u64)>;
    let (name, url, hint) = match args.source {
        Source::Armis => {
            let mock = ArmisMock::start(ArmisOptions {
                inventory,
                secret_key: args.secret_key.clone(),
                bind,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
            mock.set_run(args.run);
            mock.slow_pages(delay);
            let url = mock.base_url();
            let config = serde_json::json!({"endpoint": url, "credentials": {"secret_key": args.secret_key}});
            set_run = Box::new(move |run| mock.set_run(run));
            ("armis", url, config)
        }
        Source::Netbox => {
            let mock = NetboxMock::start(NetboxOptions {
                inventory,
                tokens: vec![args.token.clone()],
                v2_tokens: vec![args.v2_token.clone()],
                bind,
            })
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
            mock.set_run(args.run);
            mock.slow_pages(delay);
            let url = mock.base_url();
            let config = serde_json::json!({"endpoint": url, "credentials": {"token": args.token}});
            set_run = Box::new(move |run| mock.set_run(run));
            ("netbox", url, config)
        }
    };
    writeln!(out, "{url}")?;
    out.flush()?;
    // The URL is what scripts read; a reader that closed the pipe after it
    // must not stop the server, so the hints' write errors are ignored.
    let _ = writeln!(
        out,
        "{name} mock: {} devices, seed {}, run {}",
        args.devices, args.seed, args.run
    );
    let _ = writeln!(out, "config: {hint}");
    let _ = writeln!(
        out,
        "run adapters with --allow-loopback; SIGUSR1 moves to the next run (churn); Ctrl-C stops"
    );
    let _ = out.flush();
    drop(out);

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut next_run =
        signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut run = args.run;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = next_run.recv() => {
                run += 1;
                set_run(run);
                tracing::info!(run, "mock moved to the next run");
            }
        }
    }
    Ok(())
}
