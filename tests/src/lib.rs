//! The lab for dropscope's end-to-end tests: a node, pods as network
//! namespaces, nftables rules written like kube-proxy and like a policy
//! enforcer, traffic helpers, and the real agent binary watching the real
//! kernel.
//!
//! Everything a lab makes lives inside network namespaces it names uniquely
//! (process id + counter) and deletes on drop, panics included; each test
//! filters the agent's events to its own addresses, so tests run in parallel.
#![deny(missing_docs)]

pub mod apiserver;
pub mod demo;
pub mod lab;
pub mod otlp_server;
pub mod tls_incoming;

pub use lab::{Agent, Lab, Pod};
