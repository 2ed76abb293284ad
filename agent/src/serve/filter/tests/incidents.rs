//! Every filter field of drops, on incidents: identities (the incident's
//! own, and its explanation's), tuples (flow, asked destination, joined
//! drops' packet and conntrack original), drop fields through joined drops,
//! and explanation fields. The incident-only fields are in `incident_only`.

use dropscope_proto::v1::{Event, Protocol, Verdict};

use super::{
    Row, allow, check,
    events::{
        bare_incident, dns_incident, endpoint, incident, service, with_incident,
        with_incident_explanation,
    },
    filter, label, node, port, s,
};

/// Rows of the fields that read identities.
fn identity_rows() -> Vec<Row> {
    vec![
        allow(
            "namespace: of the incident's source pod",
            vec![filter(|f| f.namespace = s(&["shop"]))],
            incident(),
            true,
        ),
        allow(
            "namespace: of the incident's destination Service",
            vec![filter(|f| f.namespace = s(&["kube-system"]))],
            dns_incident(),
            true,
        ),
        allow(
            "namespace: of no end",
            vec![filter(|f| f.namespace = s(&["other"]))],
            incident(),
            false,
        ),
        allow(
            "namespace: an incident without identities",
            vec![filter(|f| f.namespace = s(&["shop"]))],
            bare_incident(),
            false,
        ),
        allow(
            "pod: PREFIX of the incident's source",
            vec![filter(|f| f.pod = s(&["frontend"]))],
            incident(),
            true,
        ),
        allow(
            "pod: the backend pod behind the VIP, from the explanation",
            vec![filter(|f| f.pod = s(&["shop/api-"]))],
            incident(),
            true,
        ),
        allow(
            "pod: NAMESPACE/PREFIX in another namespace",
            vec![filter(|f| f.pod = s(&["other/frontend"]))],
            incident(),
            false,
        ),
        allow(
            "pod: an incident without identities",
            vec![filter(|f| f.pod = s(&["frontend"]))],
            bare_incident(),
            false,
        ),
        allow(
            "source_pod: the incident's source",
            vec![filter(|f| f.source_pod = s(&["shop/frontend"]))],
            incident(),
            true,
        ),
        allow(
            "source_pod: the incident's own source, without an explanation",
            vec![filter(|f| f.source_pod = s(&["frontend"]))],
            dns_incident(),
            true,
        ),
        allow(
            "source_pod: falls back to the explanation's source",
            vec![filter(|f| f.source_pod = s(&["frontend"]))],
            with_incident(incident(), |i| {
                i.source = None;
                i.destination = None;
            }),
            true,
        ),
        allow(
            "source_pod: the destination is not the source",
            vec![filter(|f| f.source_pod = s(&["api"]))],
            incident(),
            false,
        ),
        allow(
            "destination_pod: the backend pod after DNAT",
            vec![filter(|f| f.destination_pod = s(&["api"]))],
            incident(),
            true,
        ),
        allow(
            "destination_pod: the source is not the destination",
            vec![filter(|f| f.destination_pod = s(&["frontend"]))],
            incident(),
            false,
        ),
        allow(
            "destination_pod: a Service destination is no pod",
            vec![filter(|f| f.destination_pod = s(&["kube-dns"]))],
            dns_incident(),
            false,
        ),
        allow(
            "label: on the incident's source pod",
            vec![label(&["app=frontend,tier=web"])],
            dns_incident(),
            true,
        ),
        allow(
            "label: on the backend pod",
            vec![label(&["env=prod"])],
            incident(),
            true,
        ),
        allow(
            "label: on no pod",
            vec![label(&["canary"])],
            incident(),
            false,
        ),
        allow(
            "label: an incident without identities, even !key",
            vec![label(&["!canary"])],
            bare_incident(),
            false,
        ),
        allow(
            "workload: of the incident's source",
            vec![filter(|f| f.workload = s(&["Deployment/frontend"]))],
            dns_incident(),
            true,
        ),
        allow(
            "workload: of the backend pod",
            vec![filter(|f| f.workload = s(&["statefulset/api"]))],
            incident(),
            true,
        ),
        allow(
            "workload: of no pod",
            vec![filter(|f| f.workload = s(&["Deployment/api"]))],
            incident(),
            false,
        ),
        allow(
            "service: the incident's destination Service",
            vec![filter(|f| f.service = s(&["shop/api-svc"]))],
            with_incident_explanation(incident(), |e| e.service = None),
            true,
        ),
        allow(
            "service: the explanation's Service",
            vec![filter(|f| f.service = s(&["edge/api-svc"]))],
            with_incident_explanation(incident(), |e| e.service = Some(service("edge", "api-svc"))),
            true,
        ),
        allow(
            "service: the DNS server's Service",
            vec![filter(|f| f.service = s(&["kube-dns"]))],
            dns_incident(),
            true,
        ),
        allow(
            "service: none involved",
            vec![filter(|f| f.service = s(&["kube-dns"]))],
            incident(),
            false,
        ),
        allow(
            "service: an incident without identities",
            vec![filter(|f| f.service = s(&["api-svc"]))],
            bare_incident(),
            false,
        ),
    ]
}

/// Rows of the fields that read tuples, drops and the node.
fn packet_rows() -> Vec<Row> {
    vec![
        allow(
            "node: the agent's node",
            vec![node(&["node-a"])],
            incident(),
            true,
        ),
        allow(
            "node: another node",
            vec![node(&["node-b"])],
            incident(),
            false,
        ),
        allow(
            "ip: the flow's source",
            vec![filter(|f| f.ip = s(&["10.0.1.5"]))],
            bare_incident(),
            true,
        ),
        allow(
            "ip: neither end of any tuple",
            vec![filter(|f| f.ip = s(&["192.168.0.0/16"]))],
            incident(),
            false,
        ),
        allow(
            "destination_ip: the VIP the client sent to (the flow)",
            vec![filter(|f| f.destination_ip = s(&["10.96.0.10"]))],
            incident(),
            true,
        ),
        allow(
            "destination_ip: the backend, from the joined drop's packet",
            vec![filter(|f| f.destination_ip = s(&["10.0.2.7"]))],
            incident(),
            true,
        ),
        allow(
            "destination_ip: the backend is unknown without a joined drop",
            vec![filter(|f| f.destination_ip = s(&["10.0.2.7"]))],
            bare_incident(),
            false,
        ),
        allow(
            "destination_ip: the address the application asked for",
            vec![filter(|f| f.destination_ip = s(&["10.96.5.0/24"]))],
            with_incident(incident(), |i| i.asked = endpoint("10.96.5.5", 443)),
            true,
        ),
        allow(
            "source_ip: the VIP is no source",
            vec![filter(|f| f.source_ip = s(&["10.96.0.10"]))],
            incident(),
            false,
        ),
        allow(
            "source_ip: the client, IPv6 CIDR does not hold it",
            vec![filter(|f| f.source_ip = s(&["fd00::/8"]))],
            incident(),
            false,
        ),
        allow("port: the flow's port", vec![port(&[80])], incident(), true),
        allow(
            "port: the backend port, from the joined drop",
            vec![port(&[8080])],
            incident(),
            true,
        ),
        allow(
            "port: the asked port",
            vec![port(&[443])],
            with_incident(incident(), |i| i.asked = endpoint("10.96.5.5", 443)),
            true,
        ),
        allow("port: of no end", vec![port(&[9])], incident(), false),
        allow(
            "protocol: the flow's",
            vec![filter(|f| f.protocol = vec![Protocol::Udp as i32])],
            dns_incident(),
            true,
        ),
        allow(
            "protocol: another",
            vec![filter(|f| f.protocol = vec![Protocol::Udp as i32])],
            incident(),
            false,
        ),
        allow(
            "reason: of the joined drop",
            vec![filter(|f| f.reason = s(&["netfilter_drop"]))],
            incident(),
            true,
        ),
        allow(
            "reason: of no joined drop",
            vec![filter(|f| f.reason = s(&["NO_SOCKET"]))],
            incident(),
            false,
        ),
        allow(
            "reason: of the second joined drop",
            vec![filter(|f| f.reason = s(&["NO_SOCKET"]))],
            two_drops(),
            true,
        ),
        allow(
            "reason: an incident without joined drops",
            vec![filter(|f| f.reason = s(&["NETFILTER_DROP"]))],
            bare_incident(),
            false,
        ),
        allow(
            "tcp_flags: seen by the joined drop",
            vec![filter(|f| f.tcp_flags = s(&["SYN"]))],
            incident(),
            true,
        ),
        allow(
            "tcp_flags: not seen by the joined drop",
            vec![filter(|f| f.tcp_flags = s(&["SYN,ACK"]))],
            incident(),
            false,
        ),
        allow(
            "tcp_flags: all flags of a value in one joined drop, not across two",
            vec![filter(|f| f.tcp_flags = s(&["SYN,RST"]))],
            two_drops(),
            false,
        ),
        allow(
            "tcp_flags: a value seen by the second joined drop",
            vec![filter(|f| f.tcp_flags = s(&["RST"]))],
            two_drops(),
            true,
        ),
        allow(
            "tcp_flags: not applicable without a joined drop",
            vec![filter(|f| f.tcp_flags = s(&["SYN"]))],
            bare_incident(),
            false,
        ),
    ]
}

/// Rows of the fields that read the explanation.
fn explanation_rows() -> Vec<Row> {
    vec![
        allow(
            "verdict: the joined drop's explanation",
            vec![filter(|f| f.verdict = vec![Verdict::DenyIngress as i32])],
            incident(),
            true,
        ),
        allow(
            "verdict: another verdict",
            vec![filter(|f| f.verdict = vec![Verdict::Allow as i32])],
            incident(),
            false,
        ),
        allow(
            "verdict: a timeout alone has none",
            vec![filter(|f| f.verdict = vec![Verdict::DenyIngress as i32])],
            bare_incident(),
            false,
        ),
        allow(
            "policy: isolating the destination",
            vec![filter(|f| f.policy = s(&["shop/default-deny"]))],
            incident(),
            true,
        ),
        allow(
            "policy: the closest miss",
            vec![filter(|f| f.policy = s(&["allow-api"]))],
            incident(),
            true,
        ),
        allow(
            "policy: not involved",
            vec![filter(|f| f.policy = s(&["shop/other"]))],
            incident(),
            false,
        ),
        allow(
            "policy: without an explanation",
            vec![filter(|f| f.policy = s(&["default-deny"]))],
            dns_incident(),
            false,
        ),
        allow(
            "hint: a code present",
            vec![filter(|f| f.hint = s(&["port_mismatch"]))],
            incident(),
            true,
        ),
        allow(
            "hint: a code absent",
            vec![filter(|f| f.hint = s(&["dns_egress_denied"]))],
            incident(),
            false,
        ),
    ]
}

/// `incident()` with a second joined drop: NO_SOCKET, flags RST.
fn two_drops() -> Event {
    with_incident(incident(), |i| {
        let Some(first) = i.drops.first().cloned() else {
            return;
        };
        let mut second = first;
        if let Some(reason) = second.reason.as_mut() {
            reason.name = "NO_SOCKET".into();
        }
        second.tcp_flags = s(&["RST"]);
        second.tcp_flags_seen = s(&["RST"]);
        i.drops.push(second);
    })
}

/// Every row of [`identity_rows`].
#[test]
fn incident_identity_rules() {
    check(identity_rows());
}

/// Every row of [`packet_rows`].
#[test]
fn incident_packet_rules() {
    check(packet_rows());
}

/// Every row of [`explanation_rows`].
#[test]
fn incident_explanation_rules() {
    check(explanation_rows());
}
