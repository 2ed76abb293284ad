//! One compiled `EventFilter`: every field's values parsed once, matched as
//! the proto says (fields ANDed, values of a field ORed, an empty field
//! matching everything), on drop events and incidents alike.

use dropscope_proto::v1::{
    DropEventKind, EventFilter, EventKind, FailurePlace, IncidentKind, Protocol, Verdict,
};
use ipnet::IpNet;

use super::{
    FilterError,
    error::Problem,
    event::EventView,
    selector::LabelSelector,
    value::{self, DnsSuffix, NamespacedName, PodPrefix, WorkloadRef, tcp_flags_of},
};

/// An `EventFilter` with every value compiled.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    /// `namespace`
    namespaces: Vec<Box<str>>,
    /// `pod`
    pods: Vec<PodPrefix>,
    /// `source_pod`
    source_pods: Vec<PodPrefix>,
    /// `destination_pod`
    destination_pods: Vec<PodPrefix>,
    /// `label`
    labels: Vec<LabelSelector>,
    /// `workload`
    workloads: Vec<WorkloadRef>,
    /// `service`
    services: Vec<NamespacedName>,
    /// `node`
    nodes: Vec<Box<str>>,
    /// `ip`
    ips: Vec<IpNet>,
    /// `source_ip`
    source_ips: Vec<IpNet>,
    /// `destination_ip`
    destination_ips: Vec<IpNet>,
    /// `port`
    ports: Vec<u32>,
    /// `protocol`
    protocols: Vec<i32>,
    /// `tcp_flags`, each a bit set that must be all in the flags seen.
    tcp_flags: Vec<u8>,
    /// `reason`, uppercased.
    reasons: Vec<Box<str>>,
    /// `verdict`
    verdicts: Vec<i32>,
    /// `policy`
    policies: Vec<NamespacedName>,
    /// `hint`
    hints: Vec<Box<str>>,
    /// `event_kind`
    event_kinds: Vec<i32>,
    /// `drop_kind`
    drop_kinds: Vec<i32>,
    /// `incident_kind`
    incident_kinds: Vec<i32>,
    /// `place`
    places: Vec<i32>,
    /// `dns_name`
    dns_names: Vec<DnsSuffix>,
}

/// Compiles every value of one repeated field, naming `path[index]` on
/// error.
fn each<T, U>(
    path: &str,
    field: &str,
    values: &[T],
    compile: impl Fn(&T) -> Result<U, (String, Problem)>,
) -> Result<Vec<U>, FilterError> {
    values
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            compile(raw).map_err(|(value, problem)| FilterError {
                field: format!("{path}.{field}[{index}]"),
                value,
                problem,
            })
        })
        .collect()
}

/// Adapts a string parser to [`each`]: the value shown is the string.
fn text<U>(
    parse: impl Fn(&str) -> Result<U, Problem>,
) -> impl Fn(&String) -> Result<U, (String, Problem)> {
    move |raw| parse(raw).map_err(|problem| (raw.clone(), problem))
}

/// True when `values` is empty or one of them satisfies `matches`.
fn any<T>(values: &[T], matches: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(matches)
}

impl Filter {
    /// Compiles `filter`, found at `path` (`allow[1]`) in the request.
    pub(super) fn compile(
        path: &str,
        filter: &EventFilter,
        known_reasons: &dyn Fn(&str) -> bool,
    ) -> Result<Self, FilterError> {
        let ports = |port: &u32| value::port(*port).map_err(|problem| (port.to_string(), problem));
        let selector = |raw: &str| {
            raw.parse::<LabelSelector>()
                .map_err(|source| Problem::Selector {
                    source: Box::new(source),
                })
        };
        Ok(Self {
            namespaces: each(path, "namespace", &filter.namespace, text(value::exact))?,
            pods: each(path, "pod", &filter.pod, text(PodPrefix::parse))?,
            source_pods: each(
                path,
                "source_pod",
                &filter.source_pod,
                text(PodPrefix::parse),
            )?,
            destination_pods: each(
                path,
                "destination_pod",
                &filter.destination_pod,
                text(PodPrefix::parse),
            )?,
            labels: each(path, "label", &filter.label, text(selector))?,
            workloads: each(path, "workload", &filter.workload, text(WorkloadRef::parse))?,
            services: each(
                path,
                "service",
                &filter.service,
                text(NamespacedName::parse),
            )?,
            nodes: each(path, "node", &filter.node, text(value::exact))?,
            ips: each(path, "ip", &filter.ip, text(value::cidr))?,
            source_ips: each(path, "source_ip", &filter.source_ip, text(value::cidr))?,
            destination_ips: each(
                path,
                "destination_ip",
                &filter.destination_ip,
                text(value::cidr),
            )?,
            ports: each(path, "port", &filter.port, ports)?,
            protocols: each(path, "protocol", &filter.protocol, |v| {
                value::enum_value::<Protocol>(*v, "Protocol")
            })?,
            tcp_flags: each(path, "tcp_flags", &filter.tcp_flags, text(value::tcp_flags))?,
            reasons: each(
                path,
                "reason",
                &filter.reason,
                text(|raw| value::reason(raw, known_reasons)),
            )?,
            verdicts: each(path, "verdict", &filter.verdict, |v| {
                value::enum_value::<Verdict>(*v, "Verdict")
            })?,
            policies: each(path, "policy", &filter.policy, text(NamespacedName::parse))?,
            hints: each(path, "hint", &filter.hint, text(value::exact))?,
            event_kinds: each(path, "event_kind", &filter.event_kind, |v| {
                value::enum_value::<EventKind>(*v, "EventKind")
            })?,
            drop_kinds: each(path, "drop_kind", &filter.drop_kind, |v| {
                value::enum_value::<DropEventKind>(*v, "DropEventKind")
            })?,
            incident_kinds: each(path, "incident_kind", &filter.incident_kind, |v| {
                value::enum_value::<IncidentKind>(*v, "IncidentKind")
            })?,
            places: each(path, "place", &filter.place, |v| {
                value::enum_value::<FailurePlace>(*v, "FailurePlace")
            })?,
            dns_names: each(path, "dns_name", &filter.dns_name, text(DnsSuffix::parse))?,
        })
    }

    /// True when some field matches tuple addresses, which then have to be
    /// parsed from the event.
    pub(super) fn reads_addresses(&self) -> bool {
        !(self.ips.is_empty() && self.source_ips.is_empty() && self.destination_ips.is_empty())
    }

    /// True when every field matches `event`.
    pub(super) fn matches(&self, event: &EventView<'_>) -> bool {
        let drop = event.drop;
        let incident = event.incident;
        let explanation = event.explanation;
        any(&self.event_kinds, |kind| *kind == event.kind)
            && any(&self.nodes, |node| **node == *event.node)
            && any(&self.drop_kinds, |kind| {
                drop.is_some_and(|d| d.kind == *kind)
            })
            && any(&self.incident_kinds, |kind| {
                incident.is_some_and(|i| i.kind == *kind)
            })
            && any(&self.places, |place| {
                incident.is_some_and(|i| i.place == *place)
            })
            && any(&self.dns_names, |suffix| {
                incident
                    .and_then(|i| i.dns.as_ref())
                    .is_some_and(|dns| suffix.matches(&dns.name))
            })
            && any(&self.protocols, |protocol| {
                event.packets().any(|packet| packet.protocol == *protocol)
            })
            && any(&self.reasons, |name| {
                event.drops().any(|d| {
                    d.reason
                        .as_ref()
                        .is_some_and(|reason| reason.name.eq_ignore_ascii_case(name))
                })
            })
            && any(&self.tcp_flags, |flags| {
                event
                    .drops()
                    .any(|d| tcp_flags_of(&d.tcp_flags_seen) & flags == *flags)
            })
            && any(&self.ports, |port| {
                event.endpoints().any(|end| end.port == *port)
            })
            && any(&self.ips, |net| {
                event
                    .source_ips()
                    .chain(event.destination_ips())
                    .any(|ip| net.contains(&ip))
            })
            && any(&self.source_ips, |net| {
                event.source_ips().any(|ip| net.contains(&ip))
            })
            && any(&self.destination_ips, |net| {
                event.destination_ips().any(|ip| net.contains(&ip))
            })
            && any(&self.verdicts, |verdict| {
                explanation.is_some_and(|e| e.verdict == *verdict)
            })
            && any(&self.namespaces, |namespace| {
                event.namespaces().any(|ns| ns == &**namespace)
            })
            && any(&self.pods, |prefix| {
                event.pods().any(|pod| prefix.matches(pod))
            })
            && any(&self.source_pods, |prefix| {
                event.source_pods().any(|pod| prefix.matches(pod))
            })
            && any(&self.destination_pods, |prefix| {
                event.destination_pods().any(|pod| prefix.matches(pod))
            })
            && any(&self.labels, |selector| {
                event.pods().any(|pod| selector.matches(&pod.labels))
            })
            && any(&self.workloads, |workload| {
                event.pods().any(|pod| {
                    pod.workload
                        .as_ref()
                        .is_some_and(|owner| workload.matches(owner))
                })
            })
            && any(&self.services, |service| {
                event
                    .services()
                    .any(|s| service.matches(&s.namespace, &s.name))
            })
            && any(&self.policies, |policy| {
                explanation.is_some_and(|e| {
                    let isolating = [&e.egress, &e.ingress]
                        .into_iter()
                        .flatten()
                        .flat_map(|report| &report.policies);
                    let closest = e
                        .closest_miss
                        .as_ref()
                        .and_then(|miss| miss.policy.as_ref());
                    isolating
                        .chain(closest)
                        .any(|p| policy.matches(&p.namespace, &p.name))
                })
            })
            && any(&self.hints, |code| {
                explanation.is_some_and(|e| e.hints.iter().any(|hint| *hint.code == **code))
            })
    }
}
