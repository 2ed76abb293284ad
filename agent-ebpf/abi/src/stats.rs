//! Per-CPU counters of everything the kernel program did, so that every drop
//! it saw is either in an event's count or in a reported loss.

/// Index into the per-CPU `STATS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Invocations of the hook (every freed skb with a reason).
    Seen = 0,
    /// Reason not selected by the filter (normal frees, noise).
    Filtered = 1,
    /// Selected, but not IPv4/IPv6 or the headers were not readable.
    NotIp = 2,
    /// Selected IP drops added to an existing flow's counters.
    Aggregated = 3,
    /// Selected IP drops that started a new flow (a record was sent).
    NewFlow = 4,
    /// Selected IP drops sent as single records: no free flow slot.
    Unaggregated = 5,
    /// Selected IP drops lost: the ring buffer was full.
    LostRingFull = 6,
    /// Kernel reads that failed (`bpf_probe_read_kernel` errors).
    ReadErrors = 7,
}

/// Number of [`Stat`] counters.
pub const STAT_COUNT: u32 = 8;

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::Seen,
        Stat::Filtered,
        Stat::NotIp,
        Stat::Aggregated,
        Stat::NewFlow,
        Stat::Unaggregated,
        Stat::LostRingFull,
        Stat::ReadErrors,
    ];
}
