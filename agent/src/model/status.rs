//! The agent's state as steps report it: readiness (for health checks) and
//! what the tracker holds. Sinks read these through `watch` channels that
//! `pipeline` makes. No I/O here.

use super::{record::KernelStats, socket::SocketStats};

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
    /// The socket and tc hooks' counters, cumulative since load.
    pub sockets: SocketStats,
    /// Connects closed by their owner before an answer, so far.
    pub aborted_connects: u64,
    /// DNS exchanges waiting for an answer now.
    pub pending_dns: u64,
    /// DNS queries the pending table could not follow (it was full), so far.
    pub dns_untracked: u64,
}
