//! What the socket and wire hooks report, decoded: connects the kernel
//! decided, DNS messages seen on the node's interfaces, and the counters
//! that account for what those hooks could not follow. `track` turns them
//! into incidents. No I/O here.

use std::time::SystemTime;

use super::{
    dns::DnsMessage,
    tuple::{Endpoint, Tuple},
};

/// A connect the kernel decided: closed from SYN_SENT, or established
/// after its SYN was retransmitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectSeen {
    /// How it ended; `None` when its owner closed it before an answer (a
    /// process killed mid-connect): neither a success nor a failure.
    pub outcome: Option<ConnectOutcome>,
    /// `sk_err` when it closed (an errno; 0 when none).
    pub socket_error: i32,
    /// When it entered SYN_SENT.
    pub started: SystemTime,
    /// When it left SYN_SENT.
    pub ended: SystemTime,
    /// The socket's tuple: its address to the address it connected to.
    pub flow: Tuple,
    /// What `connect()` was asked, when the cgroup hook saw it.
    pub asked: Option<Endpoint>,
    /// The calling process and its cgroup (path and owner not yet resolved).
    pub process: Process,
    /// Network namespace inode of the socket (0 when unreadable).
    pub netns: u32,
    /// SYN retransmissions.
    pub retransmits: u32,
    /// The interface a SYN was last seen leaving by, when one was seen.
    pub left: Option<Interface>,
    /// SYNs seen leaving by a watched interface.
    pub syns_left: u32,
}

/// A DNS message seen on one of the node's interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSeen {
    /// When it passed.
    pub time: SystemTime,
    /// The interface.
    pub interface: Interface,
    /// True when it was leaving by the interface (tc egress).
    pub egress: bool,
    /// The packet's tuple.
    pub tuple: Tuple,
    /// What it says.
    pub message: DnsMessage,
}

/// Cumulative counters of the socket and tc hooks (sums over CPUs since
/// load), plus what user space could not read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Sockets followed from SYN_SENT.
    pub connects_tracked: u64,
    /// Sockets in SYN_SENT not followed: the kernel's table was full.
    pub connects_untracked: u64,
    /// Connect records sent.
    pub connect_records: u64,
    /// Connect records lost to a full ring buffer.
    pub connect_ring_full: u64,
    /// SYN retransmissions counted.
    pub syn_retransmits: u64,
    /// DNS records sent.
    pub dns_records: u64,
    /// DNS messages lost to a full ring buffer.
    pub dns_ring_full: u64,
    /// SYNs of followed sockets seen leaving.
    pub syns_left: u64,
    /// SYN-ACKs retransmitted by listening sockets of this node.
    pub synack_retransmits: u64,
    /// DNS records user space could not read (not DNS, or cut before the
    /// question).
    pub dns_unreadable: u64,
}

/// The process and cgroup that made the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Thread-group id (the process id) that called `connect`/`sendmsg`.
    pub pid: u32,
    /// Its command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// cgroup v2 id (the cgroup directory's inode number).
    pub cgroup_id: u64,
    /// The cgroup's path below the cgroup v2 root, when resolved.
    pub cgroup_path: Option<String>,
    /// Who the cgroup belongs to, when its path tells.
    pub owner: Option<CgroupOwner>,
}

/// Who a cgroup belongs to, read from the kubelet's cgroup layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupOwner {
    /// A container of a pod (systemd or cgroupfs driver).
    Pod {
        /// The pod's `metadata.uid`.
        uid: String,
        /// The container id, when the path names one.
        container_id: Option<String>,
        /// The container runtime the path names (`containerd`, `cri-o`,
        /// `docker`), when it does.
        runtime: Option<String>,
    },
    /// The kubelet itself (its probes come from the node's address).
    Kubelet,
}

/// How a connect ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The handshake completed.
    Established,
    /// The kernel gave up: no answer (or only soft ICMP errors).
    TimedOut,
    /// An RST came back.
    Refused,
    /// An ICMP unreachable came back (host, network, port, admin).
    Unreachable,
}

/// A network interface of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its index.
    pub ifindex: u32,
    /// Its name, when still known.
    pub name: Option<String>,
}
