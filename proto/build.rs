//! Compiles `proto/monitoring.proto` with protox (pure Rust): no `protoc` is
//! needed on any machine that builds this crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/monitoring.proto");
    let descriptors = protox::compile(["monitoring.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Ordered maps: the same message always encodes to the same bytes.
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
