//! The explain suites: NetworkPolicy semantics (one row per rule of the
//! reference), the traps the hints must name, and what makes an
//! explanation incomplete.

pub(crate) mod cluster;
mod equivalence;
mod fixtures;
mod incomplete;
mod semantics;
mod semantics_ports;
pub(crate) mod traps;
