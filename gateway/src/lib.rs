//! ServiceRadar gateway.

pub mod ingest;
