//! Building the adapter components of `plugins/` for tests.
//!
//! The first call in a process runs `cargo build --release --target
//! wasm32-wasip2` in `plugins/` with its own target directory; cargo skips
//! crates that have not changed, so a warm call costs well under a second.
//! Later calls in the same process reuse the result. When rustup manages
//! the toolchain and lacks the `wasm32-wasip2` target, it is added first, so
//! tests and benches work on a fresh machine as the scripts do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Directory holding the built `*.wasm` components.
pub fn components_dir() -> Result<PathBuf> {
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Path of the built component of the plugin crate `name` (e.g. `faker`,
/// `sr-test-misbehave`). Library components are named with underscores
/// (`sr_test_misbehave.wasm`), binary (command) components keep their dashes.
pub fn component(name: &str) -> Result<PathBuf> {
    let dir = components_dir()?;
    let library = dir.join(format!("{}.wasm", name.replace('-', "_")));
    let binary = dir.join(format!("{name}.wasm"));
    for path in [library, binary] {
        if path.exists() {
            return Ok(path);
        }
    }
    bail!("component {name} was not built; is it a member of plugins/Cargo.toml (cdylib or bin)?")
}

/// Adds the `wasm32-wasip2` target with rustup when it is missing. Without
/// rustup this does nothing; the build then fails naming the target.
fn ensure_wasm_target(plugins: &Path) -> Result<()> {
    let Ok(installed) = Command::new("rustup")
        .current_dir(plugins)
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    if !installed.status.success()
        || String::from_utf8_lossy(&installed.stdout)
            .lines()
            .any(|line| line.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    let added = Command::new("rustup")
        .current_dir(plugins)
        .args(["target", "add", "wasm32-wasip2"])
        .output()
        .context("running rustup target add wasm32-wasip2")?;
    if !added.status.success() {
        bail!(
            "adding the wasm32-wasip2 target failed; run `rustup target add wasm32-wasip2`:\n{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    Ok(())
}

fn build() -> Result<PathBuf> {
    let plugins = crate::repo_root().join("plugins");
    ensure_wasm_target(&plugins)?;
    let target_dir = plugins.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(&cargo)
        .current_dir(&plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Settings of the outer build must not leak into the wasm build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .with_context(|| format!("running {cargo} build in {}", plugins.display()))?;
    if !output.status.success() {
        bail!(
            "building plugins/ for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(release_dir(&target_dir))
}

fn release_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("wasm32-wasip2").join("release")
}
