//! `sr-sync adapter check`: the conformance kit, as a table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use sr_host::conformance::{CheckOptions, DEFAULT_MEMORY_MB, Report, check};
use sr_host::egress::AddressPermissions;
use sr_host::local_run::parse_config;
use sr_host::sandbox::{RunLimits, Sandbox, SandboxConfig};

/// Arguments of `adapter check`.
#[derive(Args)]
pub struct CheckArgs {
    /// The component (`.wasm`).
    component: PathBuf,
    /// Integration config pointing at the source to check against (a mock
    /// or a real URL): `endpoint`, `credentials`, `settings`, ...
    #[arg(long)]
    config: PathBuf,
    /// Allow egress to loopback addresses (local mock servers).
    #[arg(long)]
    allow_loopback: bool,
    /// Memory cap of the `memory` check, MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// Wall-clock budget of each run, seconds.
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Renders the report as a table.
fn table(report: &Report) -> String {
    let mut out = String::new();
    let against = if report.endpoint.is_empty() {
        "no endpoint".to_string()
    } else {
        report.endpoint.clone()
    };
    out.push_str(&format!(
        "adapter check: {} against {against}\n",
        report.adapter
    ));
    out.push_str(&format!("digest {}\n\n", report.digest));
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!("{:<width$}  {:<6}  DETAIL\n", "CHECK", "RESULT"));
    for check in &report.checks {
        out.push_str(&format!(
            "{:<width$}  {:<6}  {}\n",
            check.name,
            check.outcome.label(),
            check.detail
        ));
    }
    let count = |label: &str| {
        report
            .checks
            .iter()
            .filter(|c| c.outcome.label() == label)
            .count()
    };
    out.push_str(&format!(
        "\n{} passed, {} failed, {} skipped\n",
        count("pass"),
        count("FAIL"),
        count("skip")
    ));
    out
}

/// Runs the checks, prints the report, and fails when a check failed.
pub async fn run(args: CheckArgs) -> Result<()> {
    let config_text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read config {}", args.config.display()))?;
    let config =
        parse_config(&config_text).with_context(|| format!("{}", args.config.display()))?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read component {}", args.component.display()))?;
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let adapter = sandbox
        .load(&bytes)
        .await
        .with_context(|| format!("cannot load {}", args.component.display()))?;
    let defaults = RunLimits::default();
    let options = CheckOptions {
        permissions: AddressPermissions {
            allow_loopback: args.allow_loopback,
            ..Default::default()
        },
        memory_mb: args.memory_mb,
        limits: RunLimits {
            wall_clock_secs: args.timeout_secs.unwrap_or(defaults.wall_clock_secs),
            ..defaults
        },
    };
    let report = check(&sandbox, &adapter, &config, &options).await;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(table(&report).as_bytes())?;
    }
    out.flush()?;
    let failures = report.failures();
    if !failures.is_empty() {
        let names: Vec<&str> = failures.iter().map(|c| c.name).collect();
        bail!(
            "{} of {} checks failed: {}",
            failures.len(),
            report.checks.len(),
            names.join(", ")
        );
    }
    Ok(())
}
