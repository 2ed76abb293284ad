//! Proto events for the filter tests: a plain drop, the same explained
//! (pod to pod, denied on ingress), and DNATed from a Service VIP; a loss;
//! incidents: a connect timeout joined with that DNATed drop, one with no
//! evidence but its flow, and an unanswered DNS query.

use std::collections::BTreeMap;

use dropscope_proto::v1::{
    ClosestMiss, ConnectOutcome, Conntrack, DirectionReport, DnsExchange, DropEvent, DropEventKind,
    DropReason, Endpoint, Event, EventKind, Explanation, FailurePlace, FlowEnd, Hint, Identity,
    Incident, IncidentEventKind, IncidentKind, LossEvent, LossSource, PodIdentity, PolicyDirection,
    PolicyRef, Process, Protocol, ServiceIdentity, TcpAttempt, Tuple, Verdict, Workload,
    event::Event as Payload, identity::Identity as IdentityKind,
};

use super::s;

/// An endpoint.
pub(super) fn endpoint(ip: &str, port: u32) -> Option<Endpoint> {
    Some(Endpoint {
        ip: ip.into(),
        port,
    })
}

/// A TCP tuple `source:sport → destination:dport`.
pub(super) fn tcp(source: &str, sport: u32, destination: &str, dport: u32) -> Tuple {
    Tuple {
        source: endpoint(source, sport),
        destination: endpoint(destination, dport),
        protocol: Protocol::Tcp as i32,
        protocol_number: 6,
    }
}

/// A pod identity.
pub(super) fn pod(
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    workload: (&str, &str),
) -> Identity {
    Identity {
        identity: Some(IdentityKind::Pod(PodIdentity {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
            workload: Some(Workload {
                kind: workload.0.into(),
                name: workload.1.into(),
            }),
            node: "node-a".into(),
            host_network: false,
        })),
    }
}

/// A Service identity.
pub(super) fn service(namespace: &str, name: &str) -> Identity {
    Identity {
        identity: Some(IdentityKind::Service(ServiceIdentity {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        })),
    }
}

/// A policy reference.
fn policy(namespace: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// A plain kernel drop with no explanation: TCP 10.0.1.5:41000 →
/// 10.0.2.7:8080 SYN, NETFILTER_DROP, seen by node-a.
pub(super) fn plain() -> Event {
    Event {
        event: Some(Payload::Drop(DropEvent {
            flow_id: 1,
            kind: DropEventKind::New as i32,
            reason: Some(DropReason {
                code: 8,
                name: "NETFILTER_DROP".into(),
            }),
            packet: Some(tcp("10.0.1.5", 41000, "10.0.2.7", 8080)),
            tcp_flags: s(&["SYN"]),
            tcp_flags_seen: s(&["SYN"]),
            packets: 1,
            new_packets: 1,
            ..Default::default()
        })),
        kind: EventKind::Drop as i32,
        node: "node-a".into(),
        ..Default::default()
    }
}

/// `plain()` explained: shop/frontend-7d9f-abc (Deployment frontend,
/// app=frontend,tier=web) → shop/api-5c6d-xyz (StatefulSet api,
/// app=api,env=prod), denied on ingress by shop/default-deny, egress
/// isolated by shop/egress-web, closest miss shop/allow-api, hint
/// port_mismatch.
pub(super) fn explained() -> Event {
    with_drop(plain(), |drop| {
        drop.explanation = Some(Explanation {
            verdict: Verdict::DenyIngress as i32,
            source: Some(FlowEnd {
                ip: "10.0.1.5".into(),
                identity: Some(pod(
                    "shop",
                    "frontend-7d9f-abc",
                    &[("app", "frontend"), ("tier", "web")],
                    ("Deployment", "frontend"),
                )),
            }),
            destination: Some(FlowEnd {
                ip: "10.0.2.7".into(),
                identity: Some(pod(
                    "shop",
                    "api-5c6d-xyz",
                    &[("app", "api"), ("env", "prod")],
                    ("StatefulSet", "api"),
                )),
            }),
            port: 8080,
            protocol: Protocol::Tcp as i32,
            egress: Some(DirectionReport {
                pod: "shop/frontend-7d9f-abc".into(),
                isolated: true,
                policies: vec![policy("shop", "egress-web")],
                allowed: true,
                ..Default::default()
            }),
            ingress: Some(DirectionReport {
                pod: "shop/api-5c6d-xyz".into(),
                isolated: true,
                policies: vec![policy("shop", "default-deny")],
                allowed: false,
                ..Default::default()
            }),
            closest_miss: Some(ClosestMiss {
                policy: Some(policy("shop", "allow-api")),
                direction: PolicyDirection::Ingress as i32,
                rule: 0,
                peer_matched: true,
                port_matched: false,
                why: "port 8080 is not 80".into(),
            }),
            hints: vec![Hint {
                code: "port_mismatch".into(),
                message: "the rule allows port 80, not 8080".into(),
            }],
            ..Default::default()
        });
    })
}

/// `explained()` sent to the Service VIP shop/api-svc 10.96.0.10:80 and
/// DNATed to the pod: the conntrack original keeps the VIP.
pub(super) fn dnat() -> Event {
    with_drop(explained(), |drop| {
        drop.conntrack = Some(Conntrack {
            original: Some(tcp("10.0.1.5", 41000, "10.96.0.10", 80)),
            reply: Some(tcp("10.0.2.7", 8080, "10.0.1.5", 41000)),
            dnat: true,
            snat: false,
        });
        if let Some(explanation) = drop.explanation.as_mut() {
            explanation.service = Some(service("shop", "api-svc"));
        }
    })
}

/// A loss event.
pub(super) fn loss() -> Event {
    Event {
        event: Some(Payload::Loss(LossEvent {
            source: LossSource::Subscriber as i32,
            lost_events: 3,
            total_events: 3,
            ..Default::default()
        })),
        kind: EventKind::Loss as i32,
        node: "node-a".into(),
        ..Default::default()
    }
}

/// `event` with its drop changed by `change`.
pub(super) fn with_drop(mut event: Event, change: impl FnOnce(&mut DropEvent)) -> Event {
    if let Some(Payload::Drop(drop)) = event.event.as_mut() {
        change(drop);
    }
    event
}

/// `event` with its explanation changed by `change`.
pub(super) fn with_explanation(event: Event, change: impl FnOnce(&mut Explanation)) -> Event {
    with_drop(event, |drop| {
        if let Some(explanation) = drop.explanation.as_mut() {
            change(explanation);
        }
    })
}

/// shop/frontend-7d9f-abc (Deployment frontend, app=frontend,tier=web), as
/// its cgroup names it.
fn frontend() -> Identity {
    pod(
        "shop",
        "frontend-7d9f-abc",
        &[("app", "frontend"), ("tier", "web")],
        ("Deployment", "frontend"),
    )
}

/// A connect from shop/frontend-7d9f-abc (10.0.1.5:41000) to the Service
/// VIP shop/api-svc 10.96.0.10:80 that timed out, on node-a: the kernel
/// dropped its SYN after DNAT to shop/api-5c6d-xyz 10.0.2.7:8080
/// (NETFILTER_DROP, the drop of `dnat()`), so it died on this node; the
/// explanation (denied on ingress) is the drop's.
pub(super) fn incident() -> Event {
    let Some(Payload::Drop(mut drop)) = dnat().event else {
        unreachable!("dnat() is a drop")
    };
    let explanation = drop.explanation.take();
    Event {
        event: Some(Payload::Incident(Incident {
            incident_id: 7,
            event_kind: IncidentEventKind::New as i32,
            kind: IncidentKind::ConnectTimeout as i32,
            place: FailurePlace::ThisNode as i32,
            flow: Some(tcp("10.0.1.5", 41000, "10.96.0.10", 80)),
            asked: endpoint("10.96.0.10", 80),
            netns: 4026531840,
            process: Some(Process {
                pid: 4242,
                comm: "curl".into(),
                cgroup_id: 9,
                ..Default::default()
            }),
            tcp: Some(TcpAttempt {
                outcome: ConnectOutcome::TimedOut as i32,
                syn_retransmits: 6,
                socket_error: 110,
                socket_error_name: "ETIMEDOUT".into(),
                ..Default::default()
            }),
            drops: vec![drop],
            source: Some(frontend()),
            destination: Some(service("shop", "api-svc")),
            explanation,
            summary: "connect timed out".into(),
            ..Default::default()
        })),
        kind: EventKind::Incident as i32,
        node: "node-a".into(),
        ..Default::default()
    }
}

/// A connect 10.0.1.5:41000 → 10.0.9.9:443 that timed out after leaving
/// the node, with nothing else known: no identities (no metadata), no
/// joined drop, no explanation.
pub(super) fn bare_incident() -> Event {
    Event {
        event: Some(Payload::Incident(Incident {
            incident_id: 8,
            event_kind: IncidentEventKind::New as i32,
            kind: IncidentKind::ConnectTimeout as i32,
            place: FailurePlace::BeyondNode as i32,
            flow: Some(tcp("10.0.1.5", 41000, "10.0.9.9", 443)),
            summary: "connect timed out beyond this node".into(),
            ..Default::default()
        })),
        kind: EventKind::Incident as i32,
        node: "node-a".into(),
        ..Default::default()
    }
}

/// An unanswered DNS query for `api.shop.svc.cluster.local` (A) from
/// shop/frontend-7d9f-abc 10.0.1.5:5353 to the Service VIP
/// kube-system/kube-dns 10.96.0.53:53 over UDP; nowhere seen dying, no drop.
pub(super) fn dns_incident() -> Event {
    let flow = Tuple {
        protocol: Protocol::Udp as i32,
        protocol_number: 17,
        ..tcp("10.0.1.5", 5353, "10.96.0.53", 53)
    };
    Event {
        event: Some(Payload::Incident(Incident {
            incident_id: 9,
            event_kind: IncidentEventKind::New as i32,
            kind: IncidentKind::DnsUnanswered as i32,
            place: FailurePlace::Unseen as i32,
            flow: Some(flow),
            dns: Some(DnsExchange {
                name: "api.shop.svc.cluster.local".into(),
                qtype: 1,
                qtype_name: "A".into(),
                server: endpoint("10.96.0.53", 53),
                attempts: 3,
                ..Default::default()
            }),
            source: Some(frontend()),
            destination: Some(service("kube-system", "kube-dns")),
            summary: "DNS query unanswered".into(),
            ..Default::default()
        })),
        kind: EventKind::Incident as i32,
        node: "node-a".into(),
        ..Default::default()
    }
}

/// `event` with its incident changed by `change`.
pub(super) fn with_incident(mut event: Event, change: impl FnOnce(&mut Incident)) -> Event {
    if let Some(Payload::Incident(incident)) = event.event.as_mut() {
        change(incident);
    }
    event
}

/// `event` with the explanation of its incident changed by `change`.
pub(super) fn with_incident_explanation(
    event: Event,
    change: impl FnOnce(&mut Explanation),
) -> Event {
    with_incident(event, |incident| {
        if let Some(explanation) = incident.explanation.as_mut() {
            change(explanation);
        }
    })
}
