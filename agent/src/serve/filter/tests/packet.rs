//! Filters on the packet: addresses and CIDRs (packet and conntrack
//! original tuples), ports, protocol, drop reason, TCP flags, node.

use dropscope_proto::v1::{Event, Protocol, Tuple};

use super::{
    Row, allow, check,
    events::{dnat, explained, plain, tcp, with_drop},
    filter, node, port, s,
};

/// One row per rule.
fn rows() -> Vec<Row> {
    vec![
        // Addresses.
        allow(
            "ip: a bare IP is a host prefix, matching the packet source",
            vec![filter(|f| f.ip = s(&["10.0.1.5"]))],
            plain(),
            true,
        ),
        allow(
            "ip: a CIDR matching the packet destination",
            vec![filter(|f| f.ip = s(&["10.0.2.0/24"]))],
            plain(),
            true,
        ),
        allow(
            "ip: a CIDR holding neither end",
            vec![filter(|f| f.ip = s(&["192.168.0.0/16"]))],
            plain(),
            false,
        ),
        allow(
            "ip: an IPv6 CIDR",
            vec![filter(|f| f.ip = s(&["fd00:1::/64"]))],
            ipv6(),
            true,
        ),
        allow(
            "source_ip: the destination address is not the source",
            vec![filter(|f| f.source_ip = s(&["10.0.2.7"]))],
            plain(),
            false,
        ),
        allow(
            "destination_ip: the destination address",
            vec![filter(|f| f.destination_ip = s(&["10.0.2.7/32"]))],
            plain(),
            true,
        ),
        allow(
            "VIP: destination_ip of a Service VIP finds a DNATed drop by its conntrack original",
            vec![filter(|f| f.destination_ip = s(&["10.96.0.10"]))],
            dnat(),
            true,
        ),
        allow(
            "VIP: without conntrack the VIP is not matched",
            vec![filter(|f| f.destination_ip = s(&["10.96.0.10"]))],
            explained(),
            false,
        ),
        allow("port: the source port", vec![port(&[41000])], plain(), true),
        allow(
            "port: the destination port",
            vec![port(&[8080])],
            plain(),
            true,
        ),
        allow(
            "port: the original port of a DNATed drop",
            vec![port(&[80])],
            dnat(),
            true,
        ),
        allow("port: neither end", vec![port(&[443])], dnat(), false),
        allow(
            "protocol: TCP",
            vec![filter(|f| f.protocol = vec![Protocol::Tcp as i32])],
            plain(),
            true,
        ),
        allow(
            "protocol: UDP is not TCP",
            vec![filter(|f| f.protocol = vec![Protocol::Udp as i32])],
            plain(),
            false,
        ),
        // Reasons, flags, node.
        allow(
            "reason: by name, case-insensitively",
            vec![filter(|f| f.reason = s(&["netfilter_drop"]))],
            plain(),
            true,
        ),
        allow(
            "reason: another name",
            vec![filter(|f| f.reason = s(&["NO_SOCKET"]))],
            plain(),
            false,
        ),
        allow(
            "reason: UNKNOWN_<code> for a code the kernel has no name for",
            vec![filter(|f| f.reason = s(&["UNKNOWN_99"]))],
            with_drop(plain(), |drop| {
                if let Some(reason) = drop.reason.as_mut() {
                    reason.name = "UNKNOWN_99".into();
                }
            }),
            true,
        ),
        allow(
            "tcp_flags: a flag seen",
            vec![filter(|f| f.tcp_flags = s(&["SYN"]))],
            plain(),
            true,
        ),
        allow(
            "tcp_flags: every flag of a value must be seen",
            vec![filter(|f| f.tcp_flags = s(&["SYN,ACK"]))],
            plain(),
            false,
        ),
        allow(
            "tcp_flags: one value is enough",
            vec![filter(|f| f.tcp_flags = s(&["SYN,ACK", "SYN"]))],
            plain(),
            true,
        ),
        allow(
            "tcp_flags: a subset of the flags seen, case-insensitive",
            vec![filter(|f| f.tcp_flags = s(&["ack, rst"]))],
            with_drop(plain(), |drop| {
                drop.tcp_flags_seen = s(&["SYN", "ACK", "RST"])
            }),
            true,
        ),
        allow(
            "node: the agent's node",
            vec![node(&["node-a"])],
            plain(),
            true,
        ),
        allow(
            "node: another node",
            vec![node(&["node-b"])],
            plain(),
            false,
        ),
    ]
}

/// Every row of [`rows`].
#[test]
fn packet_rules() {
    check(rows());
}

/// An IPv6 UDP drop fd00::5:5353 → [fd00:1::7]:53.
fn ipv6() -> Event {
    with_drop(plain(), |drop| {
        drop.packet = Some(Tuple {
            protocol: Protocol::Udp as i32,
            protocol_number: 17,
            ..tcp("fd00::5", 5353, "fd00:1::7", 53)
        });
    })
}
