//! Host integration tests: real components built from plugins/, run through
//! the real sandbox, registry and `sr-sync` binary.

mod armis;
mod cli;
mod conformance;
mod containment;
mod egress;
mod faker;
mod netbox;
mod registry;
mod support;
