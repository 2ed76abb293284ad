//! Explanation: what NetworkPolicy (networking.k8s.io/v1) would do with a
//! flow, and why. Pure: receives a [`View`] of the metadata store and a
//! [`Flow`]; emits a [`model::Explanation`](crate::model::Explanation) —
//! verdict, policies per direction, the closest rule that missed, named
//! traps ([`hint`]) and the smallest policy that would allow it ([`fix`]).
//!
//! Semantics (the API reference, and the choices where it leaves room):
//! - a flow needs egress from the source and ingress at the destination;
//!   each direction is checked on its own pod ([`verdict`]);
//! - ports are post-DNAT: a flow to a Service is evaluated on the backend
//!   pod and the target port ([`port`]);
//! - a pod cannot block traffic to itself: pod → same pod is allowed
//!   (hint `traffic_to_self`);
//! - host-network pods are never isolated and selectors never match them
//!   (their traffic has the node address): only ipBlock does ([`peer`]);
//! - traffic from a pod's own node: the reference says it is always
//!   allowed, yet CNIs differ and some enforce it. dropscope evaluates the
//!   rules as written (a node address only matches ipBlock) and, when that
//!   denies, names it with hint `kubelet_probe_blocked` rather than
//!   pretending either way;
//! - ipBlock matches any address in it, pod addresses included;
//! - fail closed: when an object that could decide the verdict was not
//!   loaded (invalid, or its kind could not be listed), the explanation
//!   keeps the verdict the loaded objects give, lists what is missing
//!   ([`incomplete`]), puts hint `explanation_incomplete` first and never
//!   says `policy_allows`.

pub mod bound;
pub mod closest;
pub mod fix;
pub mod hint;
pub mod incomplete;
pub mod peer;
pub mod port;
pub mod selector;
pub mod step;
pub mod verdict;

#[cfg(test)]
pub(crate) mod tests;

use std::{net::IpAddr, sync::Arc};

use self::{
    peer::PeerEnd,
    verdict::{DirectionCheck, Packet},
};
use crate::{
    enrich::view::{Key, Kind, Pod, Service, ServicePort, View},
    model::{
        Backend, ClosestMiss, Direction, DirectionReport, Explanation, FlowEnd, Identity,
        PolicyRef, Protocol, RuleRef, Tuple, Verdict, record::Conntrack,
    },
};

/// One end of a flow as a user or the pipeline names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An address (a Service ClusterIP is resolved to its backends).
    Ip(IpAddr),
    /// A pod by namespace and name.
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A Service by namespace and name (destination only).
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// A flow to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Source.
    pub from: Target,
    /// Destination: a pod, an address, or a Service (then `port` is the
    /// Service port).
    pub to: Target,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// The original destination before DNAT (conntrack), when `to` is
    /// already the backend.
    pub original: Option<(IpAddr, u16)>,
}

impl Flow {
    /// The flow of a dropped packet: its tuple as seen at the drop
    /// (post-NAT), and the original destination when conntrack shows a DNAT.
    pub fn from_packet(packet: &Tuple, conntrack: Option<&Conntrack>) -> Self {
        Self {
            from: Target::Ip(packet.src.ip),
            to: Target::Ip(packet.dst.ip),
            port: packet.dst.port,
            protocol: packet.protocol,
            original: conntrack
                .filter(|entry| entry.is_dnat())
                .map(|entry| (entry.original.dst.ip, entry.original.dst.port)),
        }
    }
}

/// Why a flow cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such pod in the store.
    #[error("pod {namespace}/{name} not found")]
    PodNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pod exists but the metadata store could not load it.
    #[error("pod {namespace}/{name} could not be loaded: {reason}")]
    PodNotLoaded {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why, naming the field (or why no pod could be listed).
        reason: String,
    },
    /// The pod has no IP yet.
    #[error("pod {namespace}/{name} has no IP (not running?)")]
    PodWithoutIp {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// No such Service in the store.
    #[error("service {namespace}/{name} not found")]
    ServiceNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Service exists but the metadata store could not load it.
    #[error("service {namespace}/{name} could not be loaded: {reason}")]
    ServiceNotLoaded {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why, naming the field (or why no Service could be listed).
        reason: String,
    },
    /// The Service has no such port.
    #[error("service {namespace}/{name} has no {protocol} port {port}")]
    ServicePortNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Port asked for.
        port: u16,
        /// Protocol asked for.
        protocol: Protocol,
    },
    /// A Service can only be a destination.
    #[error("a service can only be the destination")]
    ServiceAsSource,
    /// A target that is neither `NS/POD`, `NS/svc/NAME` nor an IP.
    #[error("{input:?} is not NS/POD, NS/svc/NAME or an IP address")]
    BadTarget {
        /// What was given.
        input: String,
    },
}

impl std::str::FromStr for Target {
    type Err = Error;

    /// `NS/POD`, `NS/svc/NAME` (or `NS/service/NAME`), or an IP address.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = input.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let bad = || Error::BadTarget {
            input: input.to_string(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [namespace, name] => Ok(Self::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            [namespace, "svc" | "service", name] => Ok(Self::Service {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

/// The Service a flow went through.
#[derive(Clone, Copy, Debug)]
pub struct ServiceHit<'a> {
    /// The Service.
    pub service: &'a Service,
    /// The port used.
    pub port: &'a ServicePort,
    /// The ClusterIP used.
    pub vip: IpAddr,
}

/// A resolved end.
#[derive(Clone, Copy, Debug)]
pub struct End<'a> {
    /// Address (post-DNAT).
    pub ip: IpAddr,
    /// The pod, when it is one.
    pub pod: Option<&'a Arc<Pod>>,
}

impl<'a> End<'a> {
    fn peer(&self) -> PeerEnd<'a> {
        PeerEnd {
            ip: self.ip,
            pod: self.pod.map(Arc::as_ref),
        }
    }
}

/// Everything known about one flow once resolved and checked.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The view.
    pub view: View<'a>,
    /// Source.
    pub source: End<'a>,
    /// Destination (post-DNAT).
    pub destination: End<'a>,
    /// Source identity.
    pub source_identity: Identity,
    /// Destination identity.
    pub destination_identity: Identity,
    /// The Service, when the flow used one.
    pub service: Option<ServiceHit<'a>>,
    /// True when the Service had no backend to evaluate.
    pub no_endpoints: bool,
    /// Destination port (post-DNAT).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// The source's egress.
    pub egress: DirectionCheck<'a>,
    /// The destination's ingress.
    pub ingress: DirectionCheck<'a>,
    /// Pod to itself.
    pub to_self: bool,
    /// The verdict.
    pub verdict: Verdict,
}

impl<'a> Facts<'a> {
    /// The check of one direction.
    pub fn direction(&self, direction: Direction) -> &DirectionCheck<'a> {
        match direction {
            Direction::Egress => &self.egress,
            Direction::Ingress => &self.ingress,
        }
    }

    /// The end opposite the pod whose policies a direction checks.
    pub fn other_end(&self, direction: Direction) -> (&End<'a>, &Identity) {
        match direction {
            Direction::Egress => (&self.destination, &self.destination_identity),
            Direction::Ingress => (&self.source, &self.source_identity),
        }
    }

    /// The packet as rules see it.
    pub fn packet(&self) -> Packet<'a> {
        Packet {
            port: self.port,
            protocol: self.protocol,
            destination: self.destination.pod.map(Arc::as_ref),
        }
    }
}

/// Why a named object is not in the store: skipped as invalid, its kind
/// not listed, or absent (`None`).
fn not_loaded(view: &View<'_>, kind: Kind, namespace: &str, name: &str) -> Option<String> {
    let key = Key {
        namespace: namespace.into(),
        name: name.into(),
    };
    let skipped = view.skipped();
    skipped
        .get(kind, &key)
        .map(|entry| entry.reason.clone())
        .or_else(|| skipped.unavailable(kind).map(str::to_string))
}

fn pod_end<'a>(view: &View<'a>, namespace: &str, name: &str) -> Result<End<'a>, Error> {
    let pod = view.pod(namespace, name).ok_or_else(|| {
        match not_loaded(view, Kind::Pod, namespace, name) {
            Some(reason) => Error::PodNotLoaded {
                namespace: namespace.into(),
                name: name.into(),
                reason,
            },
            None => Error::PodNotFound {
                namespace: namespace.into(),
                name: name.into(),
            },
        }
    })?;
    let ip = pod
        .ips
        .first()
        .copied()
        .ok_or_else(|| Error::PodWithoutIp {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    Ok(End { ip, pod: Some(pod) })
}

struct Destination<'a> {
    end: End<'a>,
    port: u16,
    service: Option<ServiceHit<'a>>,
    no_endpoints: bool,
}

fn service_destinations<'a>(
    view: &View<'a>,
    service: &'a Arc<Service>,
    port: u16,
    protocol: Protocol,
    vip: Option<IpAddr>,
) -> Result<Vec<Destination<'a>>, Error> {
    let service_port =
        View::service_port(service, port, protocol).ok_or_else(|| Error::ServicePortNotFound {
            namespace: service.namespace.to_string(),
            name: service.name.to_string(),
            port,
            protocol,
        })?;
    let vip = vip
        .or_else(|| service.cluster_ips.first().copied())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let hit = ServiceHit {
        service,
        port: service_port,
        vip,
    };
    let backends = view.service_backends(service, service_port);
    if backends.is_empty() {
        return Ok(vec![Destination {
            end: End { ip: vip, pod: None },
            port,
            service: Some(hit),
            no_endpoints: true,
        }]);
    }
    Ok(backends
        .into_iter()
        .take(16)
        .map(|backend| Destination {
            end: End {
                ip: backend.ip,
                pod: view.pod_by_ip(backend.ip).or_else(|| {
                    backend
                        .pod
                        .as_ref()
                        .and_then(|pod| view.pod(&pod.namespace, &pod.name))
                }),
            },
            port: backend.port,
            service: Some(hit),
            no_endpoints: false,
        })
        .collect())
}

fn destinations<'a>(view: &View<'a>, flow: &Flow) -> Result<Vec<Destination<'a>>, Error> {
    let direct = |end: End<'a>| {
        vec![Destination {
            end,
            port: flow.port,
            service: None,
            no_endpoints: false,
        }]
    };
    match &flow.to {
        Target::Pod { namespace, name } => Ok(direct(pod_end(view, namespace, name)?)),
        Target::Service { namespace, name } => {
            let service = view.service(namespace, name).ok_or_else(|| {
                match not_loaded(view, Kind::Service, namespace, name) {
                    Some(reason) => Error::ServiceNotLoaded {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        reason,
                    },
                    None => Error::ServiceNotFound {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    },
                }
            })?;
            service_destinations(view, service, flow.port, flow.protocol, None)
        }
        Target::Ip(ip) => {
            if let Some((vip, service_port)) = flow.original
                && let Some(service) = view.service_by_ip(vip)
                && let Some(port) = View::service_port(service, service_port, flow.protocol)
            {
                let end = End {
                    ip: *ip,
                    pod: view.pod_by_ip(*ip),
                };
                return Ok(vec![Destination {
                    end,
                    port: flow.port,
                    service: Some(ServiceHit { service, port, vip }),
                    no_endpoints: false,
                }]);
            }
            if let Some(service) = view.service_by_ip(*ip) {
                return service_destinations(view, service, flow.port, flow.protocol, Some(*ip));
            }
            Ok(direct(End {
                ip: *ip,
                pod: view.pod_by_ip(*ip),
            }))
        }
    }
}

fn source<'a>(view: &View<'a>, flow: &Flow) -> Result<End<'a>, Error> {
    match &flow.from {
        Target::Pod { namespace, name } => pod_end(view, namespace, name),
        Target::Ip(ip) => Ok(End {
            ip: *ip,
            pod: view.pod_by_ip(*ip),
        }),
        Target::Service { .. } => Err(Error::ServiceAsSource),
    }
}

/// Explains a flow. For a Service with several backends, the first backend
/// NetworkPolicy denies is reported (else the first one).
pub fn explain(view: &View<'_>, flow: &Flow) -> Result<Explanation, Error> {
    let source = source(view, flow)?;
    let mut first = None;
    for destination in destinations(view, flow)? {
        let facts = check_one(view, source, destination, flow.protocol);
        if !facts.verdict.is_allow() {
            return Ok(describe(facts));
        }
        first.get_or_insert(facts);
    }
    first.map(describe).ok_or_else(|| match &flow.to {
        Target::Service { namespace, name } | Target::Pod { namespace, name } => {
            Error::ServiceNotFound {
                namespace: namespace.clone(),
                name: name.clone(),
            }
        }
        Target::Ip(ip) => Error::ServiceNotFound {
            namespace: String::new(),
            name: ip.to_string(),
        },
    })
}

fn report(check: &DirectionCheck<'_>) -> DirectionReport {
    DirectionReport {
        pod: check
            .pod
            .map(|pod| format!("{}/{}", pod.namespace, pod.name)),
        isolated: check.isolated(),
        policies: check
            .policies
            .iter()
            .map(|policy| policy_ref(policy))
            .collect(),
        allowed_by: check
            .rules
            .iter()
            .filter(|rule| rule.allows())
            .map(|rule| RuleRef {
                policy: policy_ref(rule.policy),
                rule: rule.index,
            })
            .collect(),
        allowed: check.allowed(),
        ..DirectionReport::default()
    }
}

/// A policy's reference.
pub fn policy_ref(policy: &crate::enrich::view::Policy) -> PolicyRef {
    PolicyRef {
        namespace: policy.namespace.to_string(),
        name: policy.name.to_string(),
    }
}

fn check_one<'a>(
    view: &View<'a>,
    source: End<'a>,
    destination: Destination<'a>,
    protocol: Protocol,
) -> Facts<'a> {
    // Identities are filled in by `describe`, for the one flow reported.
    let source_identity = Identity::Unknown { ip: source.ip };
    let destination_identity = Identity::Unknown {
        ip: destination.end.ip,
    };
    let packet = Packet {
        port: destination.port,
        protocol,
        destination: destination.end.pod.map(Arc::as_ref),
    };
    let egress = verdict::check(
        view,
        Direction::Egress,
        source.pod.map(Arc::as_ref),
        &destination.end.peer(),
        &packet,
    );
    let ingress = if destination.no_endpoints {
        verdict::check(view, Direction::Ingress, None, &source.peer(), &packet)
    } else {
        verdict::check(
            view,
            Direction::Ingress,
            destination.end.pod.map(Arc::as_ref),
            &source.peer(),
            &packet,
        )
    };
    let to_self = match (source.pod, destination.end.pod) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    let verdict = if to_self {
        Verdict::Allow
    } else {
        Verdict::of(egress.allowed(), ingress.allowed())
    };
    Facts {
        view: *view,
        source,
        destination: destination.end,
        source_identity,
        destination_identity,
        service: destination.service,
        no_endpoints: destination.no_endpoints,
        port: destination.port,
        protocol,
        egress,
        ingress,
        to_self,
        verdict,
    }
}

fn identities(facts: &mut Facts<'_>) {
    let view = facts.view;
    let dst_node = facts.destination.pod.and_then(|pod| pod.node.as_deref());
    facts.source_identity = match facts.source.pod {
        Some(pod) => pod.identity(),
        None => view.identify(facts.source.ip, dst_node),
    };
    facts.destination_identity = match (facts.destination.pod, facts.no_endpoints, &facts.service) {
        (Some(pod), _, _) => pod.identity(),
        (None, true, Some(hit)) => service_identity(hit, None),
        _ => view.identify(facts.destination.ip, None),
    };
}

fn describe(mut facts: Facts<'_>) -> Explanation {
    identities(&mut facts);
    let verdict = facts.verdict;
    let protocol = facts.protocol;
    let closest_miss = if verdict.is_allow() {
        None
    } else {
        closest::closest(&facts).map(|(direction, rule)| ClosestMiss {
            policy: policy_ref(rule.policy),
            direction,
            rule: rule.index,
            peer_matched: rule.peers.matched,
            port_matched: rule.ports.matched,
            why: closest::why(&facts, direction, rule),
        })
    };
    let missing = incomplete::missing(&facts);
    let hints = hint::hints(&facts, &missing);
    let suggested_policy = if verdict.is_allow() {
        None
    } else {
        fix::suggest(&facts)
    };
    let egress = report(&facts.egress);
    let ingress = report(&facts.ingress);
    let mut explanation = Explanation {
        verdict,
        source: FlowEnd {
            ip: facts.source.ip,
            identity: facts.source_identity,
        },
        destination: FlowEnd {
            ip: facts.destination.ip,
            identity: facts.destination_identity,
        },
        service: facts.service.as_ref().map(|hit| {
            service_identity(
                hit,
                (!facts.no_endpoints).then(|| Backend {
                    ip: facts.destination.ip,
                    port: facts.port,
                    pod: facts
                        .destination
                        .pod
                        .map(|pod| format!("{}/{}", pod.namespace, pod.name)),
                }),
            )
        }),
        port: facts.port,
        protocol,
        egress,
        ingress,
        closest_miss,
        hints,
        hints_unlisted: 0,
        suggested_policy,
        incomplete: missing.objects,
        incomplete_unlisted: missing.unlisted,
        stale: facts.view.stale_kinds(),
    };
    bound::bound(&mut explanation);
    explanation
}

fn service_identity(hit: &ServiceHit<'_>, backend: Option<Backend>) -> Identity {
    Identity::Service {
        namespace: hit.service.namespace.to_string(),
        name: hit.service.name.to_string(),
        port_name: hit.port.name.as_ref().map(|name| name.to_string()),
        backend,
    }
}
