//! Per-CPU counters of everything the kernel program did, so that every drop
//! it saw is either in an event's count or in a reported loss.

/// Index into the per-CPU `STATS` array. Every invocation of the hook adds
/// one to exactly one of these, so their sum is the number of invocations
/// (no separate "seen" counter costs a map lookup per freed skb).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Reason not selected by the filter (normal frees, noise).
    Filtered = 0,
    /// Selected, but not IPv4/IPv6 or the headers were not readable.
    NotIp = 1,
    /// Selected IP drops added to an existing flow's counters.
    Aggregated = 2,
    /// Selected IP drops that started a new flow (a record was sent).
    NewFlow = 3,
    /// Selected IP drops counted in an overflow bucket: no free flow slot.
    Overflow = 4,
    /// Selected IP drops lost: the ring buffer was full.
    LostRingFull = 5,
    /// Invocations whose tracepoint arguments could not be read.
    ReadErrors = 6,
    /// Selected IP drops of a new flow met a full ring buffer (the agent is
    /// behind): counted in an overflow bucket instead of being lost.
    RingFull = 7,
}

/// Number of [`Stat`] counters.
pub const STAT_COUNT: u32 = 8;
