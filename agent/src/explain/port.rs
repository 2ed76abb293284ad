//! Port semantics (`ports` entries). An empty list matches every port and
//! protocol. An entry matches its protocol (TCP when unset) and: every port
//! when `port` is unset; `port` alone; `port`..=`endPort`; or, for a named
//! port, a container port of that name and protocol on the destination pod
//! (ingress: the isolated pod; egress: the peer) whose number is the
//! packet's. Ports are post-DNAT: a Service's target port, not its port.
//! Receives compiled port entries and the packet; emits match or why not.

use crate::{
    enrich::view::{Pod, PortMatch, PortRule},
    model::Protocol,
};

/// Why one port entry did not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMiss<'p> {
    /// The protocol differs.
    Protocol {
        /// The entry.
        rule: &'p PortRule,
    },
    /// The number is outside the entry's port or range.
    Number {
        /// The entry.
        rule: &'p PortRule,
    },
    /// The named port does not exist (with that protocol) on the destination.
    NamedUnresolved {
        /// The entry.
        rule: &'p PortRule,
    },
    /// The named port resolves, to another number.
    NamedOther {
        /// The entry.
        rule: &'p PortRule,
        /// What it resolves to on the destination pod.
        resolved: u16,
    },
}

/// The outcome of a rule's port list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortOutcome<'p> {
    /// True when an entry (or the empty list) matched.
    pub matched: bool,
    /// Why each entry missed, when none matched.
    pub misses: Vec<PortMiss<'p>>,
}

/// Checks one entry; `None` when it matches.
pub fn check<'p>(
    rule: &'p PortRule,
    port: u16,
    protocol: Protocol,
    destination: Option<&Pod>,
) -> Option<PortMiss<'p>> {
    if rule.protocol != protocol {
        return Some(PortMiss::Protocol { rule });
    }
    match &rule.port {
        PortMatch::Any => None,
        PortMatch::Range(start, end) => {
            (!(start..=end).contains(&&port)).then_some(PortMiss::Number { rule })
        }
        PortMatch::Named(name) => {
            match destination.and_then(|pod| pod.named_port(name, protocol)) {
                None => Some(PortMiss::NamedUnresolved { rule }),
                Some(resolved) if resolved == port => None,
                Some(resolved) => Some(PortMiss::NamedOther { rule, resolved }),
            }
        }
    }
}

/// Checks a rule's port list (empty: every port).
pub fn check_all<'p>(
    ports: &'p [PortRule],
    port: u16,
    protocol: Protocol,
    destination: Option<&Pod>,
) -> PortOutcome<'p> {
    let mut misses = Vec::new();
    for rule in ports {
        match check(rule, port, protocol, destination) {
            None => {
                return PortOutcome {
                    matched: true,
                    misses: Vec::new(),
                };
            }
            Some(miss) => misses.push(miss),
        }
    }
    PortOutcome {
        matched: ports.is_empty(),
        misses,
    }
}

/// True when an entry would match `port` (ignoring named ports): used to
/// spot rules written for a Service port instead of the target port.
pub fn covers_number(rule: &PortRule, port: u16, protocol: Protocol) -> bool {
    rule.protocol == protocol
        && match &rule.port {
            PortMatch::Any => true,
            PortMatch::Range(start, end) => (*start..=*end).contains(&port),
            PortMatch::Named(_) => false,
        }
}
