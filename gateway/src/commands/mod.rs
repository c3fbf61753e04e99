//! Binary-only subcommands.

pub mod demo;
