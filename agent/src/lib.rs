//! dropscope: turns silent packet drops into named, explained events.
//!
//! The data path, one module per step: kernel hook ([`kernel`]) → ring
//! buffer and flow counters ([`capture`]) → [`decode`] → [`track`] →
//! identities and NetworkPolicy verdicts ([`enrich`], [`explain`]) →
//! [`fanout`] (converted once to the `dropscope.v1` contract by
//! [`convert`]) → sinks ([`print`], [`serve`], [`metrics`]). [`pipeline`]
//! wires them; [`model`] holds the types that flow between them.
#![deny(missing_docs)]

pub mod capture;
pub mod cli;
pub mod client;
pub mod collector;
pub mod config;
pub mod convert;
pub mod decode;
pub mod enrich;
pub mod explain;
pub mod export;
pub mod fanout;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod nats;
pub mod otlp;
pub mod pipeline;
pub mod print;
#[cfg(test)]
mod reference;
pub mod serve;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod track;
