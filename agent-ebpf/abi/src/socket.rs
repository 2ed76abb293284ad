//! Records of the socket and wire hooks: TCP connects followed from the
//! cgroup `connect4`/`connect6` hooks through `sock:inet_sock_set_state`
//! and `tcp:tcp_retransmit_skb` ([`ConnectRecord`]), and DNS messages seen
//! by the tc programs ([`DnsRecord`]). They travel on their own ring buffer
//! (`SOCKET_EVENTS`), so a DNS storm never costs a drop record its room.

use crate::record::{RecordHeader, Tuple};

/// A [`ConnectRecord`].
pub const KIND_CONNECT: u8 = 2;
/// A [`DnsRecord`].
pub const KIND_DNS: u8 = 3;

/// `ConnectRecord.outcome`: the socket reached ESTABLISHED (reported only
/// when its SYN was retransmitted first).
pub const CONNECT_ESTABLISHED: u8 = 1;
/// `ConnectRecord.outcome`: the socket went from SYN_SENT to CLOSE (timeout,
/// refusal, unreachable, or closed by its owner); `sk_err` says which.
pub const CONNECT_CLOSED: u8 = 2;

/// The destination a `connect()` asked for, as the cgroup hook saw it,
/// kept per thread until the socket enters SYN_SENT in the same call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AskedDestination {
    /// Destination address, network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Destination port, host byte order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// A socket's own address and port: what the tc programs look pending
/// connects up by (a DNAT on the way changes the destination, never the
/// source of a pod's SYN).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// Source address, network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Source port, host byte order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// IP protocol number (TCP).
    pub protocol: u8,
}

/// A socket in SYN_SENT, as the kernel follows it (value of the
/// `CONNECTS` map, keyed by the socket's address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingConnect {
    /// Monotonic ns when it entered SYN_SENT.
    pub start_ns: u64,
    /// cgroup v2 id of the task that called `connect()`.
    pub cgroup_id: u64,
    /// The socket's tuple: its address to the address it connects to.
    pub tuple: Tuple,
    /// What `connect()` was asked (cgroup hook); family 0 when not seen.
    pub asked: AskedDestination,
    /// `comm` of the calling task.
    pub comm: [u8; 16],
    /// Thread-group id of the calling task.
    pub pid: u32,
    /// Network namespace inode of the socket (0 when unreadable).
    pub netns: u32,
    /// SYN retransmissions so far.
    pub retransmits: u32,
    /// ifindex a SYN of it was last seen leaving by (tc egress), 0 if none.
    pub left_ifindex: u32,
    /// SYNs seen leaving by a watched interface.
    pub syns_left: u32,
    /// Explicit padding.
    pub _pad: [u32; 2],
}

/// A connect decided by the kernel: established after retransmits, or
/// closed from SYN_SENT.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectRecord {
    /// Header; `kind` is [`KIND_CONNECT`].
    pub header: RecordHeader,
    /// [`CONNECT_ESTABLISHED`] or [`CONNECT_CLOSED`].
    pub outcome: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// `sk->sk_err` when it closed (an errno: 110 timed out, 111 refused,
    /// 113 host unreachable, …; 0 when its owner closed it).
    pub sk_err: u32,
    /// Monotonic ns when it left SYN_SENT.
    pub end_ns: u64,
    /// Everything followed while it was pending.
    pub pending: PendingConnect,
}

/// `DnsRecord.direction`: the packet entered the interface (tc ingress).
pub const DIRECTION_INGRESS: u8 = 1;
/// `DnsRecord.direction`: the packet left by the interface (tc egress).
pub const DIRECTION_EGRESS: u8 = 2;

/// Bytes of a DNS message the tc program copies: the 12-byte header and a
/// question with a name of up to 255 bytes fit, with room for the TCP
/// length prefix. A power of two: the program bounds the copy length with
/// a mask the verifier can follow.
pub const DNS_CAPTURE: usize = 512;

/// A DNS message (to or from port 53) seen on a watched interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    /// Header; `kind` is [`KIND_DNS`].
    pub header: RecordHeader,
    /// Monotonic ns when the packet passed.
    pub time_ns: u64,
    /// The interface.
    pub ifindex: u32,
    /// [`DIRECTION_INGRESS`] or [`DIRECTION_EGRESS`].
    pub direction: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// Length of the DNS payload in the packet (host order).
    pub payload_len: u16,
    /// Bytes of it copied into `payload`.
    pub captured: u16,
    /// Explicit padding.
    pub _pad2: [u8; 6],
    /// The packet's tuple (protocol UDP or TCP).
    pub tuple: Tuple,
    /// The start of the DNS payload (for TCP, with its length prefix).
    pub payload: [u8; DNS_CAPTURE],
}

impl Default for DnsRecord {
    fn default() -> Self {
        Self {
            header: RecordHeader::default(),
            time_ns: 0,
            ifindex: 0,
            direction: 0,
            _pad: 0,
            payload_len: 0,
            captured: 0,
            _pad2: [0; 6],
            tuple: Tuple::default(),
            payload: [0; DNS_CAPTURE],
        }
    }
}

/// Index into the per-CPU `SOCKET_STATS` array of the socket and tc hooks.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketStat {
    /// Sockets that entered SYN_SENT and are followed.
    ConnectsTracked = 0,
    /// Sockets that entered SYN_SENT and could not be followed: the
    /// `CONNECTS` table was full.
    ConnectsUntracked = 1,
    /// Connect records sent.
    ConnectRecords = 2,
    /// Connect records lost: the ring buffer was full.
    ConnectRingFull = 3,
    /// SYN retransmissions counted on followed sockets.
    SynRetransmits = 4,
    /// DNS records sent.
    DnsRecords = 5,
    /// DNS messages lost: the ring buffer was full.
    DnsRingFull = 6,
    /// Followed sockets whose SYN was seen leaving by a watched interface.
    SynsLeft = 7,
    /// SYN-ACKs a listening socket on this node retransmitted: the client's
    /// final ACK did not arrive (the return path, or the client, lost it).
    SynAckRetransmits = 8,
}

/// Number of [`SocketStat`] counters.
pub const SOCKET_STAT_COUNT: u32 = 9;

/// Field offsets of the classic socket tracepoints, read from their
/// `format` files at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketOffsets {
    /// `sock:inet_sock_set_state` `skaddr`.
    pub state_skaddr: u32,
    /// `oldstate`.
    pub state_oldstate: u32,
    /// `newstate`.
    pub state_newstate: u32,
    /// `sport` (host order).
    pub state_sport: u32,
    /// `dport` (host order).
    pub state_dport: u32,
    /// `family`.
    pub state_family: u32,
    /// `protocol`.
    pub state_protocol: u32,
    /// `saddr` (4 bytes).
    pub state_saddr: u32,
    /// `daddr` (4 bytes).
    pub state_daddr: u32,
    /// `saddr_v6` (16 bytes).
    pub state_saddr_v6: u32,
    /// `daddr_v6` (16 bytes).
    pub state_daddr_v6: u32,
    /// `tcp:tcp_retransmit_skb` `skaddr`.
    pub retransmit_skaddr: u32,
    /// `state`.
    pub retransmit_state: u32,
    /// `sport` (host order).
    pub retransmit_sport: u32,
    /// `sock_common.skc_num`: the socket's local port, host order (BTF).
    pub sk_num: u32,
    /// `struct sock.sk_err` (from BTF).
    pub sk_err: u32,
    /// `sock_common.skc_net` (from BTF).
    pub sk_net: u32,
    /// `net.ns.inum` (from BTF).
    pub net_ns_inum: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for AskedDestination {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only.
unsafe impl aya::Pod for SourceKey {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for PendingConnect {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for ConnectRecord {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for DnsRecord {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only.
unsafe impl aya::Pod for SocketOffsets {}

const _: () = assert!(core::mem::size_of::<AskedDestination>() == 20);
const _: () = assert!(core::mem::size_of::<SourceKey>() == 20);
const _: () = assert!(core::mem::size_of::<PendingConnect>() == 8 + 8 + 40 + 20 + 16 + 28);
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 8 + 8 + 8 + 120);
const _: () = assert!(core::mem::size_of::<DnsRecord>() == 8 + 8 + 8 + 8 + 40 + DNS_CAPTURE);
const _: () = assert!(core::mem::size_of::<SocketOffsets>() == 18 * 4);
