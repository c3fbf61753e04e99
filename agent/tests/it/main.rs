//! sr-agent integration tests: the application rules, the atomic sweep
//! file, and pulls from a gateway over real mTLS.

mod apply;
mod cli;
mod grpc;
mod support;
mod sweep_file;
