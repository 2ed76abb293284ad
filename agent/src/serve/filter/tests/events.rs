//! Proto events for the filter tests: a plain drop, the same explained
//! (pod to pod, denied on ingress), and DNATed from a Service VIP; a loss.

use std::collections::BTreeMap;

use dropscope_proto::v1::{
    ClosestMiss, Conntrack, DirectionReport, DropEvent, DropEventKind, DropReason, Endpoint, Event,
    EventKind, Explanation, FlowEnd, Hint, Identity, LossEvent, LossSource, PodIdentity,
    PolicyDirection, PolicyRef, Protocol, ServiceIdentity, Tuple, Verdict, Workload,
    event::Event as Payload, identity::Identity as IdentityKind,
};

use super::s;

/// An endpoint.
fn endpoint(ip: &str, port: u32) -> Option<Endpoint> {
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
fn pod(namespace: &str, name: &str, labels: &[(&str, &str)], workload: (&str, &str)) -> Identity {
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
