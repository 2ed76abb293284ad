//! Events: what `track` makes of records and every sink receives.

use std::{sync::Arc, time::SystemTime};

use super::{
    record::{Conntrack, DropPlace, DropReason, KernelLocation, TcpFlags},
    tuple::Tuple,
    verdict::Explanation,
};

/// An overflow aggregate: drops that found no free flow slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// The kernel's bucket.
    pub bucket: u32,
    /// Drops of flows other than the one `packet` names, counted here.
    pub folded_packets: u64,
}

/// Where a drop event stands in the life of its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// First drop of the flow.
    New,
    /// More drops of a flow already reported: the counts are cumulative.
    Update,
    /// The flow has been idle and is retired: final counts.
    End,
}

/// A dropped flow: one per first sight, then updates with cumulative counts.
#[derive(Clone, Debug, PartialEq)]
pub struct DropEvent {
    /// Identifies the flow across its `new`, `update` and `end` events
    /// (unique per agent run).
    pub flow_id: u64,
    /// New, update or end.
    pub kind: EventKind,
    /// Why the kernel dropped it.
    pub reason: DropReason,
    /// Where in the kernel.
    pub location: KernelLocation,
    /// The tuple in the packet headers at the drop (post-NAT).
    pub packet: Tuple,
    /// Conntrack tuples (original before NAT, reply after), when present.
    pub conntrack: Option<Conntrack>,
    /// TCP flags of the first dropped packet.
    pub tcp_flags: TcpFlags,
    /// OR of the TCP flags of every dropped packet of the flow.
    pub tcp_flags_seen: TcpFlags,
    /// Network namespace inode (0 when unknown).
    pub netns: u32,
    /// ifindex of the device at the drop (0 when none).
    pub ifindex: u32,
    /// ifindex the packet arrived on (0 when sent locally).
    pub ingress_ifindex: u32,
    /// The namespace and devices by name, where the agent can know them.
    pub place: DropPlace,
    /// Packets dropped so far.
    pub packets: u64,
    /// Bytes dropped so far.
    pub bytes: u64,
    /// Drops this event adds to the earlier events of its flow: 1 for
    /// `new`, the increase of `packets` for `update` and `end`.
    pub new_packets: u64,
    /// First drop.
    pub first_seen: SystemTime,
    /// Latest drop.
    pub last_seen: SystemTime,
    /// Set when the kernel's flow table was full: the event aggregates the
    /// drops of an overflow bucket (same reason, location and destination),
    /// `packet` being the first flow counted there.
    pub overflow: Option<Overflow>,
    /// Who the two ends are and what NetworkPolicy says about the flow
    /// (which policy denies it, the closest rule, named traps, a fix), when
    /// the agent has cluster metadata (`--snapshot` or `--kubernetes`).
    pub explanation: Option<Arc<Explanation>>,
}

/// Where events were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossSource {
    /// The kernel ring buffer was full: drops not in any event.
    KernelRingFull,
    /// The kernel skipped invocations (program already running on the CPU).
    KernelRecursion,
    /// Selected drops whose headers could not be read, or that were not
    /// IPv4/IPv6: counted by the kernel, in no event.
    KernelUnreadable,
    /// Kernel records user space could not decode (and, for a record that
    /// started a flow, every later drop of that flow).
    Undecodable,
    /// A queue between two pipeline steps was full.
    Pipeline,
    /// This subscriber read too slowly and missed events.
    Subscriber,
    /// The history asked for starts before the oldest event still held.
    History,
    /// TCP connects the kernel could not follow: its SYN_SENT table was full.
    ConnectsUntracked,
    /// DNS queries the agent could not follow: its pending table was full.
    DnsUntracked,
    /// DNS messages the agent could not read.
    DnsUnreadable,
}

/// Events or drops that were lost, as a message in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossEvent {
    /// Where.
    pub source: LossSource,
    /// Events lost since the previous loss event of this source (0 for
    /// kernel sources: those drops never became events).
    pub lost: u64,
    /// Events lost since the agent (or the subscription) started.
    pub total: u64,
    /// Dropped packets lost since the previous loss event of this source
    /// (for kernel sources: the drops, or skipped hook invocations).
    pub lost_drops: u64,
    /// Dropped packets lost since the agent (or the subscription) started.
    pub total_drops: u64,
    /// When it was noticed.
    pub time: SystemTime,
}
