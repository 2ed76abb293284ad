//! Terminal and JSON output: the only place that writes to stdout.

pub mod events;
pub mod explain;
