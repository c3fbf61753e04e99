//! `sr-sync adapter inspect|run`: what an adapter author runs locally.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sr_host::adapter::{AdapterDescription, LoadedAdapter};
use sr_host::egress::AddressPermissions;
use sr_host::local_run::{LocalRunOptions, parse_config, run_local};
use sr_host::sandbox::world::ComponentInterface;
use sr_host::sandbox::{RunLimits, Sandbox, SandboxConfig};

/// Adapter author tools.
#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Show what a component is: describe() output, digest, imports/exports, declared hosts.
    Inspect {
        /// The component (`.wasm`).
        component: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run validate + discover locally and write NDJSON DeviceUpdates to stdout.
    Run(RunArgs),
    /// Run the conformance kit against the adapter's source; pass/fail per check.
    Check(super::check::CheckArgs),
}

/// Arguments of `adapter run`.
#[derive(Args)]
pub struct RunArgs {
    /// The component (`.wasm`).
    component: PathBuf,
    /// Integration config: a JSON object (`endpoint`, `credentials`, `settings`, ...).
    #[arg(long)]
    config: PathBuf,
    /// Print a JSON summary instead of the DeviceUpdates.
    #[arg(long)]
    summary: bool,
    /// Run number passed to the adapter (drives Faker churn).
    #[arg(long, default_value_t = 0)]
    run_number: u64,
    /// Cursor passed to the adapter (an incremental run).
    #[arg(long)]
    cursor: Option<String>,
    /// Also allow egress to this host (repeatable; `*.example.com` allowed).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Allow egress to loopback addresses (local mock servers).
    #[arg(long)]
    allow_loopback: bool,
    /// Skip validate().
    #[arg(long)]
    skip_validate: bool,
    /// Memory cap per linear memory, MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// CPU budget, seconds.
    #[arg(long)]
    cpu_secs: Option<u64>,
    /// Wall-clock budget, seconds.
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// Maximum devices the run may emit.
    #[arg(long)]
    max_devices: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Runs an adapter subcommand.
pub async fn run(command: AdapterCommand) -> Result<()> {
    match command {
        AdapterCommand::Inspect { component, json } => inspect(&component, json).await,
        AdapterCommand::Run(args) => run_adapter(args).await,
        AdapterCommand::Check(args) => super::check::run(args).await,
    }
}

async fn load(path: &Path) -> Result<(Arc<Sandbox>, Arc<LoadedAdapter>)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default())?);
    let adapter = sandbox
        .load(&bytes)
        .await
        .with_context(|| format!("cannot load {}", path.display()))?;
    Ok((sandbox, Arc::new(adapter)))
}

#[derive(Serialize)]
struct Inspection<'a> {
    file: String,
    digest: String,
    size_bytes: u64,
    description: &'a AdapterDescription,
    interface: &'a ComponentInterface,
}

async fn inspect(path: &Path, json: bool) -> Result<()> {
    let (_sandbox, adapter) = load(path).await?;
    let report = Inspection {
        file: path.display().to_string(),
        digest: adapter.digest().to_string(),
        size_bytes: adapter.size_bytes(),
        description: adapter.description(),
        interface: adapter.interface(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    let d = report.description;
    writeln!(out, "adapter      {}@{}", d.name, d.version)?;
    writeln!(out, "source type  {}", d.source_type)?;
    writeln!(out, "summary      {}", d.summary)?;
    writeln!(
        out,
        "file         {} ({} bytes)",
        report.file, report.size_bytes
    )?;
    writeln!(out, "digest       {}", report.digest)?;
    if d.hosts.is_empty() {
        writeln!(out, "hosts        none beyond the integration endpoint")?;
    } else {
        writeln!(
            out,
            "hosts        {} (each must also be allowed by the operator)",
            d.hosts.join(", ")
        )?;
    }
    writeln!(out, "exports")?;
    for name in &report.interface.exports {
        writeln!(out, "  {name}")?;
    }
    writeln!(out, "imports")?;
    for name in &report.interface.imports {
        writeln!(out, "  {name}")?;
    }
    writeln!(out, "config schema")?;
    writeln!(out, "{}", serde_json::to_string_pretty(&d.config_schema)?)?;
    Ok(())
}

async fn run_adapter(args: RunArgs) -> Result<()> {
    let config_text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read config {}", args.config.display()))?;
    let config =
        parse_config(&config_text).with_context(|| format!("{}", args.config.display()))?;
    let (sandbox, adapter) = load(&args.component).await?;

    let defaults = RunLimits::default();
    let limits = RunLimits {
        memory_mb: args.memory_mb.unwrap_or(defaults.memory_mb),
        cpu_secs: args.cpu_secs.unwrap_or(defaults.cpu_secs),
        wall_clock_secs: args.timeout_secs.unwrap_or(defaults.wall_clock_secs),
        max_devices: args.max_devices.unwrap_or(defaults.max_devices),
        max_emit_mb: defaults.max_emit_mb,
    };
    let options = LocalRunOptions {
        allow_hosts: args.allow_hosts.clone(),
        permissions: AddressPermissions {
            allow_loopback: args.allow_loopback,
            ..Default::default()
        },
        limits: Some(limits),
        run_number: args.run_number,
        cursor: args.cursor.clone(),
        skip_validate: args.skip_validate,
    };

    let bar = progress_bar(args.no_progress);
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout());
    let write_updates = !args.summary;
    // A reader that stops early (`| head`) closes stdout: stop quietly.
    let mut reader_gone = false;
    let sink = |update: &sr_proto::DeviceUpdate| -> Result<(), String> {
        if write_updates {
            let written = serde_json::to_writer(&mut out, update)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(error) = written {
                reader_gone = error.kind() == std::io::ErrorKind::BrokenPipe;
                return Err(error.to_string());
            }
        }
        Ok(())
    };
    let progress_bar = bar.clone();
    let progress = move |count: u64| progress_bar.set_position(count);
    let result = run_local(&sandbox, &adapter, &config, &options, sink, progress).await;
    bar.finish_and_clear();
    if reader_gone {
        return Ok(());
    }
    let summary = result?;
    if args.summary {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    }
    match out.flush() {
        // The reader stopped early (`| head`): not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        result => result.context("writing output")?,
    }
    drop(out);
    eprintln!(
        "{}: {} devices emitted, {} updates in {:.2}s{}",
        summary.adapter,
        summary.devices_emitted,
        summary.updates,
        summary.elapsed_secs,
        if summary.normalization.has_warnings() {
            " (some data dropped: see the warning above)"
        } else {
            ""
        }
    );
    Ok(())
}

fn progress_bar(disabled: bool) -> ProgressBar {
    if disabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos} devices ({per_sec}) {elapsed}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
