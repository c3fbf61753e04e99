//! The ServiceRadar gateway: certificate identity, control plane, config
//! delivery, device ingestion and sweep generation.
//!
//! - [`dire`]: the device identity reconciliation engine, which turns device
//!   updates into canonical devices in a tenant's schema.
//! - [`ingest`]: StreamStatus validation and payload decoding.

pub mod dire;
pub mod ingest;
