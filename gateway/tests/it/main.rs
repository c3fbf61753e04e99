//! Integration tests of the gateway: real PostgreSQL (a database per test),
//! real gRPC over real mTLS with certificates the gateway issued, the real
//! admin API over HTTPS.

mod bootstrap;
mod config;
mod dire;
mod identity;
mod ingest;
mod onboarding;
mod sources;
mod status;
mod support;
mod tenants;
