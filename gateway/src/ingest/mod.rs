//! Device ingestion: StreamStatus streams from sync services, validated
//! chunk by chunk, decoded, scoped by the caller's certificate, reconciled
//! by DIRE into the tenant's schema in one transaction per stream, and
//! acknowledged only after commit.

pub mod decode;
pub mod scope;
pub mod service;
pub mod stream_check;

pub use service::DeviceIngest;
