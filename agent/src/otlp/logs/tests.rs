//! Events in, log records out: attributes of a denied drop and of a
//! cross-node incident.

use super::*;

fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(record: &'a LogRecord, key: &str) -> Option<&'a str> {
    match attribute(record, key)? {
        any_value::Value::StringValue(value) => Some(value),
        _ => None,
    }
}

fn endpoint(ip: &str, port: u32) -> Option<v1::Endpoint> {
    Some(v1::Endpoint {
        ip: ip.into(),
        port,
    })
}

#[test]
fn a_denied_drop_carries_its_pod_tuples_verdict_policy_and_hint() {
    let packet = v1::Tuple {
        source: endpoint("10.0.1.5", 41_000),
        destination: endpoint("10.0.2.7", 8080),
        protocol: v1::Protocol::Tcp as i32,
        protocol_number: 6,
    };
    let original = v1::Tuple {
        destination: endpoint("10.96.0.10", 80),
        ..packet.clone()
    };
    let event = v1::Event {
        node: "node-b".into(),
        kind: v1::EventKind::Drop as i32,
        time: Some(convert::timestamp(std::time::SystemTime::now())),
        event: Some(v1::event::Event::Drop(v1::DropEvent {
            reason: Some(v1::DropReason {
                code: 6,
                name: "NETFILTER_DROP".into(),
            }),
            packet: Some(packet),
            conntrack: Some(v1::Conntrack {
                original: Some(original),
                dnat: true,
                ..Default::default()
            }),
            packets: 2,
            explanation: Some(v1::Explanation {
                verdict: v1::Verdict::DenyIngress as i32,
                source: Some(v1::FlowEnd {
                    ip: "10.0.1.5".into(),
                    identity: Some(v1::Identity {
                        identity: Some(v1::identity::Identity::Pod(v1::PodIdentity {
                            namespace: "frontend".into(),
                            name: "web-0".into(),
                            workload: Some(v1::Workload {
                                kind: "Deployment".into(),
                                name: "web".into(),
                            }),
                            ..Default::default()
                        })),
                    }),
                }),
                ingress: Some(v1::DirectionReport {
                    policies: vec![v1::PolicyRef {
                        namespace: "backend".into(),
                        name: "deny-all".into(),
                    }],
                    ..Default::default()
                }),
                hints: vec![v1::Hint {
                    code: "default_deny".into(),
                    message: "no rule allows it".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        })),
    };
    let record = record(&event);
    assert_eq!(record.event_name, "dropscope.drop");
    assert_eq!(record.severity_number, SeverityNumber::Warn as i32);
    for (key, value) in [
        ("k8s.node.name", "node-b"),
        ("k8s.namespace.name", "frontend"),
        ("k8s.pod.name", "web-0"),
        ("k8s.deployment.name", "web"),
        ("source.address", "10.0.1.5"),
        ("destination.address", "10.0.2.7"),
        ("network.transport", "tcp"),
        ("dropscope.reason", "NETFILTER_DROP"),
        ("dropscope.verdict", "DENY_INGRESS"),
        ("dropscope.hint", "default_deny"),
        (
            "dropscope.tuple.packet",
            "tcp 10.0.1.5:41000 -> 10.0.2.7:8080",
        ),
        (
            "dropscope.tuple.original",
            "tcp 10.0.1.5:41000 -> 10.96.0.10:80",
        ),
    ] {
        assert_eq!(text(&record, key), Some(value), "{key}");
    }
    assert_eq!(
        attribute(&record, "dropscope.policy"),
        Some(&any_value::Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(any_value::Value::StringValue("backend/deny-all".into()))
            }]
        }))
    );
    assert_eq!(
        attribute(&record, "dropscope.nat.dnat"),
        Some(&any_value::Value::BoolValue(true))
    );
}

#[test]
fn a_joined_incident_names_both_nodes_the_place_the_match_and_the_policy() {
    let flow = v1::Tuple {
        source: endpoint("10.0.1.5", 41_000),
        destination: endpoint("10.96.0.10", 80),
        protocol: v1::Protocol::Tcp as i32,
        protocol_number: 6,
    };
    let event = v1::Event {
        node: "node-a".into(),
        kind: v1::EventKind::Incident as i32,
        event: Some(v1::event::Event::Incident(v1::Incident {
            event_kind: v1::IncidentEventKind::Joined as i32,
            kind: v1::IncidentKind::ConnectTimeout as i32,
            place: v1::FailurePlace::OtherNode as i32,
            flow: Some(flow),
            summary: "web timed out; dropped on node node-b".into(),
            remote: Some(v1::RemoteDrops {
                node: "node-b".into(),
                drops: vec![v1::DropEvent {
                    reason: Some(v1::DropReason {
                        code: 6,
                        name: "NETFILTER_DROP".into(),
                    }),
                    ..Default::default()
                }],
                r#match: v1::TupleMatch::Source as i32,
                decided_place: v1::FailurePlace::BeyondNode as i32,
            }),
            explanation: Some(v1::Explanation {
                verdict: v1::Verdict::DenyIngress as i32,
                ingress: Some(v1::DirectionReport {
                    policies: vec![v1::PolicyRef {
                        namespace: "backend".into(),
                        name: "deny-all".into(),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let record = record(&event);
    assert_eq!(record.event_name, "dropscope.incident");
    for (key, value) in [
        ("k8s.node.name", "node-a"),
        ("dropscope.incident.event_kind", "JOINED"),
        ("dropscope.incident.place", "OTHER_NODE"),
        ("dropscope.incident.decided_place", "BEYOND_NODE"),
        ("dropscope.incident.remote_node", "node-b"),
        ("dropscope.incident.match", "SOURCE"),
        ("dropscope.incident.kind", "CONNECT_TIMEOUT"),
        ("dropscope.reason", "NETFILTER_DROP"),
        ("dropscope.verdict", "DENY_INGRESS"),
        (
            "dropscope.tuple.flow",
            "tcp 10.0.1.5:41000 -> 10.96.0.10:80",
        ),
        ("destination.address", "10.96.0.10"),
    ] {
        assert_eq!(text(&record, key), Some(value), "{key}");
    }
    assert_eq!(
        record.body,
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                "web timed out; dropped on node node-b".into()
            ))
        })
    );
}
