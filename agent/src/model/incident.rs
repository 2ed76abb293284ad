//! Incidents: what a user asks about ("pod-a times out talking to pod-b",
//! "DNS stopped resolving"), keyed by the flow as the client's socket saw it
//! and filled in as evidence arrives: the TCP attempt, the DNS exchange, the
//! kernel drops of the same flow on this node, who the two ends are.
//!
//! `track` decides incidents; `explain` attaches identities; the sinks
//! receive them as [`super::Event::Incident`]. No I/O here.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{
    event::{DropEvent, EventKind},
    identity::Identity,
    socket::{ConnectOutcome, Interface, Process},
    tuple::{Endpoint, Tuple},
    verdict::Explanation,
};

/// What happened to the flow, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IncidentKind {
    /// A TCP connect gave up: no answer to its SYNs.
    ConnectTimeout,
    /// A TCP connect was refused: an RST or an ICMP unreachable came back.
    ConnectRefused,
    /// A TCP connect succeeded, but only after its SYN was retransmitted.
    ConnectRetried,
    /// DNS queries that no answer matched.
    DnsUnanswered,
    /// A DNS answer with an error code (NXDOMAIN, SERVFAIL, REFUSED, …).
    DnsError,
}

impl IncidentKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::ConnectTimeout,
        Self::ConnectRefused,
        Self::ConnectRetried,
        Self::DnsUnanswered,
        Self::DnsError,
    ];

    /// The name used in the proto (`INCIDENT_KIND_` + this), filters and
    /// metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::ConnectTimeout => "CONNECT_TIMEOUT",
            Self::ConnectRefused => "CONNECT_REFUSED",
            Self::ConnectRetried => "CONNECT_RETRIED",
            Self::DnsUnanswered => "DNS_UNANSWERED",
            Self::DnsError => "DNS_ERROR",
        }
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the flow died, as far as this node's evidence goes. A timeout
/// alone never blames a NetworkPolicy: the place says what is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailurePlace {
    /// Dropped on this node: joined with a kernel drop of the same flow.
    ThisNode,
    /// It left through one of this node's interfaces and nothing came back.
    BeyondNode,
    /// Something answered no: an RST, an ICMP unreachable or a DNS error.
    Refused,
    /// No drop here and no sight of it leaving (an interface dropscope does
    /// not watch, or a NAT it cannot follow): where it died is not known.
    Unseen,
    /// Not a failure (a connect that succeeded after retries: where its
    /// first SYNs died is in the evidence when known).
    NotFailed,
}

impl FailurePlace {
    /// The name used in the proto (`FAILURE_PLACE_` + this) and filters.
    pub fn name(self) -> &'static str {
        match self {
            Self::ThisNode => "THIS_NODE",
            Self::BeyondNode => "BEYOND_NODE",
            Self::Refused => "REFUSED",
            Self::Unseen => "UNSEEN",
            Self::NotFailed => "NOT_FAILED",
        }
    }
}

impl fmt::Display for FailurePlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCP connect attempt, from the socket's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpAttempt {
    /// How it ended.
    pub outcome: ConnectOutcome,
    /// SYN retransmissions before it ended.
    pub syn_retransmits: u32,
    /// The socket error when it failed (`ETIMEDOUT`, `ECONNREFUSED`,
    /// `EHOSTUNREACH`, …), as an errno number; 0 when none.
    pub socket_error: i32,
    /// When the socket entered SYN_SENT.
    pub started: SystemTime,
    /// When it left SYN_SENT.
    pub ended: SystemTime,
    /// The interface its SYNs were last seen leaving this node by, when seen.
    pub left_interface: Option<Interface>,
    /// SYNs seen leaving this node.
    pub syns_left: u32,
}

impl TcpAttempt {
    /// How long the attempt took.
    pub fn duration(&self) -> Duration {
        self.ended
            .duration_since(self.started)
            .unwrap_or(Duration::ZERO)
    }
}

/// A DNS exchange: every attempt of one question from one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsExchange {
    /// The name asked, as in the question (no trailing dot).
    pub name: String,
    /// The query type number (1 = A, 28 = AAAA, …).
    pub qtype: u16,
    /// The server the client asked (a Service VIP before DNAT).
    pub server: Endpoint,
    /// Queries sent (the first and its retries).
    pub attempts: u32,
    /// The answer's response code, when one came back.
    pub rcode: Option<u8>,
    /// Time from the first query to the answer, when one came back.
    pub latency: Option<Duration>,
    /// The first query.
    pub first_query: SystemTime,
    /// The latest query.
    pub last_query: SystemTime,
    /// The interface a query was seen leaving this node by, when seen.
    pub left_interface: Option<Interface>,
    /// True when the exchange was over TCP.
    pub tcp: bool,
}

/// One incident.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    /// Identifies the incident across its `new` and `update` events (unique
    /// per agent run, shared with drop events' flow ids).
    pub id: u64,
    /// New when decided; update when evidence arrived after.
    pub event: EventKind,
    /// What happened.
    pub kind: IncidentKind,
    /// Where it died.
    pub place: FailurePlace,
    /// The flow as the client's socket saw it (before any DNAT).
    pub flow: Tuple,
    /// The destination the application passed to `connect` (seen by the
    /// cgroup hook, before any socket-level translation), when seen.
    pub asked: Option<Endpoint>,
    /// Network namespace inode of the client's socket (0 when unknown).
    pub netns: u32,
    /// The process and cgroup, when the flow was made by a local socket.
    pub process: Option<Process>,
    /// The TCP attempt, for connect incidents.
    pub tcp: Option<TcpAttempt>,
    /// The DNS exchange, for DNS incidents.
    pub dns: Option<DnsExchange>,
    /// Kernel drops of the same flow on this node (most recent last).
    pub drops: Vec<Arc<DropEvent>>,
    /// Who the client is, when known (from the cgroup, else the address).
    pub source: Option<Identity>,
    /// Who the destination is, when known.
    pub destination: Option<Identity>,
    /// What NetworkPolicy says, taken from a joined kernel drop only.
    pub explanation: Option<Arc<Explanation>>,
    /// First evidence.
    pub first_seen: SystemTime,
    /// Latest evidence.
    pub last_seen: SystemTime,
}
