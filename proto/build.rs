//! Generates the dropscope.v1 messages (prost), their proto3 JSON mapping
//! (pbjson) and the Observer service (tonic), and keeps the file descriptor
//! set for server reflection. protoc comes from the `protobuf-compiler`
//! package, installed by `cargo xtask bootstrap`.
use std::{env, path::PathBuf};

const PROTOS: [&str; 3] = [
    "dropscope/v1/event.proto",
    "dropscope/v1/observer.proto",
    "dropscope/v1/collector.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=dropscope");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("dropscope_descriptor.bin");
    tonic_prost_build::configure()
        // Clients dial through their own connector (Unix socket, TLS).
        .build_transport(false)
        // Maps in key order: the same event prints the same bytes everywhere.
        .btree_map(".")
        .file_descriptor_set_path(&descriptors)
        // Well-known types with their proto3 JSON mapping (RFC 3339 times).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&PROTOS, &["."])?;
    let set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .btree_map(["."])
        .build(&[".dropscope"])?;
    Ok(())
}
