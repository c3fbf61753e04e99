//! Adapter egress: the only way out of the sandbox is `wasi:http`, and only
//! to hosts allowed for the run, at addresses the operator permits.

pub mod policy;
pub mod send;

pub use policy::{AddressPermissions, Denial, EgressPolicy, HostPattern};
