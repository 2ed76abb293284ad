//! Incident decisions: typed connects, DNS messages and drops in,
//! incidents out, one test per rule of the module docs.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::*;
use crate::{
    model::{
        Conntrack, DnsSeen, Endpoint, Interface, Process, Protocol,
        dns::{DnsMessage, DnsQuestion},
    },
    testkit::{mk_drop_event, mk_tuple},
};

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
}

fn client_flow() -> Tuple {
    mk_tuple([10, 0, 0, 1], 40000, [10, 96, 0, 10], 80, Protocol::Tcp)
}

fn connect(outcome: Option<ConnectOutcome>, retransmits: u32, left: Option<u32>) -> ConnectSeen {
    ConnectSeen {
        outcome,
        socket_error: match outcome {
            Some(ConnectOutcome::TimedOut) => 110,
            Some(ConnectOutcome::Refused) => 111,
            Some(ConnectOutcome::Unreachable) => 113,
            _ => 0,
        },
        started: at(0),
        ended: at(7),
        flow: client_flow(),
        asked: None,
        process: Process {
            pid: 42,
            comm: "curl".into(),
            cgroup_id: 7,
            cgroup_path: None,
            owner: None,
        },
        netns: 4026531840,
        retransmits,
        left: left.map(|ifindex| Interface {
            ifindex,
            name: Some("eth0".into()),
        }),
        syns_left: u32::from(left.is_some()) * (retransmits + 1),
    }
}

/// A drop of the client flow after DNAT to 10.0.1.5:8080, at `time`.
fn dnat_drop(flow_id: u64, kind: EventKind, time: SystemTime) -> Arc<DropEvent> {
    let backend = mk_tuple([10, 0, 0, 1], 40000, [10, 0, 1, 5], 8080, Protocol::Tcp);
    let mut drop = DropEvent::clone(&mk_drop_event(flow_id, kind, backend));
    drop.conntrack = Some(Conntrack {
        original: client_flow(),
        reply: mk_tuple([10, 0, 1, 5], 8080, [10, 0, 0, 1], 40000, Protocol::Tcp),
    });
    drop.first_seen = time;
    drop.last_seen = time;
    Arc::new(drop)
}

fn incidents() -> (Incidents, u64) {
    (Incidents::new(IncidentConfig::default()), 100)
}

#[test]
fn a_timeout_joined_with_a_drop_of_its_flow_died_on_this_node() {
    let (mut incidents, mut id) = incidents();
    let _ = incidents.on_drop(&dnat_drop(1, EventKind::New, at(0)), &mut id);
    let decided = incidents.on_connect(connect(Some(ConnectOutcome::TimedOut), 2, None), &mut id);
    let incident = &decided.incidents[0];
    assert_eq!(
        (incident.kind, incident.place),
        (IncidentKind::ConnectTimeout, FailurePlace::ThisNode)
    );
    assert_eq!(
        incident.drops.len(),
        1,
        "matched on the conntrack original tuple"
    );
    assert_eq!(incident.drops[0].flow_id, 1);
    assert_eq!(
        incident.tcp.as_ref().map(|tcp| tcp.syn_retransmits),
        Some(2)
    );
    assert_eq!(
        incident.id, 101,
        "ids come from the tracker's shared counter"
    );
}

#[test]
fn a_timeout_whose_syn_left_the_node_died_beyond_it() {
    let (mut incidents, mut id) = incidents();
    let decided =
        incidents.on_connect(connect(Some(ConnectOutcome::TimedOut), 2, Some(3)), &mut id);
    let incident = &decided.incidents[0];
    assert_eq!(incident.place, FailurePlace::BeyondNode);
    assert_eq!(
        incident
            .tcp
            .as_ref()
            .and_then(|tcp| tcp.left_interface.as_ref())
            .map(|interface| interface.ifindex),
        Some(3)
    );
    assert!(
        incident.explanation.is_none(),
        "a timeout alone blames no policy"
    );
}

#[test]
fn a_timeout_with_no_evidence_is_unseen() {
    let (mut incidents, mut id) = incidents();
    let decided = incidents.on_connect(connect(Some(ConnectOutcome::TimedOut), 2, None), &mut id);
    assert_eq!(decided.incidents[0].place, FailurePlace::Unseen);
}

#[test]
fn a_drop_outside_the_attempt_is_not_joined() {
    let (mut incidents, mut id) = incidents();
    let _ = incidents.on_drop(&dnat_drop(1, EventKind::New, at(60)), &mut id);
    let decided = incidents.on_connect(connect(Some(ConnectOutcome::TimedOut), 2, None), &mut id);
    assert!(decided.incidents[0].drops.is_empty());
    assert_eq!(decided.incidents[0].place, FailurePlace::Unseen);
}

#[test]
fn refusals_and_unreachables_are_refused() {
    for outcome in [ConnectOutcome::Refused, ConnectOutcome::Unreachable] {
        let (mut incidents, mut id) = incidents();
        let decided = incidents.on_connect(connect(Some(outcome), 0, None), &mut id);
        assert_eq!(
            (decided.incidents[0].kind, decided.incidents[0].place),
            (IncidentKind::ConnectRefused, FailurePlace::Refused),
            "{outcome:?}"
        );
    }
}

#[test]
fn an_established_connect_after_retransmits_is_retried_not_failed() {
    let (mut incidents, mut id) = incidents();
    let decided =
        incidents.on_connect(connect(Some(ConnectOutcome::Established), 1, None), &mut id);
    assert_eq!(
        (decided.incidents[0].kind, decided.incidents[0].place),
        (IncidentKind::ConnectRetried, FailurePlace::NotFailed)
    );
}

#[test]
fn a_connect_closed_by_its_owner_is_no_incident() {
    let (mut incidents, mut id) = incidents();
    let decided = incidents.on_connect(connect(None, 3, None), &mut id);
    assert!(decided.incidents.is_empty());
    assert_eq!(incidents.aborted_connects, 1);
    assert_eq!(id, 100, "no id spent");
}

#[test]
fn a_drop_read_after_the_decision_updates_the_incident_once() {
    let (mut incidents, mut id) = incidents();
    let decided = incidents.on_connect(connect(Some(ConnectOutcome::TimedOut), 2, None), &mut id);
    let first = Arc::clone(&decided.incidents[0]);
    assert_eq!(first.place, FailurePlace::Unseen);
    let late = incidents.on_drop(&dnat_drop(9, EventKind::New, at(1)), &mut id);
    assert_eq!(late.incidents.len(), 1);
    let updated = &late.incidents[0];
    assert_eq!(
        (updated.id, updated.event, updated.place),
        (first.id, EventKind::Update, FailurePlace::ThisNode)
    );
    assert_eq!(updated.drops[0].flow_id, 9);
    let again = incidents.on_drop(&dnat_drop(10, EventKind::New, at(2)), &mut id);
    assert!(again.incidents.is_empty(), "updated once");
    let update = incidents.on_drop(&dnat_drop(9, EventKind::Update, at(3)), &mut id);
    assert!(
        update.incidents.is_empty(),
        "only a new drop flow joins late"
    );
}

fn dns(time: SystemTime, egress: bool, ifindex: u32, query: bool, id: u16, rcode: u8) -> DnsSeen {
    let client = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        port: 53000,
    };
    let server = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
        port: 53,
    };
    let (src, dst) = if query {
        (client, server)
    } else {
        (server, client)
    };
    DnsSeen {
        time,
        interface: Interface {
            ifindex,
            name: None,
        },
        egress,
        tuple: Tuple {
            src,
            dst,
            protocol: Protocol::Udp,
        },
        message: DnsMessage {
            id,
            response: !query,
            opcode: 0,
            rcode,
            truncated: false,
            question: Some(DnsQuestion {
                name: "api.shop.svc.cluster.local".into(),
                qtype: 1,
                qclass: 1,
            }),
        },
    }
}

#[test]
fn unanswered_tries_become_one_incident_after_the_timeout() {
    let (mut incidents, mut id) = incidents();
    for (second, message_id) in [(0, 1), (1, 2), (2, 3)] {
        let seen = dns(at(second), false, 5, true, message_id, 0);
        assert_eq!(incidents.on_dns(&seen, &mut id), Decisions::default());
    }
    assert!(
        incidents.on_tick(at(6), &mut id).incidents.is_empty(),
        "5 s after the last try, not yet"
    );
    let decided = incidents.on_tick(at(8), &mut id);
    let incident = &decided.incidents[0];
    assert_eq!(
        (incident.kind, incident.place),
        (IncidentKind::DnsUnanswered, FailurePlace::Unseen)
    );
    let exchange = incident.dns.as_ref().expect("a DNS section");
    assert_eq!((exchange.attempts, exchange.rcode), (3, None));
    assert_eq!(exchange.name, "api.shop.svc.cluster.local");
    assert_eq!(incidents.held().0, 0, "decided exchanges are let go");
}

#[test]
fn the_same_query_seen_leaving_is_no_retry_but_evidence() {
    let (mut incidents, mut id) = incidents();
    let _ = incidents.on_dns(&dns(at(0), false, 5, true, 1, 0), &mut id);
    let _ = incidents.on_dns(&dns(at(0), true, 2, true, 1, 0), &mut id);
    let decided = incidents.on_tick(at(10), &mut id);
    let incident = &decided.incidents[0];
    assert_eq!(incident.place, FailurePlace::BeyondNode);
    let exchange = incident.dns.as_ref().expect("a DNS section");
    assert_eq!(exchange.attempts, 1);
    assert_eq!(
        exchange.left_interface.as_ref().map(|left| left.ifindex),
        Some(2)
    );
}

#[test]
fn an_error_answer_decides_at_once_and_a_good_one_quietly() {
    let (mut incidents, mut id) = incidents();
    let _ = incidents.on_dns(&dns(at(0), false, 5, true, 1, 0), &mut id);
    let decided = incidents.on_dns(&dns(at(1), true, 5, false, 1, 3), &mut id);
    let incident = &decided.incidents[0];
    assert_eq!(
        (incident.kind, incident.place),
        (IncidentKind::DnsError, FailurePlace::Refused)
    );
    let exchange = incident.dns.as_ref().expect("a DNS section");
    assert_eq!(exchange.rcode, Some(3));
    assert_eq!(exchange.latency, Some(Duration::from_secs(1)));

    let _ = incidents.on_dns(&dns(at(2), false, 5, true, 7, 0), &mut id);
    let good = incidents.on_dns(&dns(at(2), true, 5, false, 7, 0), &mut id);
    assert!(good.incidents.is_empty());
    assert!(incidents.on_tick(at(30), &mut id).incidents.is_empty());
}

#[test]
fn an_unanswered_query_joins_the_drop_of_its_translated_flow() {
    let (mut incidents, mut id) = incidents();
    let query = dns(at(0), false, 5, true, 1, 0);
    let backend = mk_tuple([10, 0, 0, 1], 53000, [10, 0, 1, 3], 5353, Protocol::Udp);
    let mut drop = DropEvent::clone(&mk_drop_event(3, EventKind::New, backend));
    drop.conntrack = Some(Conntrack {
        original: query.tuple,
        reply: mk_tuple([10, 0, 1, 3], 5353, [10, 0, 0, 1], 53000, Protocol::Udp),
    });
    drop.first_seen = at(0);
    drop.last_seen = at(0);
    let _ = incidents.on_dns(&query, &mut id);
    let _ = incidents.on_drop(&Arc::new(drop), &mut id);
    let decided = incidents.on_tick(at(10), &mut id);
    assert_eq!(decided.incidents[0].place, FailurePlace::ThisNode);
    assert_eq!(decided.incidents[0].drops[0].flow_id, 3);
}

#[test]
fn a_full_dns_table_counts_what_it_does_not_follow() {
    let mut incidents = Incidents::new(IncidentConfig {
        dns_timeout: Duration::from_secs(5),
        dns_pending: 1,
    });
    let mut id = 0;
    let _ = incidents.on_dns(&dns(at(0), false, 5, true, 1, 0), &mut id);
    let mut other = dns(at(0), false, 5, true, 2, 0);
    other.tuple.src.port = 53001;
    assert_eq!(incidents.on_dns(&other, &mut id).dns_untracked, 1);
}

#[test]
fn an_overflow_aggregate_is_never_joined() {
    let (mut incidents, mut id) = incidents();
    let mut aggregate = DropEvent::clone(&dnat_drop(1, EventKind::New, at(0)));
    aggregate.overflow = Some(crate::model::Overflow {
        bucket: 1,
        folded_packets: 10,
    });
    let _ = incidents.on_drop(&Arc::new(aggregate), &mut id);
    let decided = incidents.on_connect(connect(Some(ConnectOutcome::TimedOut), 2, None), &mut id);
    assert!(decided.incidents[0].drops.is_empty());
}
