//! dropscope's API contract: the `dropscope.v1` protobuf messages, generated
//! from `proto/dropscope/v1/*.proto` (where every field is documented).
#![deny(missing_docs)]

/// Version 1 of the API.
#[allow(
    missing_docs,
    reason = "generated code: the .proto files carry the documentation"
)]
#[allow(clippy::all, reason = "generated code")]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/dropscope.v1.rs"));
}

#[cfg(test)]
mod tests;
