//! Host integration tests: real components built from plugins/, run through
//! the real sandbox, registry and `sr-sync` binary.

mod cli;
mod containment;
mod egress;
mod faker;
mod registry;
mod support;
