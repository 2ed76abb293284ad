//! dropscope: turns silent packet drops into named, explained events.
//!
//! The data path, one module per step:
//! kernel hook → [`capture`] (ring buffer, flow counters) → [`decode`] →
//! [`track`] → [`fanout`] → sinks ([`print`]). [`pipeline`] wires them.
#![deny(missing_docs)]

pub mod cli;
pub mod enrich;
pub mod explain;
pub mod model;
pub mod print;
#[cfg(test)]
mod testkit;
