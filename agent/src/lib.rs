//! dropscope: turns silent packet drops into named, explained events.
//!
//! The data path, one module per step:
//! kernel hook → [`capture`] (ring buffer, flow counters) → [`decode`] →
//! [`track`] → [`fanout`] → sinks ([`print`]). [`pipeline`] wires them.
#![deny(missing_docs)]

pub mod enrich;
pub mod explain;
pub mod model;
#[cfg(test)]
mod testkit;
