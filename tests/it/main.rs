//! End-to-end suite: real `sr-gateway` and `sr-sync` processes, a real
//! PostgreSQL database per test, real mTLS with certificates the gateway
//! issued, real adapter components built from plugins/.

mod edge;
mod pipeline;
mod sources;
mod support;
mod sweep;
