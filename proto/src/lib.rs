//! The ServiceRadar agent-gateway protocol and the wire models both sides share.
//!
//! - [`monitoring`]: the generated protobuf messages and the
//!   `AgentGatewayService` client and server (package `monitoring`).
//! - [`gateway_server`]: the server the gateway implements, answering
//!   GetConfig with [`encoded_response`]'s pre-encoded responses.
//! - [`connect`]: an mTLS gateway client from a component's certificate files.
//! - [`device_update`]: the DeviceUpdate JSON object carried in sync results.
//! - [`chunking`]: packing DeviceUpdates into self-contained JSON-array chunks.
//! - [`sync_config`]: the sync config document delivered by GetConfig and the
//!   minimal bootstrap file a sync service starts from.
//! - [`run_report`]: the run lifecycle report a sync service pushes.
//! - [`enrollment`]: edge enrollment tokens (and, with the `enroll-client`
//!   feature, the client that redeems them).
//! - [`duration`]: Go-style duration strings (`5m`, `1h30m`).
//! - [`error_chain`]: error messages that keep their causes.
//! - [`limits`]: the size limits of the protocol.

pub mod chunking;
pub mod connect;
pub mod device_update;
pub mod duration;
pub mod encoded_response;
pub mod enrollment;
pub mod error_chain;
pub mod limits;
pub mod run_report;
pub mod sync_config;

/// Generated protobuf types and gRPC stubs for package `monitoring`.
#[allow(clippy::all, missing_docs)]
pub mod monitoring {
    tonic::include_proto!("monitoring");
}

/// The gateway's side of `AgentGatewayService`: the same service and
/// messages as [`monitoring`], except that GetConfig answers with an
/// [`encoded_response::EncodedConfigResponse`] (identical on the wire).
#[allow(clippy::all, missing_docs)]
pub mod gateway_server {
    include!(concat!(env!("OUT_DIR"), "/gateway_server/monitoring.rs"));
}

pub use device_update::{DeviceUpdate, SyncMeta};
