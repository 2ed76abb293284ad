//! The one place `model` becomes the `dropscope.v1` contract. Receives
//! model events and explanations; emits proto messages. `fanout` converts
//! each event once, at publish, and every sink (gRPC, `--output json`, the
//! terminal) reads the same message, so terminal, files and API cannot
//! drift apart. `model` itself knows nothing of the proto.

mod incident;
pub mod wire;

use std::time::SystemTime;

use dropscope_proto::v1;

pub use incident::incident;

use crate::model::{
    ClosestMiss, Conntrack, Direction, DirectionReport, DropEvent, Endpoint, Event, EventKind,
    Explanation, FlowEnd, Identity, LossEvent, LossSource, PolicyRef, Protocol, RuleRef, TcpFlags,
    Tuple, Verdict,
};

/// A model event as the contract's top-level message, stamped with the
/// node that saw it and the time it was published.
pub fn event(event: &Event, node: &str, published: SystemTime) -> v1::Event {
    let (payload, kind) = match event {
        Event::Drop(drop) => (
            v1::event::Event::Drop(drop_event(drop)),
            v1::EventKind::Drop,
        ),
        Event::Loss(loss) => (
            v1::event::Event::Loss(loss_event(loss)),
            v1::EventKind::Loss,
        ),
        Event::Incident(incident) => (
            v1::event::Event::Incident(self::incident(incident)),
            v1::EventKind::Incident,
        ),
    };
    v1::Event {
        event: Some(payload),
        kind: kind as i32,
        time: Some(timestamp(published)),
        node: node.to_owned(),
    }
}

/// A dropped flow.
pub fn drop_event(drop: &DropEvent) -> v1::DropEvent {
    v1::DropEvent {
        flow_id: drop.flow_id,
        kind: match drop.kind {
            EventKind::New => v1::DropEventKind::New,
            EventKind::Update => v1::DropEventKind::Update,
            EventKind::End => v1::DropEventKind::End,
        } as i32,
        reason: Some(v1::DropReason {
            code: drop.reason.code,
            name: drop.reason.to_string(),
        }),
        location: Some(v1::KernelLocation {
            address: drop.location.address,
            symbol: drop
                .location
                .symbol
                .as_deref()
                .unwrap_or_default()
                .to_owned(),
        }),
        packet: Some(tuple(&drop.packet)),
        conntrack: drop.conntrack.as_ref().map(conntrack),
        tcp_flags: flag_names(drop.tcp_flags),
        tcp_flags_seen: flag_names(drop.tcp_flags_seen),
        netns: drop.netns,
        ifindex: drop.ifindex,
        ingress_ifindex: drop.ingress_ifindex,
        packets: drop.packets,
        bytes: drop.bytes,
        first_seen: Some(timestamp(drop.first_seen)),
        last_seen: Some(timestamp(drop.last_seen)),
        overflow: drop.overflow.map(|overflow| v1::OverflowAggregate {
            bucket: overflow.bucket,
            folded_packets: overflow.folded_packets,
        }),
        explanation: drop.explanation.as_deref().map(explanation),
        new_packets: drop.new_packets,
        netns_name: drop.place.netns_name.unwrap_or_default().to_owned(),
        interface: drop.place.interface.clone().unwrap_or_default(),
        ingress_interface: drop.place.ingress_interface.clone().unwrap_or_default(),
    }
}

/// Something lost.
pub fn loss_event(loss: &LossEvent) -> v1::LossEvent {
    v1::LossEvent {
        source: loss_source(loss.source) as i32,
        lost_events: loss.lost,
        total_events: loss.total,
        time: Some(timestamp(loss.time)),
        lost_drops: loss.lost_drops,
        total_drops: loss.total_drops,
        missing_until: None,
    }
}

/// A loss source.
pub fn loss_source(source: LossSource) -> v1::LossSource {
    match source {
        LossSource::KernelRingFull => v1::LossSource::KernelRingFull,
        LossSource::KernelRecursion => v1::LossSource::KernelRecursion,
        LossSource::KernelUnreadable => v1::LossSource::KernelUnreadable,
        LossSource::Undecodable => v1::LossSource::Undecodable,
        LossSource::Pipeline => v1::LossSource::Pipeline,
        LossSource::Subscriber => v1::LossSource::Subscriber,
        LossSource::History => v1::LossSource::History,
        LossSource::ConnectsUntracked => v1::LossSource::ConnectsUntracked,
        LossSource::DnsUntracked => v1::LossSource::DnsUntracked,
        LossSource::DnsUnreadable => v1::LossSource::DnsUnreadable,
    }
}

/// What NetworkPolicy says about a flow.
pub fn explanation(explanation: &Explanation) -> v1::Explanation {
    v1::Explanation {
        verdict: verdict(explanation.verdict) as i32,
        source: Some(flow_end(&explanation.source)),
        destination: Some(flow_end(&explanation.destination)),
        service: explanation.service.as_ref().map(identity),
        port: u32::from(explanation.port),
        protocol: protocol(explanation.protocol) as i32,
        egress: Some(direction_report(&explanation.egress)),
        ingress: Some(direction_report(&explanation.ingress)),
        closest_miss: explanation.closest_miss.as_ref().map(closest_miss),
        hints: explanation
            .hints
            .iter()
            .map(|hint| v1::Hint {
                code: hint.code.as_str().to_owned(),
                message: hint.message.clone(),
            })
            .collect(),
        suggested_policy: explanation.suggested_policy.clone().unwrap_or_default(),
        incomplete: explanation
            .incomplete
            .iter()
            .map(|object| v1::SkippedObject {
                kind: object.kind.clone(),
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                reason: object.reason.clone(),
                relevance: object.relevance.clone(),
            })
            .collect(),
        incomplete_unlisted: explanation.incomplete_unlisted,
        complete: explanation.is_complete(),
        hints_unlisted: explanation.hints_unlisted,
        stale: explanation
            .stale
            .iter()
            .map(|stale| v1::StaleKind {
                kind: stale.kind.clone(),
                since: Some(timestamp(stale.since)),
            })
            .collect(),
    }
}

/// A verdict.
pub fn verdict(verdict: Verdict) -> v1::Verdict {
    match verdict {
        Verdict::Allow => v1::Verdict::Allow,
        Verdict::DenyEgress => v1::Verdict::DenyEgress,
        Verdict::DenyIngress => v1::Verdict::DenyIngress,
        Verdict::DenyBoth => v1::Verdict::DenyBoth,
    }
}

/// A protocol.
pub fn protocol(protocol: Protocol) -> v1::Protocol {
    match protocol {
        Protocol::Tcp => v1::Protocol::Tcp,
        Protocol::Udp => v1::Protocol::Udp,
        Protocol::Sctp => v1::Protocol::Sctp,
        Protocol::Icmp => v1::Protocol::Icmp,
        Protocol::Icmpv6 => v1::Protocol::Icmpv6,
        Protocol::Other(_) => v1::Protocol::Other,
    }
}

/// The protocol of a proto value, for requests (`None` for UNKNOWN and
/// OTHER, which name no single protocol).
pub fn protocol_from(protocol: v1::Protocol) -> Option<Protocol> {
    match protocol {
        v1::Protocol::Tcp => Some(Protocol::Tcp),
        v1::Protocol::Udp => Some(Protocol::Udp),
        v1::Protocol::Sctp => Some(Protocol::Sctp),
        v1::Protocol::Icmp => Some(Protocol::Icmp),
        v1::Protocol::Icmpv6 => Some(Protocol::Icmpv6),
        v1::Protocol::Unknown | v1::Protocol::Other => None,
    }
}

/// A time as a protobuf Timestamp (times before 1970 clamp to the epoch).
pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf Timestamp as a time (`None` before the epoch or out of range).
pub fn time_of(timestamp: &pbjson_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds).ok()?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(seconds, nanos))
}

pub(crate) fn tuple(tuple: &Tuple) -> v1::Tuple {
    let number = match tuple.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
        Protocol::Icmp => 1,
        Protocol::Icmpv6 => 58,
        Protocol::Other(number) => number,
    };
    v1::Tuple {
        source: Some(endpoint(&tuple.src)),
        destination: Some(endpoint(&tuple.dst)),
        protocol: protocol(tuple.protocol) as i32,
        protocol_number: u32::from(number),
    }
}

pub(crate) fn endpoint(endpoint: &Endpoint) -> v1::Endpoint {
    v1::Endpoint {
        ip: endpoint.ip.to_string(),
        port: u32::from(endpoint.port),
    }
}

fn conntrack(entry: &Conntrack) -> v1::Conntrack {
    v1::Conntrack {
        original: Some(tuple(&entry.original)),
        reply: Some(tuple(&entry.reply)),
        dnat: entry.is_dnat(),
        snat: entry.is_snat(),
    }
}

fn flag_names(flags: TcpFlags) -> Vec<String> {
    flags.names().map(str::to_owned).collect()
}

fn flow_end(end: &FlowEnd) -> v1::FlowEnd {
    v1::FlowEnd {
        ip: end.ip.to_string(),
        identity: Some(identity(&end.identity)),
    }
}

/// Who an address is.
pub fn identity(identity: &Identity) -> v1::Identity {
    use v1::identity::Identity as Kind;
    let kind = match identity {
        Identity::Pod {
            namespace,
            name,
            uid,
            labels,
            workload,
            node,
            host_network,
        } => Kind::Pod(v1::PodIdentity {
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
            labels: labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            workload: workload.as_ref().map(|workload| v1::Workload {
                kind: workload.kind.clone(),
                name: workload.name.clone(),
            }),
            node: node.clone().unwrap_or_default(),
            host_network: *host_network,
        }),
        Identity::Service {
            namespace,
            name,
            port_name,
            backend,
        } => Kind::Service(v1::ServiceIdentity {
            namespace: namespace.clone(),
            name: name.clone(),
            port_name: port_name.clone().unwrap_or_default(),
            backend: backend.as_ref().map(|backend| v1::Backend {
                ip: backend.ip.to_string(),
                port: u32::from(backend.port),
                pod: backend.pod.clone().unwrap_or_default(),
            }),
        }),
        Identity::Node {
            name,
            is_kubelet_of_destination,
        } => Kind::Node(v1::NodeIdentity {
            name: name.clone(),
            is_kubelet_of_destination: *is_kubelet_of_destination,
        }),
        Identity::External { cidr } => Kind::External(v1::ExternalIdentity {
            cidr: cidr.to_string(),
        }),
        Identity::Unknown { ip } => Kind::Unknown(v1::UnknownIdentity { ip: ip.to_string() }),
    };
    v1::Identity {
        identity: Some(kind),
    }
}

fn policy_ref(policy: &PolicyRef) -> v1::PolicyRef {
    v1::PolicyRef {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
    }
}

fn rule_ref(rule: &RuleRef) -> v1::RuleRef {
    v1::RuleRef {
        policy: Some(policy_ref(&rule.policy)),
        rule: u32::try_from(rule.rule).unwrap_or(u32::MAX),
    }
}

fn direction_report(report: &DirectionReport) -> v1::DirectionReport {
    v1::DirectionReport {
        pod: report.pod.clone().unwrap_or_default(),
        isolated: report.isolated,
        policies: report.policies.iter().map(policy_ref).collect(),
        allowed_by: report.allowed_by.iter().map(rule_ref).collect(),
        allowed: report.allowed,
        policies_unlisted: report.policies_unlisted,
        allowed_by_unlisted: report.allowed_by_unlisted,
    }
}

fn closest_miss(miss: &ClosestMiss) -> v1::ClosestMiss {
    v1::ClosestMiss {
        policy: Some(policy_ref(&miss.policy)),
        direction: match miss.direction {
            Direction::Ingress => v1::PolicyDirection::Ingress,
            Direction::Egress => v1::PolicyDirection::Egress,
        } as i32,
        rule: u32::try_from(miss.rule).unwrap_or(u32::MAX),
        peer_matched: miss.peer_matched,
        port_matched: miss.port_matched,
        why: miss.why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::testkit::{mk_drop_event, mk_tuple};

    #[test]
    fn a_drop_event_keeps_every_field_in_the_contract() {
        let mut drop = DropEvent::clone(&mk_drop_event(
            9,
            EventKind::Update,
            mk_tuple([10, 0, 0, 1], 40000, [10, 0, 0, 2], 8080, Protocol::Tcp),
        ));
        drop.conntrack = Some(Conntrack {
            original: mk_tuple([10, 0, 0, 1], 40000, [10, 96, 0, 50], 80, Protocol::Tcp),
            reply: mk_tuple([10, 0, 0, 2], 8080, [10, 0, 0, 1], 40000, Protocol::Tcp),
        });
        drop.packets = 4;
        drop.new_packets = 3;
        drop.last_seen = SystemTime::UNIX_EPOCH + Duration::from_millis(1500);
        let published = SystemTime::UNIX_EPOCH + Duration::from_secs(2);
        let message = event(&Event::Drop(Arc::new(drop)), "node-a", published);

        assert_eq!(message.node, "node-a");
        assert_eq!(message.kind, v1::EventKind::Drop as i32);
        let Some(v1::event::Event::Drop(converted)) = message.event else {
            panic!("a drop event, got {message:?}");
        };
        assert_eq!(converted.flow_id, 9);
        assert_eq!(converted.kind, v1::DropEventKind::Update as i32);
        assert_eq!((converted.packets, converted.new_packets), (4, 3));
        assert_eq!(converted.tcp_flags, vec!["SYN".to_owned()]);
        let conntrack = converted.conntrack.expect("conntrack");
        assert!(conntrack.dnat && !conntrack.snat);
        let original = conntrack.original.expect("original");
        assert_eq!(
            original.destination.expect("destination"),
            v1::Endpoint {
                ip: "10.96.0.50".into(),
                port: 80
            }
        );
        assert_eq!(original.protocol_number, 6);
        assert_eq!(
            converted.last_seen,
            Some(pbjson_types::Timestamp {
                seconds: 1,
                nanos: 500_000_000
            })
        );
    }

    #[test]
    fn timestamps_round_trip() {
        let time = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        assert_eq!(time_of(&timestamp(time)), Some(time));
    }
}
