//! Decoded kernel records: what `decode` makes of the ring buffer and of the
//! flow counters, before `track` turns them into events.

use std::{fmt, sync::Arc, time::SystemTime};

use super::{
    socket::{ConnectSeen, DnsSeen, SocketStats},
    tuple::Tuple,
};

/// A value of the running kernel's `enum skb_drop_reason`, with its name
/// from the kernel's BTF (without the `SKB_DROP_REASON_` prefix).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DropReason {
    /// The number, as the running kernel defines it.
    pub code: u32,
    /// The name, when the running kernel's BTF has one for this number.
    pub name: Option<Arc<str>>,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => f.write_str(name),
            None => write!(f, "UNKNOWN_{}", self.code),
        }
    }
}

/// A kernel code address and, when it could be resolved, `function+offset`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelLocation {
    /// The address (as `/proc/kallsyms` numbers it).
    pub address: u64,
    /// `function+0xoffset`, when the address resolves.
    pub symbol: Option<Arc<str>>,
}

/// TCP header flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    const NAMES: [(u8, &'static str); 8] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];

    /// The names of the flags that are set, SYN and ACK first.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }

    /// True when SYN is set and ACK is not: a connection attempt.
    pub fn is_connect(self) -> bool {
        self.0 & 0x12 == 0x02
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = self.names();
        match names.next() {
            None => f.write_str("-"),
            Some(first) => {
                f.write_str(first)?;
                names.try_for_each(|name| write!(f, "|{name}"))
            }
        }
    }
}

/// The conntrack entry a dropped packet carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conntrack {
    /// Original direction, as the client sent it (e.g. to a Service VIP).
    pub original: Tuple,
    /// Reply direction, as the server answers (after DNAT: the backend).
    pub reply: Tuple,
}

impl Conntrack {
    /// The original tuple as NAT rewrote it: the destination of the reply's
    /// source and the source of the reply's destination.
    pub fn translated(&self) -> Tuple {
        Tuple {
            src: self.reply.dst,
            dst: self.reply.src,
            protocol: self.original.protocol,
        }
    }

    /// True when NAT changed the destination (DNAT, e.g. a Service).
    pub fn is_dnat(&self) -> bool {
        self.original.dst != self.reply.src
    }

    /// True when NAT changed the source (SNAT, masquerade).
    pub fn is_snat(&self) -> bool {
        self.original.src != self.reply.dst
    }
}

/// Names of where a drop happened, set when it happened in the agent's own
/// network namespace (on a node with `hostNetwork`, the host's), whose
/// devices the agent can name; empty elsewhere (a pod's namespace), where
/// only the numbers are known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropPlace {
    /// `host`: the agent's own network namespace.
    pub netns_name: Option<&'static str>,
    /// The name of the device at the drop (`ifindex`).
    pub interface: Option<String>,
    /// The name of the device it arrived on (`ingress_ifindex`).
    pub ingress_interface: Option<String>,
}

/// First sight of a dropped flow, or one drop the kernel could not aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct DropRecord {
    /// Counter slot of the flow in the kernel.
    pub slot: u32,
    /// When the kernel dropped it.
    pub time: SystemTime,
    /// CPU it was dropped on.
    pub cpu: u32,
    /// Why the kernel dropped it.
    pub reason: DropReason,
    /// Where in the kernel it was dropped.
    pub location: KernelLocation,
    /// The tuple in the packet headers at the drop (post-NAT).
    pub packet: Tuple,
    /// The conntrack entry, when the packet had one.
    pub conntrack: Option<Conntrack>,
    /// Network namespace inode number (0 when unknown).
    pub netns: u32,
    /// ifindex of the device it was on (0 when none).
    pub ifindex: u32,
    /// ifindex it arrived on (0 when sent locally).
    pub ingress_ifindex: u32,
    /// The namespace and devices by name, where the agent can know them.
    pub place: DropPlace,
    /// Packet length in bytes.
    pub len: u32,
    /// TCP flags of the packet.
    pub tcp_flags: TcpFlags,
}

/// The counters of one aggregated flow, read from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSample {
    /// Counter slot it was read from.
    pub slot: u32,
    /// Packets dropped so far.
    pub packets: u64,
    /// Bytes dropped so far.
    pub bytes: u64,
    /// First drop.
    pub first: SystemTime,
    /// Latest drop.
    pub last: SystemTime,
    /// OR of every dropped packet's TCP flags.
    pub tcp_flags: TcpFlags,
    /// The flow went idle and its slot was retired: this is its final count.
    pub ended: bool,
}

/// The counters of one overflow bucket, summed over CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct OverflowSample {
    /// The bucket.
    pub bucket: u32,
    /// Why the first drop counted here was dropped.
    pub reason: DropReason,
    /// Where in the kernel.
    pub location: KernelLocation,
    /// The tuple of the first drop counted here.
    pub packet: Tuple,
    /// Drops counted here since load.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Drops of other flows than `packet`'s.
    pub folded: u64,
    /// First drop.
    pub first: SystemTime,
    /// Latest drop.
    pub last: SystemTime,
    /// OR of every drop's TCP flags.
    pub tcp_flags: TcpFlags,
    /// No drop for the idle timeout: the aggregate ends here.
    pub ended: bool,
}

/// Cumulative kernel-side statistics (sums over CPUs since load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Freed skbs the hook saw.
    pub seen: u64,
    /// Frees whose reason is not selected (normal frees, noise).
    pub filtered: u64,
    /// Selected drops that were not IPv4/IPv6 or not readable.
    pub not_ip: u64,
    /// Selected drops added to a known flow.
    pub aggregated: u64,
    /// Selected drops that started a flow.
    pub new_flows: u64,
    /// Selected drops counted in an overflow bucket (no free flow slot).
    pub overflow: u64,
    /// Selected drops of new flows that met a full ring buffer, counted in
    /// an overflow bucket instead.
    pub ring_full: u64,
    /// Selected drops lost because the ring buffer was full and no overflow
    /// bucket could be reached (not expected).
    pub lost_ring_full: u64,
    /// Failed kernel reads.
    pub read_errors: u64,
    /// Records user space could not decode that stood for one drop each
    /// (single drops; a flow's first record is accounted with its flow).
    pub undecodable: u64,
    /// Invocations the kernel skipped because the program was already
    /// running on that CPU (BPF recursion protection).
    pub recursion_misses: u64,
}

/// What the capture step hands on.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A new flow (or single drop) from the ring buffer.
    Drop(DropRecord),
    /// Counters of a known flow that changed, or its final count.
    Sample(FlowSample),
    /// An overflow bucket that changed, or went idle.
    Overflow(OverflowSample),
    /// Kernel statistics, sent when they change.
    Stats(KernelStats),
    /// A connect the kernel decided.
    Connect(ConnectSeen),
    /// A DNS message seen on an interface.
    Dns(DnsSeen),
    /// Counters of the socket and tc hooks, sent when they change.
    SocketStats(SocketStats),
}
