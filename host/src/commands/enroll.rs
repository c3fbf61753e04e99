//! `sr-sync enroll`: fetch an edge onboarding package with its one-time
//! token and write the identity and minimal config.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sr_host::enroll::{EnrollOptions, enroll_with};

/// Arguments of `enroll`.
#[derive(Args)]
pub struct EnrollArgs {
    /// The enrollment token from the admin API (single use, expiring).
    #[arg(long)]
    token: String,
    /// Directory to write the certificate, key, CA bundle and config to.
    #[arg(long)]
    dir: PathBuf,
    /// Replace an existing key in the directory.
    #[arg(long)]
    force: bool,
}

/// Enrolls and says what was written and how to start.
pub async fn run(args: EnrollArgs) -> Result<()> {
    let outcome = enroll_with(&args.token, &args.dir, EnrollOptions { force: args.force }).await?;
    println!(
        "enrolled {} {} of tenant {} into {}",
        outcome.component_type,
        outcome.component_id,
        outcome.tenant_slug,
        outcome.dir.display()
    );
    for file in &outcome.files {
        println!("  wrote {}", file.display());
    }
    if outcome.component_type == "sync" {
        println!(
            "start it with: sr-sync run --config {}",
            outcome.config_file.display()
        );
    } else {
        println!(
            "start it with: sr-agent run --config {}",
            outcome.config_file.display()
        );
    }
    Ok(())
}
