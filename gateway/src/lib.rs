//! The ServiceRadar gateway: the only door into the platform.
//!
//! Every caller is identified by its client certificate alone ([`identity`]);
//! the control plane keeps tenants ([`tenants`]), sync services
//! ([`sync_services`]), edge onboarding ([`onboarding`]) and integration
//! sources ([`integration_sources`]) in PostgreSQL ([`db`]), and delivers each
//! sync service its versioned config document ([`config_doc`],
//! [`config_delivery`]) over gRPC ([`grpc`]). Device data arrives through
//! [`ingest`] and is reconciled by [`dire`] into the tenant's schema;
//! [`sweep`] turns a tenant's devices into agents' sweep configs.
//! Operators use the HTTPS admin API ([`admin`]). [`server`] starts both
//! listeners; [`bootstrap`] creates a new installation.

pub mod admin;
pub mod admin_tokens;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod config_delivery;
pub mod config_doc;
pub mod db;
pub mod dire;
pub mod grpc;
pub mod identity;
pub mod ingest;
pub mod integration_sources;
pub mod onboarding;
pub mod pki;
pub mod secrets;
pub mod server;
pub mod state;
pub mod sweep;
pub mod sweep_delivery;
pub mod sync_services;
pub mod tenants;

/// Installs the ring crypto provider as the process default (idempotent).
/// rustls is built without a default provider, so every entry point calls this.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
