//! Events as OTLP log records: the body is one readable line, the
//! attributes follow the OpenTelemetry semantic conventions where one
//! exists (`k8s.*` for the client pod and node, `source.*`,
//! `destination.*`, `network.*` for the flow) and are `dropscope.*`
//! otherwise. docs/otlp.md lists every attribute.

use dropscope_proto::v1;
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, any_value},
    logs::v1::{LogRecord, SeverityNumber},
};

use crate::convert;

/// Attributes being collected for one record.
#[derive(Default)]
struct Attributes(Vec<KeyValue>);

impl Attributes {
    fn value(&mut self, key: &str, value: any_value::Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
    }

    /// A string attribute; empty strings are left out.
    fn text(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.value(key, any_value::Value::StringValue(value.to_owned()));
        }
    }

    fn int(&mut self, key: &str, value: u64) {
        self.value(
            key,
            any_value::Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.value(key, any_value::Value::BoolValue(value));
    }

    /// A string array attribute; empty arrays are left out.
    fn texts(&mut self, key: &str, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        let values = values
            .into_iter()
            .map(|value| AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            })
            .collect();
        self.value(key, any_value::Value::ArrayValue(ArrayValue { values }));
    }
}

/// Nanoseconds since the Unix epoch of a timestamp; 0 when unset.
pub fn nanos(timestamp: Option<&pbjson_types::Timestamp>) -> u64 {
    timestamp
        .and_then(convert::time_of)
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The enum value's proto name without its prefix (`NETFILTER_DROP`,
/// `BEYOND_NODE`).
fn name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_owned()
}

/// One event as a log record.
pub fn record(event: &v1::Event) -> LogRecord {
    let mut attributes = Attributes::default();
    attributes.text("k8s.node.name", &event.node);
    let (event_name, severity, body, time) = match &event.event {
        Some(v1::event::Event::Drop(drop)) => {
            drop_attributes(&mut attributes, drop);
            (
                "dropscope.drop",
                SeverityNumber::Warn,
                drop_line(drop),
                drop.last_seen.as_ref(),
            )
        }
        Some(v1::event::Event::Incident(incident)) => {
            incident_attributes(&mut attributes, incident);
            let severity = if incident.place == v1::FailurePlace::NotFailed as i32 {
                SeverityNumber::Info
            } else {
                SeverityNumber::Warn
            };
            (
                "dropscope.incident",
                severity,
                incident.summary.clone(),
                incident.last_seen.as_ref(),
            )
        }
        Some(v1::event::Event::Loss(loss)) => {
            let source = v1::LossSource::try_from(loss.source)
                .map(|source| name(source.as_str_name(), "LOSS_SOURCE_"))
                .unwrap_or_default();
            attributes.text("dropscope.loss.source", &source);
            attributes.int("dropscope.loss.lost_events", loss.lost_events);
            attributes.int("dropscope.loss.lost_drops", loss.lost_drops);
            (
                "dropscope.loss",
                SeverityNumber::Warn,
                format!(
                    "lost {} events ({} drops): {source}",
                    loss.lost_events, loss.lost_drops
                ),
                loss.time.as_ref(),
            )
        }
        Some(v1::event::Event::NodeState(state)) => {
            let connection = v1::NodeConnection::try_from(state.connection)
                .map(|connection| name(connection.as_str_name(), "NODE_CONNECTION_"))
                .unwrap_or_default();
            attributes.text("dropscope.node.connection", &connection);
            attributes.text("dropscope.node.error", &state.error);
            (
                "dropscope.node_state",
                SeverityNumber::Info,
                format!("node {} {connection}", state.node),
                state.since.as_ref(),
            )
        }
        None => (
            "dropscope.unknown",
            SeverityNumber::Unspecified,
            String::new(),
            None,
        ),
    };
    attributes.text(
        "dropscope.event",
        event_name.trim_start_matches("dropscope."),
    );
    let observed = nanos(event.time.as_ref());
    LogRecord {
        time_unix_nano: match nanos(time) {
            0 => observed,
            time => time,
        },
        observed_time_unix_nano: observed,
        severity_number: severity as i32,
        severity_text: match severity {
            SeverityNumber::Warn => "WARN",
            SeverityNumber::Info => "INFO",
            _ => "",
        }
        .to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: attributes.0,
        event_name: event_name.to_owned(),
        ..Default::default()
    }
}

/// `NETFILTER_DROP tcp 10.0.1.5:41000 -> 10.0.2.7:8080 (3 packets)`.
fn drop_line(drop: &v1::DropEvent) -> String {
    format!(
        "{} {} ({} packets)",
        drop.reason
            .as_ref()
            .map_or("", |reason| reason.name.as_str()),
        drop.packet.as_ref().map(tuple_text).unwrap_or_default(),
        drop.packets
    )
}

/// `tcp 10.0.1.5:41000 -> 10.0.2.7:8080`.
fn tuple_text(tuple: &v1::Tuple) -> String {
    let end = |endpoint: &Option<v1::Endpoint>| {
        endpoint.as_ref().map_or_else(String::new, |endpoint| {
            match endpoint.ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", endpoint.port),
                _ => format!("{}:{}", endpoint.ip, endpoint.port),
            }
        })
    };
    format!(
        "{} {} -> {}",
        transport(tuple),
        end(&tuple.source),
        end(&tuple.destination)
    )
}

/// `tcp`, `udp`, … as `network.transport` names them; the number otherwise.
fn transport(tuple: &v1::Tuple) -> String {
    match tuple.protocol_number {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        132 => "sctp".to_owned(),
        1 => "icmp".to_owned(),
        58 => "icmpv6".to_owned(),
        other => other.to_string(),
    }
}

/// `source.*`, `destination.*`, `network.*` of the flow's tuple.
fn flow_attributes(attributes: &mut Attributes, tuple: &v1::Tuple) {
    for (side, endpoint) in [
        ("source", &tuple.source),
        ("destination", &tuple.destination),
    ] {
        if let Some(endpoint) = endpoint {
            attributes.text(&format!("{side}.address"), &endpoint.ip);
            attributes.int(&format!("{side}.port"), u64::from(endpoint.port));
        }
    }
    attributes.text("network.transport", &transport(tuple));
    let v6 = tuple
        .source
        .as_ref()
        .is_some_and(|source| source.ip.contains(':'));
    attributes.text("network.type", if v6 { "ipv6" } else { "ipv4" });
}

fn drop_attributes(attributes: &mut Attributes, drop: &v1::DropEvent) {
    if let Some(reason) = &drop.reason {
        attributes.text("dropscope.reason", &reason.name);
        attributes.int("dropscope.reason_code", u64::from(reason.code));
    }
    let kind = v1::DropEventKind::try_from(drop.kind)
        .map(|kind| name(kind.as_str_name(), "DROP_EVENT_KIND_"))
        .unwrap_or_default();
    attributes.text("dropscope.drop.kind", &kind);
    attributes.int("dropscope.drop.flow_id", drop.flow_id);
    attributes.int("dropscope.drop.packets", drop.packets);
    attributes.int("dropscope.drop.new_packets", drop.new_packets);
    attributes.int("dropscope.drop.bytes", drop.bytes);
    if let Some(location) = &drop.location {
        attributes.text("dropscope.drop.location", &location.symbol);
    }
    attributes.texts("dropscope.drop.tcp_flags", drop.tcp_flags.clone());
    if let Some(packet) = &drop.packet {
        flow_attributes(attributes, packet);
        attributes.text("dropscope.tuple.packet", &tuple_text(packet));
    }
    if let Some(conntrack) = &drop.conntrack {
        if let Some(original) = &conntrack.original {
            attributes.text("dropscope.tuple.original", &tuple_text(original));
        }
        if let Some(reply) = &conntrack.reply {
            attributes.text("dropscope.tuple.reply", &tuple_text(reply));
        }
        attributes.bool("dropscope.nat.dnat", conntrack.dnat);
        attributes.bool("dropscope.nat.snat", conntrack.snat);
    }
    if let Some(explanation) = &drop.explanation {
        explanation_attributes(attributes, explanation);
    }
}

fn incident_attributes(attributes: &mut Attributes, incident: &v1::Incident) {
    let kind = v1::IncidentKind::try_from(incident.kind)
        .map(|kind| name(kind.as_str_name(), "INCIDENT_KIND_"))
        .unwrap_or_default();
    let place = |place: i32| {
        v1::FailurePlace::try_from(place)
            .map(|place| name(place.as_str_name(), "FAILURE_PLACE_"))
            .unwrap_or_default()
    };
    let event_kind = v1::IncidentEventKind::try_from(incident.event_kind)
        .map(|kind| name(kind.as_str_name(), "INCIDENT_EVENT_KIND_"))
        .unwrap_or_default();
    attributes.text("dropscope.incident.kind", &kind);
    attributes.text("dropscope.incident.place", &place(incident.place));
    attributes.text("dropscope.incident.event_kind", &event_kind);
    attributes.int("dropscope.incident.id", incident.incident_id);
    if let Some(flow) = &incident.flow {
        flow_attributes(attributes, flow);
        attributes.text("dropscope.tuple.flow", &tuple_text(flow));
    }
    if let Some(tcp) = &incident.tcp {
        attributes.text("dropscope.incident.socket_error", &tcp.socket_error_name);
        attributes.int(
            "dropscope.incident.syn_retransmits",
            u64::from(tcp.syn_retransmits),
        );
    }
    if let Some(dns) = &incident.dns {
        attributes.text("dropscope.dns.name", &dns.name);
        attributes.text("dropscope.dns.rcode", &dns.rcode_name);
    }
    if let Some(process) = &incident.process {
        attributes.int("process.pid", u64::from(process.pid));
        attributes.text("process.executable.name", &process.comm);
    }
    if let Some(source) = &incident.source {
        pod_attributes(attributes, source);
    }
    if let Some(destination) = &incident.destination {
        destination_attributes(attributes, destination);
    }
    if let Some(remote) = &incident.remote {
        attributes.text("dropscope.incident.remote_node", &remote.node);
        attributes.text(
            "dropscope.incident.decided_place",
            &place(remote.decided_place),
        );
        let matched = v1::TupleMatch::try_from(remote.r#match)
            .map(|matched| name(matched.as_str_name(), "TUPLE_MATCH_"))
            .unwrap_or_default();
        attributes.text("dropscope.incident.match", &matched);
        if let Some(reason) = remote
            .drops
            .iter()
            .rev()
            .find_map(|drop| drop.reason.as_ref())
        {
            attributes.text("dropscope.reason", &reason.name);
        }
        if let Some(original) = remote
            .drops
            .iter()
            .rev()
            .find_map(|drop| drop.conntrack.as_ref()?.original.as_ref())
        {
            attributes.text("dropscope.tuple.original", &tuple_text(original));
        }
        if let Some(packet) = remote
            .drops
            .iter()
            .rev()
            .find_map(|drop| drop.packet.as_ref())
        {
            attributes.text("dropscope.tuple.packet", &tuple_text(packet));
        }
    }
    if let Some(explanation) = &incident.explanation {
        explanation_attributes(attributes, explanation);
    }
}

/// `k8s.*` of the client (the flow's source pod).
fn pod_attributes(attributes: &mut Attributes, identity: &v1::Identity) {
    if let Some(v1::identity::Identity::Pod(pod)) = &identity.identity {
        attributes.text("k8s.namespace.name", &pod.namespace);
        attributes.text("k8s.pod.name", &pod.name);
        attributes.text("k8s.pod.uid", &pod.uid);
        if let Some(workload) = &pod.workload {
            let key = format!("k8s.{}.name", workload.kind.to_ascii_lowercase());
            attributes.text(&key, &workload.name);
        }
    }
}

/// `dropscope.destination.*`: the semantic conventions name one pod per
/// record (the client's); the other end is dropscope's.
fn destination_attributes(attributes: &mut Attributes, identity: &v1::Identity) {
    match &identity.identity {
        Some(v1::identity::Identity::Pod(pod)) => {
            attributes.text("dropscope.destination.namespace", &pod.namespace);
            attributes.text("dropscope.destination.pod", &pod.name);
        }
        Some(v1::identity::Identity::Service(service)) => {
            attributes.text("dropscope.destination.namespace", &service.namespace);
            attributes.text("dropscope.destination.service", &service.name);
        }
        Some(v1::identity::Identity::Node(node)) => {
            attributes.text("dropscope.destination.node", &node.name);
        }
        _ => {}
    }
}

/// Verdict, policies of the denying direction, hints, and both ends.
fn explanation_attributes(attributes: &mut Attributes, explanation: &v1::Explanation) {
    let verdict = v1::Verdict::try_from(explanation.verdict)
        .map(|verdict| name(verdict.as_str_name(), "VERDICT_"))
        .unwrap_or_default();
    attributes.text("dropscope.verdict", &verdict);
    let names = |report: &Option<v1::DirectionReport>| -> Vec<String> {
        report
            .iter()
            .flat_map(|report| &report.policies)
            .map(|policy| format!("{}/{}", policy.namespace, policy.name))
            .collect()
    };
    let policies = match v1::Verdict::try_from(explanation.verdict) {
        Ok(v1::Verdict::DenyIngress) => names(&explanation.ingress),
        Ok(v1::Verdict::DenyEgress) => names(&explanation.egress),
        Ok(v1::Verdict::DenyBoth) => {
            let mut both = names(&explanation.egress);
            both.extend(names(&explanation.ingress));
            both
        }
        _ => Vec::new(),
    };
    attributes.texts("dropscope.policy", policies);
    if let Some(hint) = explanation.hints.first() {
        attributes.text("dropscope.hint", &hint.code);
        attributes.text("dropscope.hint.message", &hint.message);
    }
    attributes.texts(
        "dropscope.hints",
        explanation
            .hints
            .iter()
            .map(|hint| hint.code.clone())
            .collect(),
    );
    let namespaces_known = attributes.0.iter().any(|kv| kv.key == "k8s.pod.name");
    if !namespaces_known
        && let Some(identity) = explanation
            .source
            .as_ref()
            .and_then(|source| source.identity.as_ref())
    {
        pod_attributes(attributes, identity);
    }
    let destination_known = attributes
        .0
        .iter()
        .any(|kv| kv.key.starts_with("dropscope.destination."));
    if !destination_known
        && let Some(identity) = explanation
            .destination
            .as_ref()
            .and_then(|destination| destination.identity.as_ref())
    {
        destination_attributes(attributes, identity);
    }
    if let Some(service) = explanation
        .service
        .as_ref()
        .and_then(|service| service.identity.as_ref())
        && let v1::identity::Identity::Service(service) = service
    {
        attributes.text(
            "dropscope.service",
            &format!("{}/{}", service.namespace, service.name),
        );
    }
}

#[cfg(test)]
mod tests;
