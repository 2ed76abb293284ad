//! The objects the enforcer reads (pods, NetworkPolicies) and the
//! selector, direction and `ipBlock` rules of `networking.k8s.io/v1`.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Context, Result};
use serde_json::Value;

/// A NetworkPolicy direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic into the selected pods.
    Ingress,
    /// Traffic out of the selected pods.
    Egress,
}

impl Direction {
    pub(super) fn word(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    /// The policy field listing this direction's rules.
    pub(super) fn rules_field(self) -> &'static str {
        self.word()
    }

    /// The rule field listing its peers.
    pub(super) fn peers_field(self) -> &'static str {
        match self {
            Self::Ingress => "from",
            Self::Egress => "to",
        }
    }

    /// The header field that names the peer: the source of ingress, the
    /// destination of egress.
    pub(super) fn peer_address(self) -> &'static str {
        match self {
            Self::Ingress => "saddr",
            Self::Egress => "daddr",
        }
    }

    /// The header field that names the selected pod.
    pub(super) fn own_address(self) -> &'static str {
        match self {
            Self::Ingress => "daddr",
            Self::Egress => "saddr",
        }
    }
}

/// A pod the enforcer can select or match.
#[derive(Clone, Debug)]
pub(super) struct Pod {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) ips: Vec<IpAddr>,
    /// Container ports by name: (protocol, number).
    pub(super) named_ports: BTreeMap<String, Vec<(String, u16)>>,
}

/// A NetworkPolicy's parts the enforcer needs.
#[derive(Clone, Debug)]
pub(super) struct Policy {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) spec: Value,
}

/// `ip` or `ip6`.
pub(super) fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

/// An `ipBlock` as `CIDR` or `CIDR except A, B`.
pub(super) fn ip_block(block: &Value) -> Option<String> {
    let cidr = block["cidr"].as_str()?.to_owned();
    let except: Vec<&str> = block["except"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    Some(if except.is_empty() {
        cidr
    } else {
        format!("{cidr} except {}", except.join(", "))
    })
}

/// A label map.
pub(super) fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect()
}

/// A pod object: labels, IPs (`status.podIPs`, or `podIP`), container ports.
pub(super) fn pod(item: &Value, namespace: String, name: String) -> Result<Pod> {
    let status = &item["status"];
    let mut ips: Vec<IpAddr> = status["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["ip"].as_str()?.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status["podIP"].as_str()
    {
        ips.push(
            ip.parse()
                .with_context(|| format!("pod {namespace}/{name}: podIP {ip:?}"))?,
        );
    }
    let mut named_ports: BTreeMap<String, Vec<(String, u16)>> = BTreeMap::new();
    for container in item["spec"]["containers"].as_array().into_iter().flatten() {
        for port in container["ports"].as_array().into_iter().flatten() {
            let (Some(port_name), Some(number)) =
                (port["name"].as_str(), port["containerPort"].as_u64())
            else {
                continue;
            };
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
            named_ports
                .entry(port_name.to_owned())
                .or_default()
                .push((protocol, u16::try_from(number).unwrap_or(0)));
        }
    }
    Ok(Pod {
        namespace,
        name,
        labels: labels(&item["metadata"]["labels"]),
        ips,
        named_ports,
    })
}

/// Whether a policy restricts `direction`: `policyTypes` when given,
/// otherwise Ingress always and Egress when it has egress rules.
pub(super) fn applies_to(spec: &Value, direction: Direction) -> bool {
    match spec["policyTypes"].as_array() {
        Some(types) => types.iter().any(|kind| {
            kind.as_str()
                .is_some_and(|kind| kind.eq_ignore_ascii_case(direction.word()))
        }),
        None => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec.get("egress").is_some_and(|rules| !rules.is_null()),
        },
    }
}

/// The rules of one direction (none: the policy only isolates).
pub(super) fn rule_list(spec: &Value, direction: Direction) -> Vec<Value> {
    spec[direction.rules_field()]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A label selector against labels: `matchLabels` all equal and every
/// `matchExpressions` entry true; an empty selector selects everything.
pub(super) fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let exact = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key).map(String::as_str) == value.as_str());
    let expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|expression| {
            let key = expression["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let value = labels.get(key).map(String::as_str);
            match expression["operator"].as_str().unwrap_or_default() {
                "In" => value.is_some_and(|value| values.contains(&value)),
                "NotIn" => value.is_none_or(|value| !values.contains(&value)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // An operator the API server would have refused.
                _ => false,
            }
        });
    exact && expressions
}
