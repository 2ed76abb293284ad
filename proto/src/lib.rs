//! dropscope's API contract: the `dropscope.v1` protobuf messages and the
//! `Observer` and `Collector` gRPC services, generated from `proto/dropscope/v1/*.proto`
//! (where every field is documented). Every message also implements serde
//! with the proto3 JSON mapping (pbjson): the one JSON shape dropscope
//! prints.
#![deny(missing_docs)]

/// Version 1 of the API.
#[allow(
    missing_docs,
    reason = "generated code: the .proto files carry the documentation"
)]
#[allow(clippy::all, reason = "generated code")]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/dropscope.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/dropscope.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of every dropscope.v1 file and its
/// imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dropscope_descriptor.bin"));

/// The fully qualified name of the Observer service (for health checks).
pub const OBSERVER_SERVICE: &str = "dropscope.v1.Observer";

/// The fully qualified name of the Collector service (for health checks).
pub const COLLECTOR_SERVICE: &str = "dropscope.v1.Collector";

#[cfg(test)]
mod tests;
