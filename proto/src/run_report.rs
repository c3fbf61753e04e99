//! The run lifecycle report a sync service pushes for each integration run.
//!
//! Sent with `PushStatus` as one service status {service_name `sync-run`,
//! service_type `sync`, source `status`} whose `message` is a JSON
//! [`RunReport`]. Heartbeats stay as the protocol defines them (service
//! `sync`, empty message); device data travels only in `StreamStatus`. A run
//! that emits no devices, or fails before emitting any, is still recorded.

use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// The run started.
    Started,
    /// The run finished and everything it emitted was acknowledged.
    Succeeded,
    /// The run failed; `error` says why.
    Failed,
}

/// One report about one run of one integration source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Integration source record id.
    pub integration_source_id: String,
    /// Tenant of the source (checked against the caller's scope).
    pub tenant_id: String,
    /// Run id, as stamped in `sync_meta.sync_run_id`.
    pub run_id: String,
    /// Lifecycle phase.
    pub phase: RunPhase,
    /// Devices delivered so far (final count when the run ended).
    #[serde(default)]
    pub devices: u64,
    /// Whether the run was a complete inventory (vs incremental).
    #[serde(default)]
    pub complete: bool,
    /// Failure cause, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Adapter that ran, `name@version`.
    #[serde(default)]
    pub adapter: String,
    /// When the phase was reached, RFC 3339.
    pub at: chrono::DateTime<chrono::Utc>,
}
