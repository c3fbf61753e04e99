//! The `sr-sync` subcommands. Binary edge: errors are `anyhow`, output is
//! for humans (stderr) and pipelines (stdout).

pub mod adapter;
pub mod check;
pub mod enroll;
pub mod mock;
pub mod run;

use tracing_subscriber::EnvFilter;

/// Logs to stderr; `SR_LOG` (or `RUST_LOG`) sets the filter, default `info`.
pub fn init_tracing() {
    let filter = std::env::var("SR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// An error chain on one line: `outer: inner: root`.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
