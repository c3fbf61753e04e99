//! TEST FIXTURE, not a product.
//!
//! A plain Rust program. Built for `wasm32-wasip2` it becomes a
//! `wasi:cli/command` component (it exports `wasi:cli/run`, none of the
//! adapter functions), which the sync host must refuse to load as an
//! adapter. Cargo names the file `sr-test-cli-command.wasm`: binaries keep
//! the dashes of their name, unlike libraries.

fn main() {
    println!("sr-test-cli-command: a wasi:cli command, not a ServiceRadar adapter");
}
