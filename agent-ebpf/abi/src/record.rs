//! Records the kernel writes: the ring-buffer [`DropRecord`], and the
//! [`FlowKey`] / [`FlowCounters`] pair of the in-kernel aggregation.

/// Every ring-buffer record starts with this header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// One of the `KIND_*` constants.
    pub kind: u8,
    /// [`RECORD_VERSION`] of the layout that follows.
    pub version: u8,
    /// Length of the whole record in bytes, header included (host order).
    pub len: u16,
    /// CPU the record was written on.
    pub cpu: u32,
}

/// Current layout version of every record kind.
pub const RECORD_VERSION: u8 = 1;
/// A [`DropRecord`].
pub const KIND_DROP: u8 = 1;

/// `FlowKey.family` / `Tuple.family`: IPv4 (`AF_INET`).
pub const FAMILY_IPV4: u8 = 2;
/// `FlowKey.family` / `Tuple.family`: IPv6 (`AF_INET6`).
pub const FAMILY_IPV6: u8 = 10;

/// IP protocol numbers the program parses.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// A 5-tuple. For ICMP, `src_port` holds the echo identifier (0 for other
/// types) and `dst_port` holds `type << 8 | code`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address, network byte order; IPv4 uses the first 4 bytes.
    pub src_addr: [u8; 16],
    /// Destination address, network byte order; IPv4 uses the first 4 bytes.
    pub dst_addr: [u8; 16],
    /// Source port, host byte order.
    pub src_port: u16,
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`]; 0 when the tuple is absent.
    pub family: u8,
    /// IP protocol number (see [`proto`]).
    pub protocol: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// What one aggregated flow is keyed on in the kernel: the packet's tuple
/// (post-NAT, as in its headers), the drop reason, where in the kernel it
/// was dropped and on which device. The device pointer stands in for the
/// network namespace (a device lives in one), so a repeated drop costs no
/// extra reads; the namespace itself is read once, for the first record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The tuple from the packet headers.
    pub tuple: Tuple,
    /// `enum skb_drop_reason` value of the running kernel.
    pub reason: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Kernel address that freed the skb (`kfree_skb` location).
    pub location: u64,
    /// `skb->dev` (an opaque kernel pointer, 0 without a device); never
    /// shown, only compared.
    pub device: u64,
}

/// Counters of one aggregated flow, in a memory-mapped array the agent reads
/// directly. The kernel adds with atomic instructions; the agent only reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Packets dropped since the slot was taken.
    pub packets: u64,
    /// Bytes (`skb->len`) dropped since the slot was taken.
    pub bytes: u64,
    /// Monotonic ns of the first drop (later drops are dated by user space,
    /// by the sample that saw `packets` grow).
    pub first_ns: u64,
    /// OR of the TCP flags of every dropped packet.
    pub tcp_flags: u64,
}

/// `DropRecord.slot` value meaning "no slot"; the kernel no longer sends
/// such records (drops beyond the flow table go to [`OverflowBucket`]s),
/// and `decode` rejects them.
pub const SLOT_NONE: u32 = u32::MAX;

/// Drops that found no free flow slot, aggregated per CPU by a hash of
/// (reason, location, destination, protocol) into a fixed number of
/// buckets: counts stay exact whatever the number of flows, and user space
/// reports each bucket as one aggregate. The kernel never resets a bucket;
/// user space reports increases.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverflowBucket {
    /// Drops counted here since load.
    pub packets: u64,
    /// Bytes of those drops.
    pub bytes: u64,
    /// Monotonic ns of the first drop.
    pub first_ns: u64,
    /// Monotonic ns of the latest drop.
    pub last_ns: u64,
    /// Drops whose key differed from `key` (other flows folded in).
    pub folded: u64,
    /// OR of the TCP flags of every drop.
    pub tcp_flags: u64,
    /// The key of the first drop counted here (its representative).
    pub key: FlowKey,
}

/// `DropRecord.ct_info` bit: the skb carried a conntrack entry and both
/// `ct_original` and `ct_reply` are filled in.
pub const CT_PRESENT: u8 = 0x80;
/// Mask of the kernel's `enum ip_conntrack_info` in `DropRecord.ct_info`.
pub const CT_INFO_MASK: u8 = 0x07;

/// First sight of a dropped flow (or a single unaggregated drop).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropRecord {
    /// Header; `kind` is [`KIND_DROP`].
    pub header: RecordHeader,
    /// Counter slot of this flow in the `COUNTERS` array, or [`SLOT_NONE`].
    pub slot: u32,
    /// Length of the packet (`skb->len`), host order.
    pub len: u32,
    /// Monotonic ns of the drop.
    pub time_ns: u64,
    /// The aggregation key: packet tuple, reason, location and device.
    pub key: FlowKey,
    /// ifindex of the device the skb was on when dropped (0 when none).
    pub ifindex: u32,
    /// ifindex the skb arrived on (`skb->skb_iif`; 0 when sent locally).
    pub ingress_ifindex: u32,
    /// TCP flags of the packet (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08,
    /// ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80); 0 for other protocols.
    pub tcp_flags: u8,
    /// [`CT_PRESENT`] plus the conntrack info (`_nfct & 7`).
    pub ct_info: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
    /// Network namespace inode number of the device (or socket); 0 when unknown.
    pub netns: u32,
    /// Conntrack original-direction tuple (before NAT), when present.
    pub ct_original: Tuple,
    /// Conntrack reply-direction tuple (after NAT, reversed), when present.
    pub ct_reply: Tuple,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding (sizes checked below).
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only.
unsafe impl aya::Pod for FlowCounters {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for DropRecord {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding (in FlowKey).
unsafe impl aya::Pod for OverflowBucket {}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == 8);
const _: () = assert!(core::mem::size_of::<Tuple>() == 40);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 64);
const _: () = assert!(core::mem::size_of::<FlowCounters>() == 32);
const _: () = assert!(core::mem::size_of::<OverflowBucket>() == 48 + 64);
const _: () = assert!(core::mem::size_of::<DropRecord>() == 8 + 8 + 8 + 64 + 8 + 8 + 80);
