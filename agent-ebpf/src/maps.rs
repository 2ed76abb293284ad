//! Every map of the kernel programs, sized from `dropscope-abi` constants
//! (the agent may resize them at load time).

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, Queue, RingBuf},
};
use dropscope_abi::{
    AskedDestination, FlowCounters, FlowKey, OverflowBucket, PendingConnect, ReasonFilter,
    SKB_WINDOW_MAX, SOCKET_STAT_COUNT, STAT_COUNT, SourceKey, maps,
};

/// First sight of a flow, to user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(maps::EVENTS_BYTES, 0);

/// Flow key to counter slot.
#[map]
pub static FLOWS: HashMap<FlowKey, u32> = HashMap::with_max_entries(maps::FLOW_SLOTS, 0);

/// Counters per slot; user space reads them through `mmap`.
#[map]
pub static COUNTERS: Array<FlowCounters> =
    Array::with_max_entries(maps::FLOW_SLOTS, BPF_F_MMAPABLE);

/// Slots not in use; user space fills it at start and gives slots back.
#[map]
pub static FREE_SLOTS: Queue<u32> = Queue::with_max_entries(maps::FLOW_SLOTS, 0);

/// Drops beyond the flow table, per CPU, by bucket.
#[map]
pub static OVERFLOW: PerCpuArray<OverflowBucket> =
    PerCpuArray::with_max_entries(maps::OVERFLOW_BUCKETS, 0);

/// Per-CPU statistics indexed by `dropscope_abi::Stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Which drop reasons to report (one entry).
#[map]
pub static REASON_FILTER: Array<ReasonFilter> = Array::with_max_entries(1, 0);

/// Per-CPU scratch space: too big for the 512-byte BPF stack.
#[repr(C)]
pub struct Scratch {
    /// A copy of the per-packet fields of the `sk_buff`, plus room for the
    /// widest field read at the window's last byte.
    pub skb: [u8; SKB_WINDOW_MAX as usize + 8],
    /// The IP header and the start of the L4 header of the packet.
    pub headers: [u8; 64],
    /// The flow key being built (map helpers take keys in map memory too).
    pub key: FlowKey,
    /// The flow this CPU counted last (see `aggregate`).
    pub recent: RecentFlow,
    /// Both conntrack tuples of a new flow's entry, copied at once, with
    /// room for the widest field past the copy (see `conntrack`).
    pub conntrack: [u8; CT_WINDOW + 16],
}

/// Bytes of `struct nf_conn` copied from the original tuple on: both
/// tuples on the kernels seen (56 bytes apart, 40 each).
pub const CT_WINDOW: usize = 128;

/// A CPU's most recently counted flow: its key, its counter slot, and the
/// slot's `first_ns` when it was remembered, which proves the slot still
/// belongs to the flow (user space zeroes it when it retires the flow, and
/// a slot handed out again gets a new one).
#[repr(C)]
pub struct RecentFlow {
    /// The flow's key.
    pub key: FlowKey,
    /// Its counter slot.
    pub slot: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// `COUNTERS[slot].first_ns` when remembered; 0 remembers nothing.
    pub first_ns: u64,
}

/// One [`Scratch`] per CPU.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Connect and DNS records, to user space (apart from drop records, so a
/// DNS storm never takes a drop record's room).
#[map]
pub static SOCKET_EVENTS: RingBuf = RingBuf::with_byte_size(maps::SOCKET_EVENTS_BYTES, 0);

/// Sockets in SYN_SENT being followed, by socket address. A plain hash map
/// (not LRU): when it is full a new socket is refused and counted, never an
/// older one silently evicted.
#[map]
pub static CONNECTS: HashMap<u64, PendingConnect> =
    HashMap::with_max_entries(maps::CONNECT_SLOTS, 0);

/// A pending socket's own address and port to its socket address, for the
/// tc programs that see its SYNs leave.
#[map]
pub static SYN_SOURCES: HashMap<SourceKey, u64> = HashMap::with_max_entries(maps::CONNECT_SLOTS, 0);

/// What the latest `connect()` of a thread asked for, from the cgroup hook
/// to the SYN_SENT transition of the same call.
#[map]
pub static CONNECTING: LruHashMap<u64, AskedDestination> =
    LruHashMap::with_max_entries(maps::CONNECTING_THREADS, 0);

/// Per-CPU statistics of the socket and tc hooks, indexed by
/// `dropscope_abi::SocketStat`.
#[map]
pub static SOCKET_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SOCKET_STAT_COUNT, 0);

/// DNS client sockets and the time of their latest query, so the tc
/// programs also see their queries after DNAT (to any port) and the answers
/// before reverse NAT.
#[map]
pub static DNS_CLIENTS: LruHashMap<SourceKey, u64> =
    LruHashMap::with_max_entries(maps::DNS_CLIENT_SLOTS, 0);
