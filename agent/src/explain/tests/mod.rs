//! The explain suites: NetworkPolicy semantics (one row per rule of the
//! reference), the traps the hints must name, what makes an explanation
//! incomplete, and the hints the cluster's metadata raises.

pub(crate) mod cluster;
mod equivalence;
mod fixtures;
mod incomplete;
pub(crate) mod metadata;
mod semantics;
mod semantics_ports;
pub(crate) mod traps;
