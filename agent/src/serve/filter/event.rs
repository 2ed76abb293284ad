//! What filters read from an [`Event`], gathered once per event: the drop,
//! its explanation's identities, the parsed tuple addresses and the TCP
//! flag bits, so that each filter only compares.

use std::net::IpAddr;

use dropscope_proto::v1::{
    DropEvent, Endpoint, Event, EventKind, Explanation, PodIdentity, ServiceIdentity, Tuple,
    event::Event as Payload, identity::Identity as IdentityKind,
};

use super::value::tcp_flags_of;

/// One non-loss event as the filters see it.
pub(super) struct EventView<'e> {
    /// `Event.node`.
    pub(super) node: &'e str,
    /// The kind of the payload (`Event.kind` when there is none).
    pub(super) kind: i32,
    /// The drop, when the payload is one.
    pub(super) drop: Option<&'e DropEvent>,
    /// `drop.explanation`.
    pub(super) explanation: Option<&'e Explanation>,
    /// `explanation.source.identity`.
    source: Option<&'e IdentityKind>,
    /// `explanation.destination.identity`.
    destination: Option<&'e IdentityKind>,
    /// `explanation.service`, when it is a Service.
    service: Option<&'e ServiceIdentity>,
    /// `drop.packet` and `drop.conntrack.original`.
    tuples: [Option<&'e Tuple>; 2],
    /// The parsed source addresses of `tuples` (only when some filter reads
    /// addresses).
    source_ips: [Option<IpAddr>; 2],
    /// The parsed destination addresses of `tuples` (likewise).
    destination_ips: [Option<IpAddr>; 2],
    /// The bits of `drop.tcp_flags_seen`.
    pub(super) tcp_flags_seen: u8,
}

impl<'e> EventView<'e> {
    /// Gathers what filters read; parses addresses only when `addresses`.
    pub(super) fn new(event: &'e Event, addresses: bool) -> Self {
        let drop = match &event.event {
            Some(Payload::Drop(drop)) => Some(drop),
            Some(Payload::Loss(_)) | None => None,
        };
        let kind = match &event.event {
            Some(Payload::Drop(_)) => EventKind::Drop as i32,
            Some(Payload::Loss(_)) => EventKind::Loss as i32,
            None => event.kind,
        };
        let explanation = drop.and_then(|drop| drop.explanation.as_ref());
        let identity = |end: Option<&'e dropscope_proto::v1::FlowEnd>| {
            end.and_then(|end| end.identity.as_ref())
                .and_then(|identity| identity.identity.as_ref())
        };
        let tuples = [
            drop.and_then(|drop| drop.packet.as_ref()),
            drop.and_then(|drop| drop.conntrack.as_ref())
                .and_then(|conntrack| conntrack.original.as_ref()),
        ];
        let ips = |end: fn(&Tuple) -> Option<&Endpoint>| {
            if !addresses {
                return [None, None];
            }
            tuples.map(|tuple| tuple.and_then(end).and_then(parse_ip))
        };
        Self {
            node: &event.node,
            kind,
            drop,
            explanation,
            source: identity(explanation.and_then(|e| e.source.as_ref())),
            destination: identity(explanation.and_then(|e| e.destination.as_ref())),
            service: explanation
                .and_then(|e| e.service.as_ref())
                .and_then(|identity| match &identity.identity {
                    Some(IdentityKind::Service(service)) => Some(service),
                    _ => None,
                }),
            tuples,
            source_ips: ips(|tuple| tuple.source.as_ref()),
            destination_ips: ips(|tuple| tuple.destination.as_ref()),
            tcp_flags_seen: drop.map_or(0, |drop| tcp_flags_of(&drop.tcp_flags_seen)),
        }
    }

    /// The pod at the source, if it is one.
    pub(super) fn source_pod(&self) -> Option<&'e PodIdentity> {
        pod(self.source)
    }

    /// The pod at the destination, if it is one.
    pub(super) fn destination_pod(&self) -> Option<&'e PodIdentity> {
        pod(self.destination)
    }

    /// The pods at either end.
    pub(super) fn pods(&self) -> impl Iterator<Item = &'e PodIdentity> {
        self.source_pod().into_iter().chain(self.destination_pod())
    }

    /// The Services the flow was sent to: `explanation.service`, and a
    /// destination that is a Service.
    pub(super) fn services(&self) -> impl Iterator<Item = &'e ServiceIdentity> {
        let destination = match self.destination {
            Some(IdentityKind::Service(service)) => Some(service),
            _ => None,
        };
        self.service.into_iter().chain(destination)
    }

    /// The namespaces of either end (pod or Service) and of the Service the
    /// flow was sent to.
    pub(super) fn namespaces(&self) -> impl Iterator<Item = &'e str> {
        let of = |identity: Option<&'e IdentityKind>| match identity {
            Some(IdentityKind::Pod(pod)) => Some(pod.namespace.as_str()),
            Some(IdentityKind::Service(service)) => Some(service.namespace.as_str()),
            _ => None,
        };
        of(self.source)
            .into_iter()
            .chain(of(self.destination))
            .chain(self.service.map(|service| service.namespace.as_str()))
    }

    /// The packet and conntrack original tuples that are set.
    pub(super) fn tuples(&self) -> impl Iterator<Item = &'e Tuple> {
        self.tuples.into_iter().flatten()
    }

    /// Source addresses of the packet and original tuples.
    pub(super) fn source_ips(&self) -> impl Iterator<Item = IpAddr> {
        self.source_ips.into_iter().flatten()
    }

    /// Destination addresses of the packet and original tuples.
    pub(super) fn destination_ips(&self) -> impl Iterator<Item = IpAddr> {
        self.destination_ips.into_iter().flatten()
    }
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
