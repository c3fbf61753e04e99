//! The workspace's binaries (`sr-gateway`, `sr-sync`, `sr-agent`) for tests
//! that run real processes.
//!
//! The first call in a process runs `cargo build --workspace --bins` into the
//! target directory the tests were built in (cargo skips it when nothing
//! changed), so a test never runs a stale binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Path of a workspace binary, built if needed.
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    let path = dir.join(name);
    if !path.exists() {
        bail!("binary {name} was not built into {}", dir.display());
    }
    Ok(path)
}

/// `<target>/debug`, derived from the running test executable
/// (`<target>/debug/deps/<test>`), so `CARGO_TARGET_DIR` is respected.
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let deps = exe.parent().context("test executable has no directory")?;
    let profile = deps
        .parent()
        .context("test executable is not under <target>/<profile>/deps")?;
    Ok(profile.to_path_buf())
}

fn build() -> Result<PathBuf> {
    let profile = profile_dir()?;
    let target = profile
        .parent()
        .context("profile directory has no parent")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    command
        .current_dir(crate::repo_root())
        .args(["build", "--workspace", "--bins", "--quiet"]);
    if profile.file_name().is_some_and(|n| n == "release") {
        // `<target>/release` holds bench builds: build the binaries with the
        // bench profile too. Cargo fingerprints units by profile name, so
        // `--release` here would rebuild every shared dependency on each
        // bench run, and the bench's own build would rebuild them back.
        command.args(["--profile", "bench"]);
    }
    let output = command
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .with_context(|| format!("running {cargo} build --workspace --bins"))?;
    if !output.status.success() {
        bail!(
            "building the workspace binaries failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(profile)
}
