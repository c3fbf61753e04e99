//! ServiceRadar agent side of sweep delivery: pull the sweep configuration
//! from the gateway over mTLS (Hello, versioned GetConfig) and keep it in a
//! `sweep.json` file, so agents that only read files get gateway-generated
//! sweeps with no key-value store anywhere.
//!
//! - [`config`]: the agent's bootstrap file.
//! - [`client`]: Hello and GetConfig over mTLS.
//! - [`document`]: the `sweep.json` shape and its lenient validation.
//! - [`apply`]: the rules for applying a response's sweep section (pure).
//! - [`sweep_file`]: reading the local file, writing it atomically.
//! - [`poll`]: the polling loop tying them together.

pub mod apply;
pub mod client;
pub mod config;
pub mod document;
pub mod poll;
pub mod sweep_file;

pub use apply::{Decision, KeepReason, SweepSection, decide, sweep_section};
pub use config::AgentConfig;
pub use document::{DeviceTarget, SweepDocument};
pub use poll::{ConfigSource, Poll, PollOutcome, SweepAgent};
