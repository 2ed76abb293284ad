//! Load-time configuration of the kernel programs: kernel struct offsets
//! resolved from BTF, and the sizes of the maps.

/// Offsets into kernel structures, resolved by the agent from the running
/// kernel's BTF and written into the program's read-only data at load time.
///
/// A field the running kernel does not have is set to [`OFFSET_MISSING`];
/// the program then skips what depends on it (for instance no conntrack
/// tuples on a kernel built without conntrack).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Start of the `sk_buff` bytes copied with one read per packet (see
    /// [`SKB_WINDOW_MAX`]); fields inside the window are taken from the copy.
    pub skb_window_start: u32,
    /// Length of that window; 0 disables it (one read per field).
    pub skb_window_len: u32,
    /// `sk_buff.head`: pointer to the start of the packet buffer.
    pub skb_head: u32,
    /// `sk_buff.network_header`: u16 offset of the L3 header from `head`.
    pub skb_network_header: u32,
    /// `sk_buff.len`: u32 length of the packet data.
    pub skb_len: u32,
    /// `sk_buff.dev`: pointer to the `net_device` the skb is on.
    pub skb_dev: u32,
    /// `sk_buff.skb_iif`: ifindex the skb arrived on (0 when sent locally).
    pub skb_iif: u32,
    /// `sk_buff._nfct`: conntrack pointer with ctinfo in its low 3 bits.
    pub skb_nfct: u32,
    /// `sk_buff.sk`: pointer to the owning socket, if any.
    pub skb_sk: u32,
    /// `net_device.ifindex`.
    pub dev_ifindex: u32,
    /// `net_device.nd_net`: `possible_net_t`, a pointer to `struct net`.
    pub dev_nd_net: u32,
    /// `sock_common.skc_net` (first member of `struct sock`): `possible_net_t`.
    pub sk_net: u32,
    /// `net.ns.inum`: the network namespace inode number.
    pub net_ns_inum: u32,
    /// `nf_conn.tuplehash[0].tuple`: the original-direction tuple.
    pub ct_tuple_original: u32,
    /// `nf_conn.tuplehash[1].tuple`: the reply-direction tuple.
    pub ct_tuple_reply: u32,
    /// Offsets inside `struct nf_conntrack_tuple`.
    pub tuple: ConntrackTupleOffsets,
    /// Field offsets of the classic `skb:kfree_skb` tracepoint record (from
    /// its `format` file), used only by the fallback program.
    pub tracepoint: TracepointOffsets,
}

/// Field offsets of the classic `skb:kfree_skb` tracepoint record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `skbaddr`: pointer to the `sk_buff`.
    pub skbaddr: u32,
    /// `location`: kernel address that freed it.
    pub location: u32,
    /// `reason`: `enum skb_drop_reason`.
    pub reason: u32,
}

/// Offsets inside `struct nf_conntrack_tuple`, from its start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackTupleOffsets {
    /// `src.u3`: 16-byte source address (IPv4 in the first 4 bytes).
    pub src_addr: u32,
    /// `src.u.all`: big-endian source port (or ICMP id).
    pub src_port: u32,
    /// `src.l3num`: address family (`AF_INET` = 2, `AF_INET6` = 10).
    pub src_l3num: u32,
    /// `dst.u3`: 16-byte destination address.
    pub dst_addr: u32,
    /// `dst.u.all`: big-endian destination port (ICMP type and code).
    pub dst_port: u32,
    /// `dst.protonum`: IP protocol number.
    pub dst_protonum: u32,
}

/// Largest `sk_buff` window the kernel program copies at once.
pub const SKB_WINDOW_MAX: u32 = 256;

/// Marks an offset the running kernel does not have.
pub const OFFSET_MISSING: u32 = u32::MAX;

/// Names of the globals the agent sets at load time.
pub mod globals {
    /// The [`KernelOffsets`](super::KernelOffsets) global.
    pub const OFFSETS: &str = "OFFSETS";
    /// The [`SocketOffsets`](crate::SocketOffsets) global.
    pub const SOCKET_OFFSETS: &str = "SOCKET_OFFSETS";
}

/// Names and default sizes of the maps.
pub mod maps {
    /// Ring buffer of [`DropRecord`](crate::DropRecord)s.
    pub const EVENTS: &str = "EVENTS";
    /// Default size of [`EVENTS`] in bytes (a power of two, page multiple).
    pub const EVENTS_BYTES: u32 = 1 << 20;
    /// Hash map from [`FlowKey`](crate::FlowKey) to a counter slot.
    pub const FLOWS: &str = "FLOWS";
    /// Memory-mappable array of [`FlowCounters`](crate::FlowCounters), one per slot.
    pub const COUNTERS: &str = "COUNTERS";
    /// Queue of free slot numbers: the kernel pops, the agent pushes back.
    pub const FREE_SLOTS: &str = "FREE_SLOTS";
    /// Default number of flows aggregated at once.
    pub const FLOW_SLOTS: u32 = 16_384;
    /// Per-CPU array of [`OverflowBucket`](crate::OverflowBucket)s.
    pub const OVERFLOW: &str = "OVERFLOW";
    /// Number of overflow buckets (a power of two).
    pub const OVERFLOW_BUCKETS: u32 = 1024;
    /// Per-CPU array of [`Stat`](crate::Stat) counters.
    pub const STATS: &str = "STATS";
    /// Array with one [`ReasonFilter`](crate::ReasonFilter): which drop reasons to report.
    pub const REASON_FILTER: &str = "REASON_FILTER";
    /// Ring buffer of [`ConnectRecord`](crate::ConnectRecord)s and
    /// [`DnsRecord`](crate::DnsRecord)s.
    pub const SOCKET_EVENTS: &str = "SOCKET_EVENTS";
    /// Default size of [`SOCKET_EVENTS`] in bytes.
    pub const SOCKET_EVENTS_BYTES: u32 = 1 << 20;
    /// Hash map from a socket's address to its
    /// [`PendingConnect`](crate::PendingConnect).
    pub const CONNECTS: &str = "CONNECTS";
    /// Default number of sockets in SYN_SENT followed at once.
    pub const CONNECT_SLOTS: u32 = 16_384;
    /// Hash map from a pending socket's [`SourceKey`](crate::SourceKey) to
    /// its address, for the tc programs.
    pub const SYN_SOURCES: &str = "SYN_SOURCES";
    /// LRU map from a thread (pid_tgid) to the
    /// [`AskedDestination`](crate::AskedDestination) of its `connect()`.
    pub const CONNECTING: &str = "CONNECTING";
    /// Threads remembered between the cgroup hook and SYN_SENT.
    pub const CONNECTING_THREADS: u32 = 4096;
    /// LRU map from a DNS client socket ([`SourceKey`](crate::SourceKey))
    /// to the monotonic ns of its latest query: its packets after DNAT (to
    /// any port) and the answers before reverse NAT are DNS too.
    pub const DNS_CLIENTS: &str = "DNS_CLIENTS";
    /// DNS client sockets remembered.
    pub const DNS_CLIENT_SLOTS: u32 = 65_536;
    /// How long after its latest query a client socket's packets count as
    /// DNS, in ns.
    pub const DNS_CLIENT_TTL_NS: u64 = 10_000_000_000;
    /// Per-CPU array of [`SocketStat`](crate::SocketStat) counters.
    pub const SOCKET_STATS: &str = "SOCKET_STATS";
}

/// Which drop reasons the kernel program reports: a bitmap over the core
/// `enum skb_drop_reason` values below [`ReasonFilter::CORE_REASONS`], and one
/// switch for subsystem reasons (values with bits in `0xffff0000`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonFilter {
    /// Bit `r % 64` of word `r / 64` is set when reason `r` is reported.
    pub core: [u64; 8],
    /// Non-zero: report every reason at or above [`ReasonFilter::CORE_REASONS`].
    pub subsystems: u32,
    /// Explicit padding.
    pub _pad: u32,
}

impl ReasonFilter {
    /// Number of core reasons the bitmap covers.
    pub const CORE_REASONS: u32 = 512;

    /// True when `reason` is selected.
    #[inline(always)]
    pub fn contains(&self, reason: u32) -> bool {
        if reason >= Self::CORE_REASONS {
            return self.subsystems != 0;
        }
        let word = (reason / 64) as usize;
        match self.core.get(word) {
            Some(bits) => bits & (1u64 << (reason % 64)) != 0,
            None => false,
        }
    }

    /// Selects `reason` (core reasons only; see `subsystems` for the rest).
    pub fn insert(&mut self, reason: u32) {
        if reason >= Self::CORE_REASONS {
            self.subsystems = 1;
            return;
        }
        if let Some(bits) = self.core.get_mut((reason / 64) as usize) {
            *bits |= 1u64 << (reason % 64);
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no implicit padding (checked below).
unsafe impl aya::Pod for KernelOffsets {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for ReasonFilter {}

const _: () = assert!(core::mem::size_of::<ConntrackTupleOffsets>() == 24);
const _: () = assert!(core::mem::size_of::<TracepointOffsets>() == 12);
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 15 * 4 + 24 + 12);
const _: () = assert!(core::mem::size_of::<ReasonFilter>() == 72);
