//! ServiceRadar sync runtime.
//!
//! Runs integration adapters as sandboxed WebAssembly components behind the
//! versioned WIT contract in `wit/`, and turns what they emit into
//! DeviceUpdates.
//!
//! - [`sandbox`]: compile once, run every call in a fresh store under limits.
//! - [`egress`]: the policy and sender behind the guests' `wasi:http`.
//! - [`adapter`]: a loaded adapter (description, digest, pre-linked component).
//! - [`normalize`]: emitted devices → DeviceUpdates.
//! - [`daemon`]: the sync service (`sr-sync run`).
//! - [`enroll`]: fetching an edge onboarding package (`sr-sync enroll`).
//! - [`mock`]: mock Armis and NetBox servers for tests, benchmarks and authors.
//! - [`conformance`]: the adapter conformance kit (`sr-sync adapter check`).

pub mod adapter;
pub mod conformance;
pub mod daemon;
pub mod egress;
pub mod enroll;
pub mod local_run;
pub mod mock;
pub mod normalize;
pub mod registry;
pub mod sandbox;
