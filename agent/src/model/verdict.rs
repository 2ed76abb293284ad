//! What NetworkPolicy would do with a flow, and why: the verdict, the
//! policies involved per direction, the rule that came closest, hints that
//! name the trap, and a suggested policy. `explain` makes these; sinks and
//! `print` receive them. No I/O here.

use std::{fmt, net::IpAddr};

use super::{identity::Identity, tuple::Protocol};

/// The NetworkPolicy verdict for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Both the source's egress and the destination's ingress allow it.
    Allow,
    /// The source is isolated for egress and no egress rule allows it.
    DenyEgress,
    /// The destination is isolated for ingress and no ingress rule allows it.
    DenyIngress,
    /// Both directions deny it.
    DenyBoth,
}

impl Verdict {
    /// The verdict for the two directions' results.
    pub fn of(egress_allowed: bool, ingress_allowed: bool) -> Self {
        match (egress_allowed, ingress_allowed) {
            (true, true) => Self::Allow,
            (false, true) => Self::DenyEgress,
            (true, false) => Self::DenyIngress,
            (false, false) => Self::DenyBoth,
        }
    }

    /// True for [`Verdict::Allow`].
    pub fn is_allow(self) -> bool {
        self == Self::Allow
    }

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::DenyEgress => "deny_egress",
            Self::DenyIngress => "deny_ingress",
            Self::DenyBoth => "deny_both",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic into the selected pod.
    Ingress,
    /// Traffic out of the selected pod.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// A NetworkPolicy by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One rule of a policy: `spec.ingress[rule]` or `spec.egress[rule]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The policy.
    pub policy: PolicyRef,
    /// Index in the policy's `ingress` or `egress` list.
    pub rule: usize,
}

/// The stable code of a hint: what trap the flow fell into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HintCode {
    /// Egress denied to DNS: no rule allows UDP/TCP 53 to kube-dns.
    DnsEgressDenied,
    /// A rule allows the Service port while the packet, after DNAT, is on
    /// the backend's target port: policies match post-DNAT ports.
    ServicePortNotTargetPort,
    /// An ipBlock covers the Service VIP, but policies see the backend
    /// address after DNAT.
    IpBlockIsServiceIp,
    /// A kubelet probe from the destination's own node is blocked by an
    /// ingress policy that allows only pods.
    KubeletProbeBlocked,
    /// The source is a node address (or a host-network pod), which pod and
    /// namespace selectors never match.
    NodeSourceNotSelectable,
    /// A podSelector in a peer matches no pod.
    SelectorMatchesNoPod,
    /// A policy's own podSelector matches no pod, yet its rules would allow
    /// the flow.
    PolicySelectsNoPod,
    /// A namespaceSelector uses a label no namespace carries.
    NamespaceLabelMissing,
    /// A namespaceSelector matches no namespace.
    NamespaceSelectorMatchesNothing,
    /// A policy in another namespace selects pods with these labels and
    /// would allow the flow: it was probably meant for this namespace.
    PolicyInOtherNamespace,
    /// An ipBlock does not cover the address.
    IpBlockNotCovering,
    /// An ipBlock covers the address but an `except` entry removes it.
    IpBlockExcept,
    /// The peer matched but the port or protocol did not.
    PortMismatch,
    /// A named port does not resolve on the destination pod.
    NamedPortUnresolved,
    /// The pod is isolated by a policy without any rule in this direction.
    DefaultDeny,
    /// NetworkPolicy would allow the flow: the drop came from something else.
    PolicyAllows,
    /// Traffic from a pod to itself: never blocked by NetworkPolicy.
    TrafficToSelf,
    /// A host-network pod: NetworkPolicy does not isolate it.
    HostNetworkPod,
    /// The Service has no ready backend.
    ServiceWithoutEndpoints,
    /// An address the metadata store does not know.
    UnknownAddress,
    /// Objects that could decide the verdict were not loaded (invalid, or
    /// their kind could not be listed): the verdict is what the loaded
    /// objects say and may be wrong. Always the first hint when present.
    ExplanationIncomplete,
}

impl HintCode {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DnsEgressDenied => "dns_egress_denied",
            Self::ServicePortNotTargetPort => "service_port_not_target_port",
            Self::IpBlockIsServiceIp => "ip_block_is_service_ip",
            Self::KubeletProbeBlocked => "kubelet_probe_blocked",
            Self::NodeSourceNotSelectable => "node_source_not_selectable",
            Self::SelectorMatchesNoPod => "selector_matches_no_pod",
            Self::PolicySelectsNoPod => "policy_selects_no_pod",
            Self::NamespaceLabelMissing => "namespace_label_missing",
            Self::NamespaceSelectorMatchesNothing => "namespace_selector_matches_nothing",
            Self::PolicyInOtherNamespace => "policy_in_other_namespace",
            Self::IpBlockNotCovering => "ip_block_not_covering",
            Self::IpBlockExcept => "ip_block_except",
            Self::PortMismatch => "port_mismatch",
            Self::NamedPortUnresolved => "named_port_unresolved",
            Self::DefaultDeny => "default_deny",
            Self::PolicyAllows => "policy_allows",
            Self::TrafficToSelf => "traffic_to_self",
            Self::HostNetworkPod => "host_network_pod",
            Self::ServiceWithoutEndpoints => "service_without_endpoints",
            Self::UnknownAddress => "unknown_address",
            Self::ExplanationIncomplete => "explanation_incomplete",
        }
    }
}

impl fmt::Display for HintCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named trap and one readable sentence about this flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Stable code.
    pub code: HintCode,
    /// One sentence naming the objects involved.
    pub message: String,
}

/// One end of the flow: its address and who that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEnd {
    /// The address (post-DNAT for the destination).
    pub ip: IpAddr,
    /// Who it is.
    pub identity: Identity,
}

/// What one direction (the source's egress or the destination's ingress)
/// says about the flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionReport {
    /// `namespace/name` of the pod whose policies were evaluated; `None`
    /// when that end is not a pod that policies can isolate.
    pub pod: Option<String>,
    /// True when some policy selects the pod for this direction.
    pub isolated: bool,
    /// The policies that select the pod for this direction (at most
    /// `explain::bound::MAX_POLICIES`, no repeats).
    pub policies: Vec<PolicyRef>,
    /// Policies beyond those listed ("+N more").
    pub policies_unlisted: u64,
    /// The rules that allow the flow (any one is enough; at most
    /// `explain::bound::MAX_RULES`, no repeats).
    pub allowed_by: Vec<RuleRef>,
    /// Allowing rules beyond those listed ("+N more").
    pub allowed_by_unlisted: u64,
    /// True when this direction lets the flow through.
    pub allowed: bool,
}

/// The rule that came closest to allowing a denied flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosestMiss {
    /// The policy.
    pub policy: PolicyRef,
    /// `ingress` or `egress`.
    pub direction: Direction,
    /// Index in `spec.ingress` / `spec.egress`.
    pub rule: usize,
    /// True when a peer (`from`/`to`) of the rule matched.
    pub peer_matched: bool,
    /// True when a port entry of the rule matched.
    pub port_matched: bool,
    /// Why it missed, one sentence.
    pub why: String,
}

/// A kind of metadata an explanation used while its watch was failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleKind {
    /// The resource, as RBAC and `GetStatus` name it (`pods`,
    /// `networkpolicies`, …).
    pub kind: String,
    /// When its outage began: nothing of the kind changed after this is
    /// known.
    pub since: std::time::SystemTime,
}

/// An object the metadata store could not load that could decide a
/// flow's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SkippedObject {
    /// Its kind as the API names it (`NetworkPolicy`, `Namespace`, `Pod`, …).
    pub kind: String,
    /// Its namespace; empty for a Namespace, or when it named none.
    pub namespace: String,
    /// Its name; empty when it named none, or when no object of the kind
    /// could be listed at all.
    pub name: String,
    /// Why it was not loaded, naming the field.
    pub reason: String,
    /// How it could decide this verdict, one sentence.
    pub relevance: String,
}

impl fmt::Display for SkippedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() && self.namespace.is_empty() {
            write!(f, "every {}", self.kind)
        } else if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The whole answer for one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The verdict.
    pub verdict: Verdict,
    /// Where the flow came from.
    pub source: FlowEnd,
    /// Where it went (after DNAT).
    pub destination: FlowEnd,
    /// The Service it was sent to, when it went through one.
    pub service: Option<Identity>,
    /// Destination port (after DNAT).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// The source's egress.
    pub egress: DirectionReport,
    /// The destination's ingress.
    pub ingress: DirectionReport,
    /// For a denied flow, the rule that came closest.
    pub closest_miss: Option<ClosestMiss>,
    /// Named traps (at most `explain::bound::MAX_HINTS`, no repeats).
    pub hints: Vec<Hint>,
    /// Hints beyond those listed ("+N more").
    pub hints_unlisted: u64,
    /// For a denied flow, the smallest NetworkPolicy (YAML) that allows it.
    pub suggested_policy: Option<String>,
    /// Objects that could decide the verdict but were not loaded; when
    /// any is listed (or `incomplete_unlisted` is not 0) the verdict is
    /// what the loaded objects say and may be wrong.
    pub incomplete: Vec<SkippedObject>,
    /// Objects of a kind that could decide the verdict, skipped beyond
    /// what the store remembers by name.
    pub incomplete_unlisted: u64,
    /// Kinds whose watch was failing when this was made (an API server
    /// outage): their last known objects were used, and may have changed
    /// since. Empty when every kind was current, and on a snapshot.
    pub stale: Vec<StaleKind>,
}

impl Explanation {
    /// True when a hint with this code is present.
    pub fn has_hint(&self, code: HintCode) -> bool {
        self.hints.iter().any(|hint| hint.code == code)
    }

    /// True when every object that could decide the verdict was loaded.
    pub fn is_complete(&self) -> bool {
        self.incomplete.is_empty() && self.incomplete_unlisted == 0
    }
}
