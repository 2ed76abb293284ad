//! What filters read from an [`Event`], gathered once per event: the drop
//! or the incident, the drops it stands for, the explanation, the
//! identities of both ends and the parsed tuple addresses, so that each
//! filter only compares.
//!
//! A drop and an incident are seen through the same accessors: a drop is
//! its own only drop, and its tuples are its packet and conntrack original;
//! an incident's drops are the kernel drops joined to it, and its tuples are
//! its flow and both tuples of every joined drop.

use std::net::IpAddr;

use dropscope_proto::v1::{
    DropEvent, Endpoint, Event, EventKind, Explanation, FlowEnd, Identity, Incident, PodIdentity,
    ServiceIdentity, Tuple, event::Event as Payload, identity::Identity as IdentityKind,
};

/// One non-loss event as the filters see it.
pub(super) struct EventView<'e> {
    /// `Event.node`.
    pub(super) node: &'e str,
    /// The kind of the payload (`Event.kind` when there is none).
    pub(super) kind: i32,
    /// The drop, when the payload is one.
    pub(super) drop: Option<&'e DropEvent>,
    /// The incident, when the payload is one.
    pub(super) incident: Option<&'e Incident>,
    /// The drops the event stands for: the drop itself, or the incident's
    /// joined drops.
    drops: &'e [DropEvent],
    /// `drop.explanation` or `incident.explanation`.
    pub(super) explanation: Option<&'e Explanation>,
    /// `incident.flow`.
    flow: Option<&'e Tuple>,
    /// `incident.asked`: a destination outside every tuple.
    asked: Option<&'e Endpoint>,
    /// The source identities: `incident.source`, then
    /// `explanation.source.identity`.
    sources: [Option<&'e IdentityKind>; 2],
    /// The destination identities: `incident.destination` (a Service for a
    /// VIP), then `explanation.destination.identity` (after DNAT).
    destinations: [Option<&'e IdentityKind>; 2],
    /// `explanation.service`, when it is a Service.
    service: Option<&'e ServiceIdentity>,
    /// The parsed source addresses of the tuples (only when some filter
    /// reads addresses).
    source_ips: Vec<IpAddr>,
    /// The parsed destination addresses of the tuples and `asked`
    /// (likewise).
    destination_ips: Vec<IpAddr>,
}

impl<'e> EventView<'e> {
    /// Gathers what filters read; parses addresses only when `addresses`.
    pub(super) fn new(event: &'e Event, addresses: bool) -> Self {
        let (kind, drop, incident) = match &event.event {
            Some(Payload::Drop(drop)) => (EventKind::Drop as i32, Some(drop), None),
            Some(Payload::Incident(incident)) => (EventKind::Incident as i32, None, Some(incident)),
            Some(Payload::Loss(_)) => (EventKind::Loss as i32, None, None),
            Some(Payload::NodeState(_)) => (EventKind::NodeState as i32, None, None),
            None => (event.kind, None, None),
        };
        let drops = match (drop, incident) {
            (Some(drop), _) => std::slice::from_ref(drop),
            (None, Some(incident)) => incident.drops.as_slice(),
            (None, None) => &[],
        };
        let explanation = drop
            .and_then(|drop| drop.explanation.as_ref())
            .or_else(|| incident.and_then(|incident| incident.explanation.as_ref()));
        let mut view = Self {
            node: &event.node,
            kind,
            drop,
            incident,
            drops,
            explanation,
            flow: incident.and_then(|incident| incident.flow.as_ref()),
            asked: incident.and_then(|incident| incident.asked.as_ref()),
            sources: [
                incident.and_then(|incident| identity(incident.source.as_ref())),
                end(explanation.and_then(|e| e.source.as_ref())),
            ],
            destinations: [
                incident.and_then(|incident| identity(incident.destination.as_ref())),
                end(explanation.and_then(|e| e.destination.as_ref())),
            ],
            service: explanation
                .and_then(|e| identity(e.service.as_ref()))
                .and_then(|identity| match identity {
                    IdentityKind::Service(service) => Some(service),
                    _ => None,
                }),
            source_ips: Vec::new(),
            destination_ips: Vec::new(),
        };
        if addresses {
            view.source_ips = view
                .tuples()
                .filter_map(|tuple| tuple.source.as_ref().and_then(parse_ip))
                .collect();
            view.destination_ips = view
                .tuples()
                .filter_map(|tuple| tuple.destination.as_ref())
                .chain(view.asked)
                .filter_map(parse_ip)
                .collect();
        }
        view
    }

    /// The drops the event stands for: the drop itself, or an incident's
    /// joined drops.
    pub(super) fn drops(&self) -> impl Iterator<Item = &'e DropEvent> {
        self.drops.iter()
    }

    /// The pods at the source, if they are pods.
    pub(super) fn source_pods(&self) -> impl Iterator<Item = &'e PodIdentity> {
        self.sources.into_iter().filter_map(pod)
    }

    /// The pods at the destination, if they are pods.
    pub(super) fn destination_pods(&self) -> impl Iterator<Item = &'e PodIdentity> {
        self.destinations.into_iter().filter_map(pod)
    }

    /// The pods at either end.
    pub(super) fn pods(&self) -> impl Iterator<Item = &'e PodIdentity> {
        self.source_pods().chain(self.destination_pods())
    }

    /// The Services the flow was sent to: `explanation.service`, and a
    /// destination that is a Service.
    pub(super) fn services(&self) -> impl Iterator<Item = &'e ServiceIdentity> {
        let destinations = self
            .destinations
            .into_iter()
            .filter_map(|identity| match identity {
                Some(IdentityKind::Service(service)) => Some(service),
                _ => None,
            });
        self.service.into_iter().chain(destinations)
    }

    /// The namespaces of either end (pod or Service) and of the Service the
    /// flow was sent to.
    pub(super) fn namespaces(&self) -> impl Iterator<Item = &'e str> {
        let of = |identity: Option<&'e IdentityKind>| match identity {
            Some(IdentityKind::Pod(pod)) => Some(pod.namespace.as_str()),
            Some(IdentityKind::Service(service)) => Some(service.namespace.as_str()),
            _ => None,
        };
        self.sources
            .into_iter()
            .chain(self.destinations)
            .filter_map(of)
            .chain(self.service.map(|service| service.namespace.as_str()))
    }

    /// The packet tuples: a drop's packet, or an incident's flow and the
    /// packets of its joined drops.
    pub(super) fn packets(&self) -> impl Iterator<Item = &'e Tuple> {
        self.flow
            .into_iter()
            .chain(self.drops().filter_map(|drop| drop.packet.as_ref()))
    }

    /// Every tuple: the packet tuples and the conntrack original tuples of
    /// the drops.
    pub(super) fn tuples(&self) -> impl Iterator<Item = &'e Tuple> {
        let originals = self.drops().filter_map(|drop| {
            drop.conntrack
                .as_ref()
                .and_then(|conntrack| conntrack.original.as_ref())
        });
        self.packets().chain(originals)
    }

    /// Every endpoint of the tuples, and the destination the application
    /// asked for.
    pub(super) fn endpoints(&self) -> impl Iterator<Item = &'e Endpoint> {
        self.tuples()
            .flat_map(|tuple| [&tuple.source, &tuple.destination])
            .flatten()
            .chain(self.asked)
    }

    /// Source addresses of the tuples.
    pub(super) fn source_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.source_ips.iter().copied()
    }

    /// Destination addresses of the tuples and of `asked`.
    pub(super) fn destination_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.destination_ips.iter().copied()
    }
}

/// The member of an identity that is set.
fn identity(identity: Option<&Identity>) -> Option<&IdentityKind> {
    identity.and_then(|identity| identity.identity.as_ref())
}

/// The identity of one end of an explanation.
fn end(end: Option<&FlowEnd>) -> Option<&IdentityKind> {
    identity(end.and_then(|end| end.identity.as_ref()))
}

/// The pod of an identity, if it is one.
fn pod(identity: Option<&IdentityKind>) -> Option<&PodIdentity> {
    match identity {
        Some(IdentityKind::Pod(pod)) => Some(pod),
        _ => None,
    }
}

/// The address of an endpoint; IPv4-mapped IPv6 addresses as IPv4.
fn parse_ip(endpoint: &Endpoint) -> Option<IpAddr> {
    endpoint
        .ip
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}
