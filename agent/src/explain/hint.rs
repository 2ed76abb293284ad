//! Hints: the traps a flow fell into, each a stable code and one sentence
//! naming the objects involved; and the sentence saying why a rule missed.
//! Receives the checked [`Facts`]; emits [`Hint`]s.

use std::fmt::Write as _;

use super::{
    Facts, closest,
    incomplete::Missing,
    peer::{self, PeerMiss},
    port::{self, PortMiss},
    selector,
    verdict::{self, DirectionCheck},
};
use crate::{
    enrich::view::{Peer, Pod, Policy},
    model::{Direction, Hint, HintCode, Identity},
};

fn policy_name(policy: &Policy) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

fn rule_name(policy: &Policy, direction: Direction, index: usize) -> String {
    format!("{} {direction}[{index}]", policy_name(policy))
}

fn pod_name(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

fn names(policies: &[&std::sync::Arc<Policy>]) -> String {
    policies
        .iter()
        .map(|policy| policy_name(policy))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Hints(Vec<Hint>);

impl Hints {
    fn push(&mut self, code: HintCode, message: String) {
        if !self
            .0
            .iter()
            .any(|hint| hint.code == code && hint.message == message)
        {
            self.0.push(Hint { code, message });
        }
    }
}

fn is_dns(facts: &Facts<'_>) -> bool {
    let dns_label = |pod: &Pod| matches!(pod.labels.get("k8s-app"), Some("kube-dns" | "coredns"));
    facts.port == 53
        || facts.service.is_some_and(|hit| {
            hit.port.port == 53 || matches!(hit.service.name.as_ref(), "kube-dns" | "coredns")
        })
        || facts.destination.pod.is_some_and(|pod| dns_label(pod))
}

/// The hints for a checked flow. When objects that could decide the
/// verdict are `missing`, `explanation_incomplete` comes first and
/// `policy_allows` is never said.
pub fn hints(facts: &Facts<'_>, missing: &Missing) -> Vec<Hint> {
    let mut hints = Hints(Vec::new());
    if !missing.is_empty() {
        hints.push(HintCode::ExplanationIncomplete, incomplete(facts, missing));
    }
    general(facts, missing.is_empty(), &mut hints);
    for direction in [Direction::Egress, Direction::Ingress] {
        let check = facts.direction(direction);
        if check.allowed() || facts.to_self {
            continue;
        }
        denied(facts, check, &mut hints);
    }
    hints.0
}

/// How many objects the incomplete hint names before "and N more".
const NAMED_IN_HINT: usize = 3;

fn incomplete(facts: &Facts<'_>, missing: &Missing) -> String {
    let count = missing.count();
    let mut named: Vec<String> = missing
        .objects
        .iter()
        .take(NAMED_IN_HINT)
        .map(|object| format!("{object} ({})", object.reason))
        .collect();
    let more = count - named.len() as u64;
    if more > 0 {
        named.push(format!("{more} more"));
    }
    let objects = if count == 1 { "object" } else { "objects" };
    let mut message = format!(
        "the verdict {} may be wrong: {count} {objects} that could decide it could not be loaded: {}; fix them and explain again",
        facts.verdict,
        named.join(", ")
    );
    if facts.verdict.is_allow() {
        message.push_str(" (this is not evidence that NetworkPolicy allows the flow)");
    }
    message
}

fn general(facts: &Facts<'_>, complete: bool, hints: &mut Hints) {
    if facts.to_self
        && let Some(pod) = facts.source.pod
    {
        let rules_alone = if facts.egress.allowed() && facts.ingress.allowed() {
            String::new()
        } else {
            " (its policies' rules alone would not allow it)".into()
        };
        hints.push(
            HintCode::TrafficToSelf,
            format!(
                "{} sends to itself: a pod cannot block traffic to itself, so NetworkPolicy allows it{rules_alone}",
                pod_name(pod)
            ),
        );
    }
    if facts.verdict.is_allow() && !facts.to_self && complete {
        let mut by = Vec::new();
        for check in [&facts.egress, &facts.ingress] {
            if let Some(rule) = check.rules.iter().find(|rule| rule.allows()) {
                by.push(format!(
                    "{} allows it",
                    rule_name(rule.policy, check.direction, rule.index)
                ));
            } else if !check.isolated() {
                by.push(match check.pod {
                    Some(pod) => format!(
                        "no policy isolates {} for {}",
                        pod_name(pod),
                        check.direction
                    ),
                    None => format!("no pod to isolate for {}", check.direction),
                });
            }
        }
        hints.push(
            HintCode::PolicyAllows,
            format!(
                "NetworkPolicy would allow this flow ({}): if it was dropped, the drop came from something else (CNI datapath, host firewall, cloud firewall or security group, or no listener)",
                by.join("; ")
            ),
        );
    }
    if let Some(pod) = facts.destination.pod
        && pod.host_network
    {
        hints.push(
            HintCode::HostNetworkPod,
            format!(
                "{} uses the host network: NetworkPolicy does not isolate it (traffic to it is traffic to its node)",
                pod_name(pod)
            ),
        );
    }
    for (identity, ip) in [
        (&facts.source_identity, facts.source.ip),
        (&facts.destination_identity, facts.destination.ip),
    ] {
        if let Identity::Unknown { .. } = identity {
            hints.push(
                HintCode::UnknownAddress,
                format!(
                    "{ip} is in the pod network but no known pod has it (metadata may be stale)"
                ),
            );
        }
    }
    if facts.no_endpoints
        && let Some(hit) = facts.service
    {
        hints.push(
            HintCode::ServiceWithoutEndpoints,
            format!(
                "service {}/{} has no backend for port {}: there is no pod to evaluate ingress on",
                hit.service.namespace, hit.service.name, hit.port.port
            ),
        );
    }
}

fn denied(facts: &Facts<'_>, check: &DirectionCheck<'_>, hints: &mut Hints) {
    let direction = check.direction;
    let Some(subject) = check.pod else { return };
    let policies = names(&check.policies);
    if check.rules.is_empty() {
        hints.push(
            HintCode::DefaultDeny,
            format!(
                "{} is isolated for {direction} by {policies}, which has no {direction} rule: every {direction} connection is denied (default deny)",
                pod_name(subject)
            ),
        );
    }
    if direction == Direction::Egress && is_dns(facts) {
        let (target, needed) = match facts.service {
            Some(hit) if hit.port.port != facts.port => (
                format!(
                    "service {}/{} {}/{}, DNATed to {} on {}/{}",
                    hit.service.namespace,
                    hit.service.name,
                    facts.protocol,
                    hit.port.port,
                    facts.destination_identity,
                    facts.protocol,
                    facts.port
                ),
                format!(
                    "{}/{} (the DNS pods' port after DNAT)",
                    facts.protocol, facts.port
                ),
            ),
            Some(hit) => (
                format!(
                    "service {}/{} {}/{}, backend {}",
                    hit.service.namespace,
                    hit.service.name,
                    facts.protocol,
                    hit.port.port,
                    facts.destination_identity
                ),
                "UDP/TCP 53".to_string(),
            ),
            None => (
                format!(
                    "{} {}/{}",
                    facts.destination_identity, facts.protocol, facts.port
                ),
                "UDP/TCP 53".to_string(),
            ),
        };
        hints.push(
            HintCode::DnsEgressDenied,
            format!(
                "egress from {} to DNS ({target}) is denied: it is isolated for egress by {policies} and no rule allows {needed} to kube-dns, so name resolution fails before any connection starts",
                pod_name(subject)
            ),
        );
    }
    if let Some(hit) = facts.service
        && hit.port.port != facts.port
    {
        for rule in &check.rules {
            let writes_service_port = verdict::rules(rule.policy, direction)
                .get(rule.index)
                .is_some_and(|written| {
                    written.ports.iter().any(|entry| {
                        port::covers_number(entry, hit.port.port, facts.protocol)
                            && !port::covers_number(entry, facts.port, facts.protocol)
                    })
                });
            if writes_service_port {
                hints.push(
                    HintCode::ServicePortNotTargetPort,
                    format!(
                        "{} allows {}/{}, the port of service {}/{}, but policies match the packet after DNAT, on the backend's target port {}/{}: allow the target port",
                        rule_name(rule.policy, direction, rule.index),
                        facts.protocol,
                        hit.port.port,
                        hit.service.namespace,
                        hit.service.name,
                        facts.protocol,
                        facts.port
                    ),
                );
            }
        }
        if direction == Direction::Egress {
            for rule in &check.rules {
                for peer in verdict::rules(rule.policy, direction)
                    .get(rule.index)
                    .map(|written| &written.peers[..])
                    .unwrap_or_default()
                {
                    if let Peer::IpBlock { cidr, .. } = peer
                        && cidr.contains(&hit.vip)
                        && !cidr.contains(&facts.destination.ip)
                    {
                        hints.push(
                            HintCode::IpBlockIsServiceIp,
                            format!(
                                "{} ipBlock {cidr} covers the ClusterIP {} of service {}/{}, but policies see the backend address {} after DNAT",
                                rule_name(rule.policy, direction, rule.index),
                                hit.vip,
                                hit.service.namespace,
                                hit.service.name,
                                facts.destination.ip
                            ),
                        );
                    }
                }
            }
        }
    }
    if direction == Direction::Ingress {
        source_node(facts, check, subject, &policies, hints);
    }
    rule_defects(facts, check, hints);
    misplaced_policies(facts, check, subject, hints);
}

fn source_node(
    facts: &Facts<'_>,
    check: &DirectionCheck<'_>,
    subject: &Pod,
    policies: &str,
    hints: &mut Hints,
) {
    let has_ip_block = check.rules.iter().any(|rule| {
        verdict::rules(rule.policy, Direction::Ingress)
            .get(rule.index)
            .is_some_and(|written| {
                written
                    .peers
                    .iter()
                    .any(|peer| matches!(peer, Peer::IpBlock { .. }))
            })
    });
    let only_pods = if has_ip_block {
        "no ipBlock covers it"
    } else {
        "they allow only pods (selectors never match a node address)"
    };
    match &facts.source_identity {
        Identity::Node {
            name,
            is_kubelet_of_destination: true,
        } => hints.push(
            HintCode::KubeletProbeBlocked,
            format!(
                "{} is node {name}, which runs {}: its kubelet sends health probes from this address, and the pod is isolated for ingress by {policies}, where {only_pods}. The reference says a pod's own node may always reach it and most CNIs exempt it, but a CNI that enforces it drops the probe and the pod restarts: allow ipBlock {}/32 (or the node CIDR) on {}/{}, or use exec probes",
                facts.source.ip,
                pod_name(subject),
                facts.source.ip,
                facts.protocol,
                facts.port
            ),
        ),
        Identity::Node { name, .. } => hints.push(
            HintCode::NodeSourceNotSelectable,
            format!(
                "{} is node {name}: pod and namespace selectors never match a node address, and {only_pods}",
                facts.source.ip
            ),
        ),
        Identity::Pod {
            namespace,
            name,
            host_network: true,
            ..
        } => hints.push(
            HintCode::NodeSourceNotSelectable,
            format!(
                "{namespace}/{name} uses the host network, so its traffic comes from the node address {}: selectors never match it, and {only_pods}",
                facts.source.ip
            ),
        ),
        _ => {}
    }
}

fn rule_defects(facts: &Facts<'_>, check: &DirectionCheck<'_>, hints: &mut Hints) {
    let direction = check.direction;
    let (end, _) = facts.other_end(direction);
    let closest =
        closest::closest(facts).filter(|(closest_direction, _)| *closest_direction == direction);
    for rule in &check.rules {
        let name = rule_name(rule.policy, direction, rule.index);
        let is_closest = closest.is_some_and(|(_, best)| std::ptr::eq(best, rule));
        for (index, miss) in &rule.peers.misses {
            let field = format!(
                "{name}.{}[{index}]",
                if direction == Direction::Ingress {
                    "from"
                } else {
                    "to"
                }
            );
            match miss {
                PeerMiss::NamespaceNotSelected { selector } => {
                    let missing = peer::missing_namespace_keys(&facts.view, selector);
                    if !missing.is_empty() {
                        hints.push(
                            HintCode::NamespaceLabelMissing,
                            format!(
                                "{field} namespaceSelector {selector} needs label {}, which no namespace carries: select namespaces by kubernetes.io/metadata.name=<namespace>, which the API server sets on every namespace, or label the namespace",
                                missing.join(", ")
                            ),
                        );
                    } else if !peer::any_namespace_selected(&facts.view, selector) {
                        hints.push(
                            HintCode::NamespaceSelectorMatchesNothing,
                            format!("{field} namespaceSelector {selector} matches no namespace"),
                        );
                    }
                }
                PeerMiss::PodNotSelected {
                    selector,
                    namespaces,
                } => {
                    if !peer::any_pod_selected(
                        &facts.view,
                        &rule.policy.namespace,
                        *namespaces,
                        selector,
                    ) {
                        let scope = match namespaces {
                            None => format!("namespace {}", rule.policy.namespace),
                            Some(selector) => format!("namespaces {selector}"),
                        };
                        let labels = end
                            .pod
                            .map(|pod| pod.labels.to_string())
                            .unwrap_or_default();
                        hints.push(
                            HintCode::SelectorMatchesNoPod,
                            format!(
                                "{field} podSelector {selector} matches no pod in {scope}: check the labels ({} has {labels})",
                                facts.other_end(direction).1
                            ),
                        );
                    }
                }
                PeerMiss::IpExcepted { cidr, except } => hints.push(
                    HintCode::IpBlockExcept,
                    format!(
                        "{field} ipBlock {cidr} covers {} but its except {except} removes it",
                        end.ip
                    ),
                ),
                PeerMiss::IpNotCovered { cidr } if is_closest || rule.ports.matched => hints.push(
                    HintCode::IpBlockNotCovering,
                    format!("{field} ipBlock {cidr} does not cover {}", end.ip),
                ),
                _ => {}
            }
        }
        if is_closest && rule.peers.matched && !rule.ports.matched {
            let named = rule.ports.misses.iter().any(|miss| {
                matches!(
                    miss,
                    PortMiss::NamedUnresolved { .. } | PortMiss::NamedOther { .. }
                )
            });
            let code = if named {
                HintCode::NamedPortUnresolved
            } else {
                HintCode::PortMismatch
            };
            let misses: Vec<String> = rule
                .ports
                .misses
                .iter()
                .map(|miss| closest::describe_port(facts, miss))
                .collect();
            hints.push(
                code,
                format!("{name}: the peer matches but {}", misses.join("; ")),
            );
        }
    }
}

/// Policies that would allow the flow but do not select the pod: their
/// podSelector matches no pod, or they live in another namespace.
fn misplaced_policies(
    facts: &Facts<'_>,
    check: &DirectionCheck<'_>,
    subject: &Pod,
    hints: &mut Hints,
) {
    let direction = check.direction;
    let (end, _) = facts.other_end(direction);
    let other = end.peer();
    let packet = facts.packet();
    let would_allow = |policy: &std::sync::Arc<Policy>, namespace: &str| {
        verdict::rules(policy, direction)
            .iter()
            .enumerate()
            .any(|(index, rule)| {
                verdict::check_rule(&facts.view, policy, namespace, index, rule, &other, &packet)
                    .allows()
            })
    };
    for policy in facts.view.orphans_in(&subject.namespace) {
        if !verdict::affects(policy, direction)
            || selector::matches(&policy.pod_selector, &subject.labels)
            || !would_allow(policy, &policy.namespace)
        {
            continue;
        }
        let mut message = format!(
            "{} would allow this flow but its podSelector {} matches no pod in {}",
            policy_name(policy),
            policy.pod_selector,
            policy.namespace
        );
        let _ = write!(
            message,
            " ({} has labels {})",
            pod_name(subject),
            subject.labels
        );
        hints.push(HintCode::PolicySelectsNoPod, message);
    }
    for policy in facts.view.orphans_selecting(&subject.labels) {
        // Meant for this pod: selects its labels, selects no pod of its
        // own namespace, and would allow the flow there.
        if policy.namespace == subject.namespace
            || !verdict::affects(policy, direction)
            || !selector::matches(&policy.pod_selector, &subject.labels)
            || !would_allow(policy, &subject.namespace)
        {
            continue;
        }
        hints.push(
            HintCode::PolicyInOtherNamespace,
            format!(
                "{} selects pods labelled {} and would allow this flow, but it lives in namespace {}, where no pod matches, and a policy applies only to pods of its own namespace: {} is in {}",
                policy_name(policy),
                policy.pod_selector,
                policy.namespace,
                pod_name(subject),
                subject.namespace
            ),
        );
    }
}
