//! Isolation and the per-direction verdict. A pod is isolated for a
//! direction when some policy of its namespace selects it (`podSelector`)
//! and has that direction in `policyTypes`; then the flow passes that
//! direction only if some rule of some of those policies (their union)
//! matches both a peer and a port. A pod no policy selects for a direction
//! is not isolated: everything passes. Host-network pods are never
//! isolated. Receives the view, the isolated-candidate pod and the other
//! end; emits every rule's outcome (for reports, closest miss and hints).
//! The candidate policies come from the namespace's index by podSelector
//! equality (`View::policies_maybe_selecting`), in name order, each still
//! checked by its selector: the cost follows the policies that may select
//! the pod, not how many the namespace holds.

use std::sync::Arc;

use super::{
    peer::{self, PeerEnd, PeerOutcome},
    port::{self, PortOutcome},
    selector,
};
use crate::{
    enrich::view::{Pod, Policy, Rule, View},
    model::{Direction, Protocol},
};

/// One rule of an isolating policy, checked against the flow.
#[derive(Clone, Debug)]
pub struct RuleCheck<'a> {
    /// The policy.
    pub policy: &'a Arc<Policy>,
    /// Index in its `ingress` / `egress` list.
    pub index: usize,
    /// Its peers' outcome.
    pub peers: PeerOutcome<'a>,
    /// Its ports' outcome.
    pub ports: PortOutcome<'a>,
}

impl RuleCheck<'_> {
    /// True when the rule allows the flow.
    pub fn allows(&self) -> bool {
        self.peers.matched && self.ports.matched
    }
}

/// One direction of the flow, checked.
#[derive(Clone, Debug)]
pub struct DirectionCheck<'a> {
    /// Ingress (at the destination) or egress (at the source).
    pub direction: Direction,
    /// The pod whose policies apply (None: that end is not a pod policies
    /// can isolate).
    pub pod: Option<&'a Pod>,
    /// The policies that select the pod for this direction, by name.
    pub policies: Vec<&'a Arc<Policy>>,
    /// Every rule of those policies.
    pub rules: Vec<RuleCheck<'a>>,
}

impl DirectionCheck<'_> {
    /// True when the pod is isolated for this direction.
    pub fn isolated(&self) -> bool {
        !self.policies.is_empty()
    }

    /// True when the direction lets the flow through.
    pub fn allowed(&self) -> bool {
        !self.isolated() || self.rules.iter().any(RuleCheck::allows)
    }
}

/// The rules of a policy for a direction.
pub fn rules(policy: &Policy, direction: Direction) -> &[Rule] {
    match direction {
        Direction::Ingress => &policy.ingress,
        Direction::Egress => &policy.egress,
    }
}

/// True when the policy has this direction in its (defaulted) policyTypes.
pub fn affects(policy: &Policy, direction: Direction) -> bool {
    match direction {
        Direction::Ingress => policy.affects_ingress,
        Direction::Egress => policy.affects_egress,
    }
}

/// The packet as a rule sees it.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Destination port (post-DNAT).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// The destination pod (named ports resolve on it).
    pub destination: Option<&'a Pod>,
}

/// Checks one rule, its peers evaluated as if the policy lived in
/// `policy_namespace`.
pub fn check_rule<'a>(
    view: &View<'_>,
    policy: &'a Arc<Policy>,
    policy_namespace: &'a str,
    index: usize,
    rule: &'a Rule,
    other: &PeerEnd<'_>,
    packet: &Packet<'_>,
) -> RuleCheck<'a> {
    RuleCheck {
        policy,
        index,
        peers: peer::check_all(view, policy_namespace, &rule.peers, other),
        ports: port::check_all(
            &rule.ports,
            packet.port,
            packet.protocol,
            packet.destination,
        ),
    }
}

/// Checks one direction: `pod` is the end whose policies apply (source for
/// egress, destination for ingress), `other` the opposite end.
pub fn check<'a>(
    view: &View<'a>,
    direction: Direction,
    pod: Option<&'a Pod>,
    other: &PeerEnd<'_>,
    packet: &Packet<'_>,
) -> DirectionCheck<'a> {
    let pod = pod.filter(|pod| !pod.host_network);
    let mut check = DirectionCheck {
        direction,
        pod,
        policies: Vec::new(),
        rules: Vec::new(),
    };
    let Some(subject) = pod else {
        return check;
    };
    for policy in view.policies_maybe_selecting(&subject.namespace, &subject.labels) {
        if !affects(policy, direction) || !selector::matches(&policy.pod_selector, &subject.labels)
        {
            continue;
        }
        check.policies.push(policy);
        for (index, rule) in rules(policy, direction).iter().enumerate() {
            check.rules.push(check_rule(
                view,
                policy,
                &policy.namespace,
                index,
                rule,
                other,
                packet,
            ));
        }
    }
    check
}
