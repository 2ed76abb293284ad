//! Generates the dropscope.v1 messages with prost (protoc comes from the
//! `protobuf-compiler` package, installed by `cargo xtask bootstrap`).
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=dropscope");
    prost_build::Config::new().compile_protos(&["dropscope/v1/event.proto"], &["."])
}
