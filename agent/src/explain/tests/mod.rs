//! The explain suites: NetworkPolicy semantics (one row per rule of the
//! reference) and the traps the hints must name.

mod cluster;
mod equivalence;
mod fixtures;
mod semantics;
mod semantics_ports;
mod traps;
