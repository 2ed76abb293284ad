//! The closest miss: among the rules of the policies that deny a flow,
//! the one that came closest to allowing it (most of peer and port
//! matched), and one sentence saying why it missed. Receives the checked
//! [`Facts`]; emits the rule and the sentence.

use super::{Facts, peer::PeerMiss, port::PortMiss, verdict::RuleCheck};
use crate::model::Direction;

/// The rule closest to allowing the flow in the denied directions: most
/// of (peer, port) matched; ties go to the first (egress before ingress,
/// policies by name, rules in order).
pub fn closest<'f, 'a>(facts: &'f Facts<'a>) -> Option<(Direction, &'f RuleCheck<'a>)> {
    let mut best: Option<(u8, Direction, &RuleCheck<'a>)> = None;
    for check in [&facts.egress, &facts.ingress] {
        if check.allowed() {
            continue;
        }
        for rule in &check.rules {
            let score = u8::from(rule.peers.matched) + u8::from(rule.ports.matched);
            if best.is_none_or(|(best_score, _, _)| score > best_score) {
                best = Some((score, check.direction, rule));
            }
        }
    }
    best.map(|(_, direction, rule)| (direction, rule))
}

/// One sentence for a peer miss; `other` is the end the peer was checked on.
pub fn describe_peer(facts: &Facts<'_>, direction: Direction, miss: &PeerMiss<'_>) -> String {
    let (end, identity) = facts.other_end(direction);
    match miss {
        PeerMiss::NotAPod => format!(
            "selectors match only pods, and {identity} ({}) is not one that selectors can match (only an ipBlock can)",
            end.ip
        ),
        PeerMiss::OtherNamespace { policy_namespace } => format!(
            "a podSelector without namespaceSelector selects pods of {policy_namespace} only, and {identity} is in {}",
            end.pod
                .map(|pod| pod.namespace.to_string())
                .unwrap_or_default()
        ),
        PeerMiss::NamespaceNotSelected { selector } => {
            let namespace = end
                .pod
                .map(|pod| pod.namespace.to_string())
                .unwrap_or_default();
            let labels = facts
                .view
                .namespace(&namespace)
                .map(|found| found.labels.to_string())
                .unwrap_or_else(|| "<unknown>".into());
            format!(
                "namespaceSelector {selector} does not select namespace {namespace} (labels {labels})"
            )
        }
        PeerMiss::PodNotSelected { selector, .. } => format!(
            "podSelector {selector} does not select {identity} (labels {})",
            end.pod
                .map(|pod| pod.labels.to_string())
                .unwrap_or_default()
        ),
        PeerMiss::IpNotCovered { cidr } => format!("ipBlock {cidr} does not cover {}", end.ip),
        PeerMiss::IpExcepted { cidr, except } => {
            format!(
                "ipBlock {cidr} covers {} but its except {except} removes it",
                end.ip
            )
        }
    }
}

/// One sentence for a port miss.
pub fn describe_port(facts: &Facts<'_>, miss: &PortMiss<'_>) -> String {
    let packet = format!("{}/{}", facts.protocol, facts.port);
    let destination = &facts.destination_identity;
    match miss {
        PortMiss::Protocol { rule } => format!("port {rule} is not {packet}"),
        PortMiss::Number { rule } => format!("port {rule} does not include {packet}"),
        PortMiss::NamedUnresolved { rule } => format!(
            "named port {rule} is not a {} container port of {destination}",
            facts.protocol
        ),
        PortMiss::NamedOther { rule, resolved } => {
            format!("named port {rule} is {resolved} on {destination}, the packet is {packet}")
        }
    }
}

/// Why a rule did not allow the flow, one sentence.
pub fn why(facts: &Facts<'_>, direction: Direction, rule: &RuleCheck<'_>) -> String {
    let mut parts = Vec::new();
    if !rule.peers.matched {
        let peers: Vec<String> = rule
            .peers
            .misses
            .iter()
            .take(3)
            .map(|(index, miss)| {
                let field = if direction == Direction::Ingress {
                    "from"
                } else {
                    "to"
                };
                format!(
                    "{field}[{index}]: {}",
                    describe_peer(facts, direction, miss)
                )
            })
            .collect();
        parts.push(peers.join("; "));
    }
    if !rule.ports.matched {
        let ports: Vec<String> = rule
            .ports
            .misses
            .iter()
            .take(3)
            .map(|miss| describe_port(facts, miss))
            .collect();
        parts.push(ports.join("; "));
    }
    let mut why = parts.join("; and ");
    if rule.peers.matched {
        why.insert_str(0, "the peer matches but ");
    } else if rule.ports.matched {
        why.push_str(" (the port matches)");
    }
    why
}
