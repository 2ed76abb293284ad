//! The types that flow down the pipeline: tuples, drop records, events and
//! losses. No I/O here; every step may import it.

pub mod dns;
pub mod event;
pub mod incident;
pub mod record;
pub mod socket;
pub mod tuple;

pub use event::{DropEvent, EventKind, LossEvent, LossSource, Overflow};
pub use incident::{DnsExchange, FailurePlace, Incident, IncidentKind, TcpAttempt};
pub use record::{Conntrack, KernelLocation, KernelStats};
pub use record::{DropPlace, DropReason, DropRecord, FlowSample, OverflowSample, Record, TcpFlags};
pub use socket::{
    CgroupOwner, ConnectOutcome, ConnectSeen, DnsSeen, Interface, Process, SocketStats,
};
pub use stream::Event;
pub use tuple::{Endpoint, Protocol, Tuple};
pub mod identity;
pub mod status;
pub mod stream;
pub mod summary;
pub mod verdict;
pub use identity::{Backend, Identity, Workload};
pub use status::{Readiness, TrackStatus};
pub use verdict::{
    ClosestMiss, Direction, DirectionReport, Explanation, FlowEnd, Hint, HintCode, PolicyRef,
    RuleRef, SkippedObject, StaleKind, Verdict,
};
