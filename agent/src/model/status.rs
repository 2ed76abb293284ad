//! The agent's state as steps report it: readiness (for health checks) and
//! what the tracker holds. Sinks read these through `watch` channels that
//! `pipeline` makes. No I/O here.

use super::record::KernelStats;

/// What must be true before the agent reports itself ready.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// The kernel programs are attached.
    pub attached: bool,
    /// Cluster metadata is loaded (always true without metadata).
    pub metadata_synced: bool,
}

impl Readiness {
    /// True when both hold.
    pub fn is_ready(&self) -> bool {
        self.attached && self.metadata_synced
    }
}

/// The tracker's view: the kernel's latest counters and the flows it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackStatus {
    /// Kernel statistics, cumulative since load.
    pub kernel: KernelStats,
    /// Flows tracked now.
    pub active_flows: u64,
}
