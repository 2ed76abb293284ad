//! The join, event in, cluster incidents out: tuples across DNAT and SNAT
//! on either node, both arrival orders, the time window, the wait, the
//! memory bound, and what is never joined.

use super::*;

const CLIENT: (&str, u32) = ("10.0.1.5", 41_000);
const VIP: (&str, u32) = ("10.96.0.10", 80);
const BACKEND: (&str, u32) = ("10.0.2.7", 8080);
const NODE_B: (&str, u32) = ("192.168.0.12", 30_080);

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
}

fn stamp(seconds: u64) -> Option<pbjson_types::Timestamp> {
    Some(convert::timestamp(at(seconds)))
}

fn tcp(from: (&str, u32), to: (&str, u32)) -> v1::Tuple {
    v1::Tuple {
        source: Some(v1::Endpoint {
            ip: from.0.into(),
            port: from.1,
        }),
        destination: Some(v1::Endpoint {
            ip: to.0.into(),
            port: to.1,
        }),
        protocol: v1::Protocol::Tcp as i32,
        protocol_number: 6,
    }
}

/// [`Joins::offer`] of an event built here (the collector hands it the
/// `Arc` it also publishes).
trait OfferCopy {
    fn offer_copy(&mut self, event: &v1::Event, now: SystemTime) -> Vec<v1::Event>;
}

impl OfferCopy for Joins {
    fn offer_copy(&mut self, event: &v1::Event, now: SystemTime) -> Vec<v1::Event> {
        self.offer(&std::sync::Arc::new(event.clone()), now)
    }
}

/// A connect timeout decided on `node` at `place`, flow `flow`, from
/// second `first` to `last`.
fn incident(
    node: &str,
    id: u64,
    place: v1::FailurePlace,
    flow: v1::Tuple,
    span: (u64, u64),
) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::Incident(v1::Incident {
            incident_id: id,
            event_kind: v1::IncidentEventKind::New as i32,
            kind: v1::IncidentKind::ConnectTimeout as i32,
            place: place as i32,
            flow: Some(flow),
            first_seen: stamp(span.0),
            last_seen: stamp(span.1),
            summary: "frontend/web connect to 10.96.0.10:80 timed out".into(),
            ..Default::default()
        })),
        kind: v1::EventKind::Incident as i32,
        time: stamp(span.1),
        node: node.into(),
    }
}

fn beyond(node: &str, flow: v1::Tuple) -> v1::Event {
    incident(node, 7, v1::FailurePlace::BeyondNode, flow, (100, 107))
}

/// A kernel drop on `node` of a packet with headers `packet`, with
/// conntrack `(original, reply)` when given, dropped from second `first`
/// to `last`.
fn drop_on(
    node: &str,
    packet: v1::Tuple,
    conntrack: Option<(v1::Tuple, v1::Tuple)>,
    span: (u64, u64),
) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::Drop(v1::DropEvent {
            flow_id: 3,
            kind: v1::DropEventKind::New as i32,
            reason: Some(v1::DropReason {
                code: 6,
                name: "NETFILTER_DROP".into(),
            }),
            packet: Some(packet),
            conntrack: conntrack.map(|(original, reply)| v1::Conntrack {
                original: Some(original),
                reply: Some(reply),
                dnat: true,
                snat: false,
            }),
            first_seen: stamp(span.0),
            last_seen: stamp(span.1),
            packets: 1,
            new_packets: 1,
            explanation: Some(v1::Explanation {
                verdict: v1::Verdict::DenyIngress as i32,
                ingress: Some(v1::DirectionReport {
                    pod: "shop/api-0".into(),
                    isolated: true,
                    policies: vec![v1::PolicyRef {
                        namespace: "shop".into(),
                        name: "deny-all".into(),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })),
        kind: v1::EventKind::Drop as i32,
        time: stamp(span.0),
        node: node.into(),
    }
}

fn joins(config: JoinConfig) -> (Joins, Arc<CollectorMetrics>) {
    let metrics = Arc::new(CollectorMetrics::new());
    (Joins::new(config, Arc::clone(&metrics)), metrics)
}

/// The one cluster incident among `out`.
fn the_join(out: &[v1::Event]) -> &v1::Incident {
    assert_eq!(out.len(), 1, "one cluster incident: {out:#?}");
    match &out[0].event {
        Some(v1::event::Event::Incident(incident)) => incident,
        other => panic!("not an incident: {other:?}"),
    }
}

fn remote(incident: &v1::Incident) -> &v1::RemoteDrops {
    incident.remote.as_ref().expect("remote drops")
}

#[test]
fn a_drop_on_another_node_joins_the_incident_that_arrives_later() {
    let (mut joins, metrics) = joins(JoinConfig::default());
    let flow = tcp(CLIENT, BACKEND);
    assert!(
        joins
            .offer_copy(&drop_on("b", flow, None, (100, 103)), at(101))
            .is_empty()
    );
    let out = joins.offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108));
    assert_eq!(
        out[0].node, "a",
        "the event is the deciding node's incident"
    );
    let joined = the_join(&out);
    assert_eq!(joined.event_kind, v1::IncidentEventKind::Joined as i32);
    assert_eq!(joined.place, v1::FailurePlace::OtherNode as i32);
    assert_eq!(joined.incident_id, 7);
    let remote = remote(joined);
    assert_eq!(remote.node, "b");
    assert_eq!(remote.r#match, v1::TupleMatch::Original as i32);
    assert_eq!(remote.decided_place, v1::FailurePlace::BeyondNode as i32);
    assert_eq!(remote.drops.len(), 1);
    let explanation = joined.explanation.as_ref().expect("the remote explanation");
    assert_eq!(explanation.verdict, v1::Verdict::DenyIngress as i32);
    assert_eq!(
        joined.summary,
        "frontend/web connect to 10.96.0.10:80 timed out; dropped on node b (NETFILTER_DROP), \
         denied by ingress policy shop/deny-all"
    );
    assert_eq!(metrics.joins(v1::TupleMatch::Original), 1);
}

#[test]
fn an_incident_waiting_joins_the_drop_that_arrives_later() {
    let (mut joins, metrics) = joins(JoinConfig::default());
    assert!(
        joins
            .offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108))
            .is_empty()
    );
    let out = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(110),
    );
    assert_eq!(remote(the_join(&out)).node, "b");
    // Joined once: the incident no longer waits, so it is not unjoined.
    joins.expire(at(10_000));
    assert_eq!(metrics.unjoined_incidents(), 0);
    assert_eq!(metrics.joins(v1::TupleMatch::Original), 1);
}

#[test]
fn a_service_dnat_on_the_client_node_matches_by_the_client_socket() {
    // The incident knows the VIP only; node b sees the backend.
    let (mut joins, metrics) = joins(JoinConfig::default());
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(101),
    );
    let out = joins.offer_copy(&beyond("a", tcp(CLIENT, VIP)), at(108));
    assert_eq!(
        remote(the_join(&out)).r#match,
        v1::TupleMatch::Source as i32
    );
    assert_eq!(metrics.joins(v1::TupleMatch::Source), 1);
}

#[test]
fn a_nodeport_dnat_and_masquerade_on_the_dropping_node_match_by_its_original_tuple() {
    // Node b translated client → b:30080 into b:61000 → backend (DNAT and
    // SNAT) before its policy dropped the packet.
    let (mut joins, _) = joins(JoinConfig::default());
    let packet = tcp(("192.168.0.12", 61_000), BACKEND);
    let original = tcp(CLIENT, NODE_B);
    let reply = tcp(BACKEND, ("192.168.0.12", 61_000));
    let _ = joins.offer_copy(
        &drop_on("b", packet, Some((original, reply)), (100, 103)),
        at(101),
    );
    let out = joins.offer_copy(&beyond("a", tcp(CLIENT, NODE_B)), at(108));
    assert_eq!(
        remote(the_join(&out)).r#match,
        v1::TupleMatch::Original as i32
    );
}

#[test]
fn a_translated_tuple_matches_when_the_original_does_not() {
    // The client connected to the backend directly (its socket layer
    // translated the VIP); node b's conntrack still has the VIP as
    // original, the reply reversed is the client's flow.
    let (mut joins, _) = joins(JoinConfig::default());
    let original = tcp(CLIENT, VIP);
    let reply = tcp(BACKEND, CLIENT);
    let _ = joins.offer_copy(
        &drop_on(
            "b",
            tcp(CLIENT, BACKEND),
            Some((original, reply)),
            (100, 103),
        ),
        at(101),
    );
    let out = joins.offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108));
    assert_eq!(
        remote(the_join(&out)).r#match,
        v1::TupleMatch::Translated as i32
    );
}

#[test]
fn another_client_port_never_matches() {
    let (mut joins, metrics) = joins(JoinConfig::default());
    let _ = joins.offer_copy(
        &drop_on("b", tcp((CLIENT.0, 41_001), BACKEND), None, (100, 103)),
        at(101),
    );
    assert!(
        joins
            .offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108))
            .is_empty()
    );
    joins.expire(at(108) + JoinConfig::default().wait);
    assert_eq!(metrics.unjoined_incidents(), 1);
}

#[test]
fn a_drop_on_the_incident_own_node_is_not_a_join() {
    let (mut joins, _) = joins(JoinConfig::default());
    let _ = joins.offer_copy(
        &drop_on("a", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(101),
    );
    assert!(
        joins
            .offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108))
            .is_empty()
    );
}

#[test]
fn incidents_decided_on_their_node_are_not_joined() {
    let (mut joins, metrics) = joins(JoinConfig::default());
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(101),
    );
    for place in [
        v1::FailurePlace::ThisNode,
        v1::FailurePlace::Refused,
        v1::FailurePlace::NotFailed,
    ] {
        let event = incident("a", 9, place, tcp(CLIENT, BACKEND), (100, 107));
        assert!(joins.offer_copy(&event, at(108)).is_empty(), "{place:?}");
    }
    let unseen = incident(
        "a",
        10,
        v1::FailurePlace::Unseen,
        tcp(CLIENT, BACKEND),
        (100, 107),
    );
    assert_eq!(joins.offer_copy(&unseen, at(108)).len(), 1, "UNSEEN joins");
    joins.expire(at(10_000));
    assert_eq!(
        metrics.unjoined_incidents(),
        0,
        "not candidates, not unjoined"
    );
}

#[test]
fn a_drop_outside_the_time_window_does_not_join() {
    let config = JoinConfig {
        window: Duration::from_secs(5),
        ..JoinConfig::default()
    };
    let (mut joins, metrics) = joins(config);
    // Dropped up to second 90; the incident's evidence starts at 100.
    let _ = joins.offer_copy(&drop_on("b", tcp(CLIENT, BACKEND), None, (80, 90)), at(91));
    assert!(
        joins
            .offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108))
            .is_empty()
    );
    // Dropped from second 113, past the incident's last evidence (107) + 5.
    let late = drop_on("b", tcp(CLIENT, BACKEND), None, (113, 114));
    let late = v1::Event {
        event: match late.event {
            Some(v1::event::Event::Drop(drop)) => {
                Some(v1::event::Event::Drop(v1::DropEvent { flow_id: 4, ..drop }))
            }
            other => other,
        },
        ..late
    };
    assert!(joins.offer_copy(&late, at(115)).is_empty());
    // Within the window on both sides: clocks 4 s apart.
    let skewed = drop_on("c", tcp(CLIENT, BACKEND), None, (96, 111));
    assert_eq!(
        remote(the_join(&joins.offer_copy(&skewed, at(116)))).node,
        "c"
    );
    assert_eq!(metrics.joins(v1::TupleMatch::Original), 1);
}

#[test]
fn a_drop_whose_wait_ended_is_gone_and_a_lone_incident_counts_as_unjoined() {
    let config = JoinConfig {
        wait: Duration::from_secs(30),
        ..JoinConfig::default()
    };
    let (mut joins, metrics) = joins(config);
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(101),
    );
    joins.expire(at(131));
    assert!(
        joins
            .offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(132))
            .is_empty(),
        "the drop stopped waiting at 131"
    );
    joins.expire(at(161));
    assert_eq!(metrics.unjoined_incidents(), 0, "waits until 162");
    joins.expire(at(162));
    assert_eq!(metrics.unjoined_incidents(), 1);
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(163),
    );
    assert_eq!(metrics.joins(v1::TupleMatch::Original), 0, "nothing waits");
}

#[test]
fn an_update_of_a_drop_keeps_it_waiting_longer() {
    let config = JoinConfig {
        wait: Duration::from_secs(30),
        ..JoinConfig::default()
    };
    let (mut joins, _) = joins(config);
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 100)),
        at(100),
    );
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 125)),
        at(125),
    );
    joins.expire(at(140));
    let out = joins.offer_copy(
        &incident(
            "a",
            7,
            v1::FailurePlace::BeyondNode,
            tcp(CLIENT, BACKEND),
            (100, 140),
        ),
        at(141),
    );
    assert_eq!(
        remote(the_join(&out)).drops.len(),
        1,
        "one flow, its latest state"
    );
}

#[test]
fn the_bound_lets_the_oldest_go_and_counts_it() {
    let config = JoinConfig {
        max_incidents: 1,
        max_drops: 1,
        ..JoinConfig::default()
    };
    let (mut joins, metrics) = joins(config);
    let first = incident(
        "a",
        1,
        v1::FailurePlace::BeyondNode,
        tcp(CLIENT, BACKEND),
        (100, 107),
    );
    let second = incident(
        "a",
        2,
        v1::FailurePlace::BeyondNode,
        tcp((CLIENT.0, 41_002), BACKEND),
        (100, 107),
    );
    let _ = joins.offer_copy(&first, at(108));
    let _ = joins.offer_copy(&second, at(109));
    assert_eq!(metrics.join_losses(Waiting::Incident), 1);
    // The first incident no longer waits: its drop joins nothing.
    assert!(
        joins
            .offer_copy(
                &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
                at(110)
            )
            .is_empty()
    );
    let other = drop_on("c", tcp(("10.0.1.6", 1), BACKEND), None, (100, 103));
    let _ = joins.offer_copy(&other, at(111));
    assert_eq!(metrics.join_losses(Waiting::Drop), 1);
    joins.expire(at(10_000));
    assert_eq!(metrics.unjoined_incidents(), 1, "the second waited in vain");
}

#[test]
fn the_node_with_the_best_match_wins() {
    let (mut joins, _) = joins(JoinConfig::default());
    // c sees only the client's socket (after a DNAT elsewhere); b's
    // conntrack has the very flow.
    let _ = joins.offer_copy(
        &drop_on("c", tcp(CLIENT, BACKEND), None, (100, 106)),
        at(101),
    );
    let original = tcp(CLIENT, VIP);
    let reply = tcp(BACKEND, CLIENT);
    let _ = joins.offer_copy(
        &drop_on(
            "b",
            tcp(CLIENT, BACKEND),
            Some((original, reply)),
            (100, 103),
        ),
        at(102),
    );
    let out = joins.offer_copy(&beyond("a", tcp(CLIENT, VIP)), at(108));
    let remote = remote(the_join(&out));
    assert_eq!(remote.node, "b");
    assert_eq!(remote.r#match, v1::TupleMatch::Original as i32);
}

#[test]
fn a_later_state_of_a_joined_incident_is_not_joined_again() {
    let (mut joins, metrics) = joins(JoinConfig::default());
    let _ = joins.offer_copy(
        &drop_on("b", tcp(CLIENT, BACKEND), None, (100, 103)),
        at(101),
    );
    assert_eq!(
        joins
            .offer_copy(&beyond("a", tcp(CLIENT, BACKEND)), at(108))
            .len(),
        1
    );
    let mut update = beyond("a", tcp(CLIENT, BACKEND));
    if let Some(v1::event::Event::Incident(incident)) = update.event.as_mut() {
        incident.event_kind = v1::IncidentEventKind::Update as i32;
    }
    assert!(joins.offer_copy(&update, at(109)).is_empty());
    joins.expire(at(10_000));
    assert_eq!(metrics.joins(v1::TupleMatch::Original), 1);
    assert_eq!(metrics.unjoined_incidents(), 0);
}
