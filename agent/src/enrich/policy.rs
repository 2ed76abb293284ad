//! NetworkPolicies as the store keeps them: selectors pre-compiled into
//! sorted requirements, ports parsed, CIDRs parsed, `policyTypes`
//! defaulted. Receives a k8s-openapi `NetworkPolicy`, emits a [`Policy`] or
//! an error naming the field. The meaning of these types (what matches
//! what) lives in `explain`.

use std::{fmt, sync::Arc};

use ipnet::IpNet;
use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{
    Error,
    object::{Interner, Key, Labels, Str, meta_key, parse_port, parse_protocol},
};
use crate::model::Protocol;

/// A label selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// The label is set to one of the values (`matchLabels` is `In` one value).
    In,
    /// The label is unset or set to none of the values.
    NotIn,
    /// The label is set.
    Exists,
    /// The label is unset.
    DoesNotExist,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Label key.
    pub key: Str,
    /// Operator.
    pub operator: Operator,
    /// Values, sorted (empty for `Exists` / `DoesNotExist`).
    pub values: Box<[Str]>,
    /// True when it came from `matchLabels`.
    pub from_match_labels: bool,
}

impl Requirement {
    /// True when the requirement holds: `In` needs the label set to a
    /// listed value; `NotIn` holds when it is unset or set to an unlisted
    /// one; `Exists` / `DoesNotExist` test presence.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        let listed = |value: &str| {
            self.values
                .binary_search_by(|candidate| candidate.as_ref().cmp(value))
                .is_ok()
        };
        match self.operator {
            Operator::In => value.is_some_and(listed),
            Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A compiled label selector: all requirements must hold. No requirement
/// (`{}`) selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Requirements, sorted by key.
    pub requirements: Box<[Requirement]>,
}

impl Selector {
    /// True for `{}`: selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when every requirement holds (`{}` selects everything).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }

    /// The first `key=value` equality, if any: what indexes use.
    pub fn first_equality(&self) -> Option<(&Str, &Str)> {
        self.requirements
            .iter()
            .find(|requirement| {
                requirement.operator == Operator::In && requirement.values.len() == 1
            })
            .map(|requirement| (&requirement.key, &requirement.values[0]))
    }

    /// Compiles an API selector; `field` names it in errors.
    pub fn compile(
        selector: &LabelSelector,
        field: &str,
        interner: &mut Interner,
    ) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: interner.get(key),
                operator: Operator::In,
                values: Box::new([interner.get(value)]),
                from_match_labels: true,
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("{field}.matchExpressions[{index}]");
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(format!("{field}.operator: unknown operator {other:?}")),
            };
            let mut values: Vec<Str> = expression
                .values
                .iter()
                .flatten()
                .map(|value| interner.get(value))
                .collect();
            values.sort();
            values.dedup();
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(format!(
                        "{field}.values: must be non-empty for {operator:?}"
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(format!("{field}.values: must be empty for {operator:?}"));
                }
                _ => {}
            }
            requirements.push(Requirement {
                key: interner.get(&expression.key),
                operator,
                values: values.into_boxed_slice(),
                from_match_labels: false,
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements: requirements.into_boxed_slice(),
        })
    }
}

impl fmt::Display for Selector {
    /// kubectl's notation: `app=api,tier in (a,b),!legacy`; `{}` for empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let key = &requirement.key;
            let values = requirement.values.join(",");
            match requirement.operator {
                Operator::In if requirement.values.len() == 1 => write!(f, "{key}={values}")?,
                Operator::In => write!(f, "{key} in ({values})")?,
                Operator::NotIn => write!(f, "{key} notin ({values})")?,
                Operator::Exists => write!(f, "{key}")?,
                Operator::DoesNotExist => write!(f, "!{key}")?,
            }
        }
        Ok(())
    }
}

/// A peer of a rule (`from` / `to` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Pods chosen by selectors.
    Pods {
        /// `namespaceSelector`; `None` means the policy's own namespace.
        namespaces: Option<Selector>,
        /// `podSelector`; `None` means every pod of those namespaces.
        pods: Option<Selector>,
    },
    /// An `ipBlock`.
    IpBlock {
        /// The range.
        cidr: IpNet,
        /// Ranges taken out of it.
        except: Box<[IpNet]>,
    },
}

/// Which ports a port entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// Every port of the protocol (`port` unset).
    Any,
    /// `port`, or `port`..=`endPort`.
    Range(u16, u16),
    /// A named container port of the destination pod.
    Named(Str),
}

/// A port entry of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// Protocol (TCP when unset).
    pub protocol: Protocol,
    /// Ports.
    pub port: PortMatch,
}

impl fmt::Display for PortRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortMatch::Any => write!(f, "{}/*", self.protocol),
            PortMatch::Range(start, end) if start == end => write!(f, "{}/{start}", self.protocol),
            PortMatch::Range(start, end) => write!(f, "{}/{start}-{end}", self.protocol),
            PortMatch::Named(name) => write!(f, "{}/{name}", self.protocol),
        }
    }
}

/// One ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Peers; empty matches every peer.
    pub peers: Box<[Peer]>,
    /// Ports; empty matches every port.
    pub ports: Box<[PortRule]>,
}

/// A NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Namespace.
    pub namespace: Str,
    /// Name.
    pub name: Str,
    /// `spec.podSelector` (pods of the policy's namespace).
    pub pod_selector: Selector,
    /// Ingress in `policyTypes` (after defaulting).
    pub affects_ingress: bool,
    /// Egress in `policyTypes` (after defaulting).
    pub affects_egress: bool,
    /// `spec.ingress`.
    pub ingress: Box<[Rule]>,
    /// `spec.egress`.
    pub egress: Box<[Rule]>,
}

impl Policy {
    /// Its key.
    pub fn key(&self) -> Key {
        Key {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

fn peer(peer: &NetworkPolicyPeer, field: &str, interner: &mut Interner) -> Result<Peer, String> {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Err(format!(
                "{field}: ipBlock cannot be combined with podSelector or namespaceSelector"
            ));
        }
        let cidr: IpNet = block
            .cidr
            .parse()
            .map_err(|error| format!("{field}.ipBlock.cidr: {:?}: {error}", block.cidr))?;
        let mut except = Vec::new();
        for (index, entry) in block.except.iter().flatten().enumerate() {
            let net: IpNet = entry
                .parse()
                .map_err(|error| format!("{field}.ipBlock.except[{index}]: {entry:?}: {error}"))?;
            except.push(net);
        }
        return Ok(Peer::IpBlock {
            cidr: cidr.trunc(),
            except: except.into_iter().map(|net| net.trunc()).collect(),
        });
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return Err(format!(
            "{field}: a peer must set podSelector, namespaceSelector or ipBlock"
        ));
    }
    let namespaces = peer
        .namespace_selector
        .as_ref()
        .map(|selector| {
            Selector::compile(selector, &format!("{field}.namespaceSelector"), interner)
        })
        .transpose()?;
    let pods = peer
        .pod_selector
        .as_ref()
        .map(|selector| Selector::compile(selector, &format!("{field}.podSelector"), interner))
        .transpose()?;
    Ok(Peer::Pods { namespaces, pods })
}

fn port(
    port: &NetworkPolicyPort,
    field: &str,
    interner: &mut Interner,
) -> Result<PortRule, String> {
    let protocol = parse_protocol(port.protocol.as_deref(), &format!("{field}.protocol"))?;
    let named = |name: &str, interner: &mut Interner| -> Result<PortMatch, String> {
        if port.end_port.is_some() {
            return Err(format!("{field}.endPort: may not be set with a named port"));
        }
        Ok(PortMatch::Named(interner.get(name)))
    };
    let number = |start: i32| -> Result<PortMatch, String> {
        let start = parse_port(start, &format!("{field}.port"))?;
        let end = match port.end_port {
            None => start,
            Some(end) => parse_port(end, &format!("{field}.endPort"))?,
        };
        if end < start {
            return Err(format!("{field}.endPort: {end} is below port {start}"));
        }
        Ok(PortMatch::Range(start, end))
    };
    let matched = match &port.port {
        None if port.end_port.is_some() => {
            return Err(format!("{field}.endPort: requires port"));
        }
        None => PortMatch::Any,
        Some(IntOrString::Int(start)) => number(*start)?,
        Some(IntOrString::String(value)) => match value.parse::<i32>() {
            Ok(start) => number(start)?,
            Err(_) => named(value, interner)?,
        },
    };
    Ok(PortRule {
        protocol,
        port: matched,
    })
}

fn rule(
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    field: &str,
    peer_field: &str,
    interner: &mut Interner,
) -> Result<Rule, String> {
    let peers = peers
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, entry)| peer(entry, &format!("{field}.{peer_field}[{index}]"), interner))
        .collect::<Result<_, _>>()?;
    let ports = ports
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, entry)| port(entry, &format!("{field}.ports[{index}]"), interner))
        .collect::<Result<_, _>>()?;
    Ok(Rule { peers, ports })
}

/// Strips and compiles a NetworkPolicy.
///
/// `policyTypes` defaults as the API server does: Ingress always, plus
/// Egress when the policy has at least one egress rule.
pub fn policy(object: &NetworkPolicy, interner: &mut Interner) -> Result<Policy, Error> {
    let key = meta_key("NetworkPolicy", &object.metadata, true, interner)?;
    let invalid = |reason: String| Error::Invalid {
        kind: "NetworkPolicy",
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        reason,
    };
    let default_spec = Default::default();
    let spec = object.spec.as_ref().unwrap_or(&default_spec);
    let pod_selector = match &spec.pod_selector {
        None => Selector::default(),
        Some(selector) => {
            Selector::compile(selector, "spec.podSelector", interner).map_err(invalid)?
        }
    };
    let ingress = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, entry)| {
            rule(
                entry.from.as_ref(),
                entry.ports.as_ref(),
                &format!("spec.ingress[{index}]"),
                "from",
                interner,
            )
        })
        .collect::<Result<Box<[Rule]>, _>>()
        .map_err(invalid)?;
    let egress = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, entry)| {
            rule(
                entry.to.as_ref(),
                entry.ports.as_ref(),
                &format!("spec.egress[{index}]"),
                "to",
                interner,
            )
        })
        .collect::<Result<Box<[Rule]>, _>>()
        .map_err(invalid)?;
    let (affects_ingress, affects_egress) = match spec.policy_types.as_deref() {
        None | Some([]) => (true, !egress.is_empty()),
        Some(types) => {
            let mut ingress = false;
            let mut egress = false;
            for (index, kind) in types.iter().enumerate() {
                match kind.as_str() {
                    "Ingress" => ingress = true,
                    "Egress" => egress = true,
                    other => {
                        return Err(invalid(format!(
                            "spec.policyTypes[{index}]: unknown policy type {other:?}"
                        )));
                    }
                }
            }
            (ingress, egress)
        }
    };
    Ok(Policy {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        pod_selector,
        affects_ingress,
        affects_egress,
        ingress,
        egress,
    })
}

/// A shared policy.
pub type PolicyArc = Arc<Policy>;
