//! Compiles `proto/monitoring.proto` with protox (pure Rust): no `protoc` is
//! needed on any machine that builds this crate.
//!
//! Two outputs: the messages with client and server (`monitoring`), and a
//! second server (`gateway_server`) that shares those messages but answers
//! GetConfig with [`EncodedConfigResponse`], whose large fields are encoded
//! once per config version instead of once per call.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/monitoring.proto");
    let descriptors = protox::compile(["monitoring.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Ordered maps: the same message always encodes to the same bytes.
        .btree_map(".")
        .compile_fds(descriptors.clone())?;

    let server_dir = PathBuf::from(std::env::var("OUT_DIR")?).join("gateway_server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server_dir)
        .extern_path(".monitoring", "crate::monitoring")
        .extern_path(
            ".monitoring.AgentConfigResponse",
            "crate::encoded_response::EncodedConfigResponse",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
