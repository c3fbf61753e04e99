//! The Faker adapter: deterministic synthetic devices for demos, load tests
//! and churn tests of device identity reconciliation.
//!
//! - [`generator`] is the device generator: pure Rust, no dependencies,
//!   usable natively with `default-features = false`
//!   (`faker::generator::run_devices(&params, run)`).
//! - With the default `component` feature the crate is also the adapter
//!   component (`describe` / `validate` / `discover` through
//!   `sr-adapter-sdk`), built with
//!   `cargo build --release --target wasm32-wasip2`.
//!
//! # Configuration
//!
//! ```json
//! {
//!   "page_size": 1000,
//!   "queries": [{"label": "lab", "query": ""}],
//!   "settings": {
//!     "seed": 1,
//!     "count": 100,
//!     "churn": {"ip_swap_percent": 0, "add_per_run": 0, "retire_per_run": 0}
//!   }
//! }
//! ```
//!
//! Every key is optional; the values shown are the defaults (`queries`
//! defaults to none, which labels devices `faker`). `count` may go up to
//! 10,000,000, `ip_swap_percent` from 0 to 100, `page_size` from 1 to 5000.
//! Unknown keys inside `settings` are refused. Each run emits the complete
//! inventory of its run number (summary `complete: true`, no cursor).
//!
//! # Device attributes
//!
//! `query_label` (the first configured query's label, or `faker`),
//! `risk_level` (0–99) and `site`. The host stamps `integration_type`
//! (`faker`, the source type) and `integration_id` (the source id, i.e. the
//! device id in decimal) itself; Faker does not set them.

pub mod generator;

#[cfg(feature = "component")]
mod component;
