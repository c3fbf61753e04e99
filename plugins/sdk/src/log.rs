//! Structured logging through the host's `log` import.
//!
//! The host adds the adapter, integration and run to every record, so
//! messages only need what is specific to them:
//!
//! ```no_run
//! sr_adapter_sdk::log::info("fetched page", &[("page", "3"), ("devices", "500")]);
//! ```
//!
//! Never log credentials, tokens or full URLs with secrets in their query
//! (use [`Url::redacted`](crate::url::Url::redacted)).

use crate::bindings::serviceradar::adapter::host;
use crate::bindings::serviceradar::adapter::types::LogLevel;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Diagnostics for developers.
    Debug,
    /// Normal progress.
    Info,
    /// Something unusual the run survived.
    Warn,
    /// Something failed.
    Error,
}

/// Writes one record with `fields` as key/value pairs.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let level = match level {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    host::log(level, message, &fields);
}

/// Writes a trace record.
pub fn trace(message: &str, fields: &[(&str, &str)]) {
    log(Level::Trace, message, fields);
}

/// Writes a debug record.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields);
}

/// Writes an info record.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields);
}

/// Writes a warning record.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields);
}

/// Writes an error record.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields);
}
