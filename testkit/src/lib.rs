//! Test support shared by the workspace's suites.
//!
//! - [`binaries`]: builds and locates the workspace binaries for tests
//!   that run real processes.
//! - [`components`]: builds the adapter components in `plugins/` (once per
//!   test process; cargo itself skips the build when nothing changed) and
//!   returns their paths.
//! - [`pg`]: a throwaway PostgreSQL database per test, dropped afterwards.
//! - [`net`]: free loopback ports.

pub mod binaries;
pub mod components;
pub mod net;
pub mod pg;

use std::path::PathBuf;

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
