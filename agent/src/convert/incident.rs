//! Incidents as `dropscope.v1.Incident`.

use std::time::Duration;

use dropscope_proto::v1;

use super::{drop_event, endpoint, explanation, identity, timestamp, tuple};
use crate::model::{
    CgroupOwner, ConnectOutcome, DnsExchange, EventKind, FailurePlace, Incident, IncidentKind,
    Interface, Process, TcpAttempt,
    dns::{qtype_name, rcode_name},
    summary::errno_name,
};

/// An incident, with its summary line.
pub fn incident(incident: &Incident) -> v1::Incident {
    v1::Incident {
        incident_id: incident.id,
        event_kind: match incident.event {
            EventKind::New => v1::IncidentEventKind::New,
            EventKind::Update | EventKind::End => v1::IncidentEventKind::Update,
        } as i32,
        kind: kind(incident.kind) as i32,
        place: place(incident.place) as i32,
        flow: Some(tuple(&incident.flow)),
        asked: incident.asked.as_ref().map(endpoint),
        netns: incident.netns,
        process: incident.process.as_ref().map(process),
        tcp: incident.tcp.as_ref().map(tcp_attempt),
        dns: incident.dns.as_ref().map(dns_exchange),
        drops: incident
            .drops
            .iter()
            .map(|drop| {
                let mut converted = drop_event(drop);
                // The explanation travels once, on the incident.
                converted.explanation = None;
                converted
            })
            .collect(),
        source: incident.source.as_ref().map(identity),
        destination: incident.destination.as_ref().map(identity),
        explanation: incident.explanation.as_deref().map(explanation),
        first_seen: Some(timestamp(incident.first_seen)),
        last_seen: Some(timestamp(incident.last_seen)),
        summary: incident.summary(),
        // Set only by a collector's join.
        remote: None,
    }
}

/// An incident kind.
pub fn kind(kind: IncidentKind) -> v1::IncidentKind {
    match kind {
        IncidentKind::ConnectTimeout => v1::IncidentKind::ConnectTimeout,
        IncidentKind::ConnectRefused => v1::IncidentKind::ConnectRefused,
        IncidentKind::ConnectRetried => v1::IncidentKind::ConnectRetried,
        IncidentKind::DnsUnanswered => v1::IncidentKind::DnsUnanswered,
        IncidentKind::DnsError => v1::IncidentKind::DnsError,
    }
}

/// A failure place.
pub fn place(place: FailurePlace) -> v1::FailurePlace {
    match place {
        FailurePlace::ThisNode => v1::FailurePlace::ThisNode,
        FailurePlace::BeyondNode => v1::FailurePlace::BeyondNode,
        FailurePlace::Refused => v1::FailurePlace::Refused,
        FailurePlace::Unseen => v1::FailurePlace::Unseen,
        FailurePlace::NotFailed => v1::FailurePlace::NotFailed,
    }
}

fn process(process: &Process) -> v1::Process {
    v1::Process {
        pid: process.pid,
        comm: process.comm.clone(),
        cgroup_id: process.cgroup_id,
        cgroup_path: process.cgroup_path.clone().unwrap_or_default(),
        pod: match &process.owner {
            Some(CgroupOwner::Pod {
                uid,
                container_id,
                runtime,
            }) => Some(v1::CgroupPod {
                uid: uid.clone(),
                container_id: container_id.clone().unwrap_or_default(),
                runtime: runtime.clone().unwrap_or_default(),
            }),
            _ => None,
        },
        kubelet: process.owner == Some(CgroupOwner::Kubelet),
    }
}

fn tcp_attempt(tcp: &TcpAttempt) -> v1::TcpAttempt {
    v1::TcpAttempt {
        outcome: match tcp.outcome {
            ConnectOutcome::Established => v1::ConnectOutcome::Established,
            ConnectOutcome::TimedOut => v1::ConnectOutcome::TimedOut,
            ConnectOutcome::Refused => v1::ConnectOutcome::Refused,
            ConnectOutcome::Unreachable => v1::ConnectOutcome::Unreachable,
        } as i32,
        syn_retransmits: tcp.syn_retransmits,
        socket_error: tcp.socket_error,
        socket_error_name: errno_name(tcp.socket_error)
            .map(str::to_owned)
            .unwrap_or_else(|| match tcp.socket_error {
                0 => String::new(),
                other => format!("ERRNO{other}"),
            }),
        started: Some(timestamp(tcp.started)),
        ended: Some(timestamp(tcp.ended)),
        duration: Some(duration(tcp.duration())),
        left_interface: tcp.left_interface.as_ref().map(interface),
        syns_left: tcp.syns_left,
    }
}

fn dns_exchange(dns: &DnsExchange) -> v1::DnsExchange {
    v1::DnsExchange {
        name: dns.name.clone(),
        qtype: u32::from(dns.qtype),
        qtype_name: qtype_name(dns.qtype).unwrap_or_default().to_owned(),
        server: Some(endpoint(&dns.server)),
        attempts: dns.attempts,
        answered: dns.rcode.is_some(),
        rcode: dns.rcode.map(u32::from).unwrap_or_default(),
        rcode_name: dns
            .rcode
            .map(|rcode| {
                rcode_name(rcode)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("RCODE{rcode}"))
            })
            .unwrap_or_default(),
        latency: dns.latency.map(duration),
        first_query: Some(timestamp(dns.first_query)),
        last_query: Some(timestamp(dns.last_query)),
        left_interface: dns.left_interface.as_ref().map(interface),
        tcp: dns.tcp,
    }
}

fn interface(interface: &Interface) -> v1::Interface {
    v1::Interface {
        ifindex: interface.ifindex,
        name: interface.name.clone().unwrap_or_default(),
    }
}

fn duration(duration: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}
