//! Incidents: connects the kernel decided and DNS exchanges, joined with
//! the kernel drops of the same flow, and where the flow died.
//!
//! A connect is decided when the kernel is (its socket left SYN_SENT). A
//! DNS exchange is decided by an error answer, or by no answer within the
//! DNS timeout after its last try. Kernel drops of the same flow (matched
//! on the flow before NAT, within the incident's time) make the place
//! `THIS_NODE`; a SYN or query seen leaving by a watched interface makes it
//! `BEYOND_NODE`; an RST, ICMP or error answer `REFUSED`; otherwise it is
//! `UNSEEN`. A drop that arrives after the decision (within
//! [`LATE_WINDOW`]) updates the incident once.
//!
//! Open state is bounded: recent drops ([`DROPS_HELD`] tuples, for
//! [`DROP_WINDOW`]), pending DNS exchanges (`--dns-pending`), decided
//! incidents awaiting late drops ([`DECIDED_HELD`], for [`LATE_WINDOW`]).

pub mod dns;
pub mod drops;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use self::{
    dns::{DnsOutcome, DnsTable, Exchange},
    drops::DropIndex,
};
use crate::model::{
    ConnectOutcome, ConnectSeen, DnsExchange, DnsSeen, DropEvent, EventKind, FailurePlace,
    Incident, IncidentKind, Interface, Protocol, TcpAttempt, Tuple,
};

/// How long a drop stays joinable after its last packet.
pub const DROP_WINDOW: Duration = Duration::from_secs(120);
/// Drop tuples held for joins.
pub const DROPS_HELD: usize = 65_536;
/// How long a decided incident may still be updated by a late drop.
pub const LATE_WINDOW: Duration = Duration::from_secs(30);
/// Decided incidents held for late drops.
pub const DECIDED_HELD: usize = 16_384;

/// How incidents are decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncidentConfig {
    /// No answer this long after a DNS exchange's last try: unanswered.
    pub dns_timeout: Duration,
    /// Most DNS exchanges pending at once.
    pub dns_pending: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            dns_timeout: Duration::from_secs(5),
            dns_pending: 65_536,
        }
    }
}

/// What the incident side of the tracker did with one input.
#[derive(Debug, Default, PartialEq)]
pub struct Decisions {
    /// Incidents decided or updated.
    pub incidents: Vec<Arc<Incident>>,
    /// DNS queries not followed (table full).
    pub dns_untracked: u64,
}

/// The incident side of the tracker.
#[derive(Debug)]
pub struct Incidents {
    drops: DropIndex,
    dns: DnsTable,
    /// Decided incidents by flow, for late drops.
    decided: HashMap<Tuple, Arc<Incident>>,
    /// Connects closed by their owner before any answer.
    pub aborted_connects: u64,
}

impl Incidents {
    /// Nothing pending.
    pub fn new(config: IncidentConfig) -> Self {
        Self {
            drops: DropIndex::new(DROP_WINDOW, DROPS_HELD),
            dns: DnsTable::new(config.dns_timeout, config.dns_pending),
            decided: HashMap::new(),
            aborted_connects: 0,
        }
    }

    /// Pending DNS exchanges and drop tuples held.
    pub fn held(&self) -> (usize, usize) {
        (self.dns.len(), self.drops.len())
    }

    /// A drop event (any kind): held for joins; a new flow whose tuple
    /// matches a recently decided incident without drops updates it.
    pub fn on_drop(&mut self, drop: &Arc<DropEvent>, next_id: &mut u64) -> Decisions {
        self.drops.observe(drop);
        let _ = next_id;
        let mut decisions = Decisions::default();
        if drop.kind != EventKind::New {
            return decisions;
        }
        for key in DropIndex::keys(drop) {
            let Some(incident) = self.decided.get(&key) else {
                continue;
            };
            let joinable = incident.drops.is_empty()
                && matches!(
                    incident.place,
                    FailurePlace::Unseen | FailurePlace::BeyondNode | FailurePlace::NotFailed
                )
                && drop.first_seen <= incident.last_seen + LATE_WINDOW
                && drop.last_seen + Duration::from_secs(1) >= incident.first_seen;
            if !joinable {
                continue;
            }
            let mut updated = Incident::clone(incident);
            updated.event = EventKind::Update;
            updated.drops = vec![Arc::clone(drop)];
            if updated.place != FailurePlace::NotFailed {
                updated.place = FailurePlace::ThisNode;
            }
            updated.last_seen = updated.last_seen.max(drop.last_seen);
            let updated = Arc::new(updated);
            self.decided.insert(key, Arc::clone(&updated));
            decisions.incidents.push(updated);
        }
        decisions
    }

    /// A connect the kernel decided.
    pub fn on_connect(&mut self, seen: ConnectSeen, next_id: &mut u64) -> Decisions {
        let mut decisions = Decisions::default();
        let Some(outcome) = seen.outcome else {
            self.aborted_connects += 1;
            return decisions;
        };
        let drops = self.drops.find(&seen.flow, seen.started, seen.ended);
        let left = seen.left.clone();
        let (kind, place) = match outcome {
            ConnectOutcome::Established => (IncidentKind::ConnectRetried, FailurePlace::NotFailed),
            ConnectOutcome::Refused | ConnectOutcome::Unreachable => {
                (IncidentKind::ConnectRefused, FailurePlace::Refused)
            }
            ConnectOutcome::TimedOut => (IncidentKind::ConnectTimeout, place(&drops, &left)),
        };
        *next_id += 1;
        let incident = Incident {
            id: *next_id,
            event: EventKind::New,
            kind,
            place,
            flow: seen.flow,
            asked: seen.asked,
            netns: seen.netns,
            process: Some(seen.process),
            tcp: Some(TcpAttempt {
                outcome,
                syn_retransmits: seen.retransmits,
                socket_error: seen.socket_error,
                started: seen.started,
                ended: seen.ended,
                left_interface: left,
                syns_left: seen.syns_left,
            }),
            dns: None,
            drops,
            source: None,
            destination: None,
            explanation: None,
            first_seen: seen.started,
            last_seen: seen.ended,
        };
        decisions.incidents.push(self.decide(incident));
        decisions
    }

    /// A DNS message seen on an interface.
    pub fn on_dns(&mut self, seen: &DnsSeen, next_id: &mut u64) -> Decisions {
        let mut decisions = Decisions::default();
        match self.dns.observe(seen) {
            DnsOutcome::Nothing => {}
            DnsOutcome::Untracked => decisions.dns_untracked += 1,
            DnsOutcome::Failed(exchange) => {
                let incident = self.dns_incident(exchange, next_id);
                decisions.incidents.push(self.decide(incident));
            }
        }
        decisions
    }

    /// Time passes: DNS exchanges past their timeout are decided, old
    /// state is let go.
    pub fn on_tick(&mut self, now: SystemTime, next_id: &mut u64) -> Decisions {
        let mut decisions = Decisions::default();
        for exchange in self.dns.expire(now) {
            let incident = self.dns_incident(exchange, next_id);
            decisions.incidents.push(self.decide(incident));
        }
        self.drops.expire(now);
        if let Some(horizon) = now.checked_sub(LATE_WINDOW) {
            self.decided
                .retain(|_, incident| incident.last_seen >= horizon);
        }
        decisions
    }

    fn dns_incident(&self, exchange: Exchange, next_id: &mut u64) -> Incident {
        let protocol = if exchange.tcp {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let flow = Tuple {
            src: exchange.key.client,
            dst: exchange.key.server,
            protocol,
        };
        let until = exchange
            .answer
            .map_or(exchange.last_query, |(_, time)| time);
        let drops = self.drops.find(&flow, exchange.first_query, until);
        let left = exchange.left.clone();
        let (kind, place) = match exchange.answer {
            Some(_) => (IncidentKind::DnsError, FailurePlace::Refused),
            None => (IncidentKind::DnsUnanswered, place(&drops, &left)),
        };
        *next_id += 1;
        Incident {
            id: *next_id,
            event: EventKind::New,
            kind,
            place,
            flow,
            asked: None,
            netns: 0,
            process: None,
            tcp: None,
            dns: Some(DnsExchange {
                name: exchange.key.name,
                qtype: exchange.key.qtype,
                server: exchange.key.server,
                attempts: exchange.attempts,
                rcode: exchange.answer.map(|(rcode, _)| rcode),
                latency: exchange.answer.map(|(_, time)| {
                    time.duration_since(exchange.first_query)
                        .unwrap_or(Duration::ZERO)
                }),
                first_query: exchange.first_query,
                last_query: exchange.last_query,
                left_interface: left,
                tcp: exchange.tcp,
            }),
            drops,
            source: None,
            destination: None,
            explanation: None,
            first_seen: exchange.first_query,
            last_seen: until,
        }
    }

    /// Remembers a decided incident for late drops (bounded) and hands it on.
    fn decide(&mut self, incident: Incident) -> Arc<Incident> {
        let incident = Arc::new(incident);
        if self.decided.len() < DECIDED_HELD {
            self.decided.insert(incident.flow, Arc::clone(&incident));
        }
        incident
    }
}

/// Where a failure without an answer died: dropped here, left the node, or
/// unseen.
fn place(drops: &[Arc<DropEvent>], left: &Option<Interface>) -> FailurePlace {
    if !drops.is_empty() {
        FailurePlace::ThisNode
    } else if left.is_some() {
        FailurePlace::BeyondNode
    } else {
        FailurePlace::Unseen
    }
}

#[cfg(test)]
mod tests;
