//! A NetworkPolicy enforcer for the lab, written independently of the
//! agent's policy engine: it reads the cluster's objects (namespaces, pods,
//! NetworkPolicies, as a snapshot lists them) and writes the node's
//! nftables the way iptables/nftables enforcers (kube-router, Calico's
//! iptables mode) do — one chain per isolated pod and direction, an allow
//! rule per policy rule that `return`s, a counted `drop` at the end.
//!
//! Its rules see what the kernel sees: the packet after kube-proxy's DNAT
//! (a Service's target port, not its port), so a policy written against a
//! Service port fails here exactly as it fails in a cluster. It enforces on
//! routed traffic (the pods of a lab reach each other through Services or
//! the node), on the `forward`, `input` (egress to the node) and `output`
//! (the node's own connects, the kubelet's probes) hooks; replies pass by
//! conntrack (`ct state established,related accept`).
//!
//! What it implements of `networking.k8s.io/v1`: `podSelector`,
//! `namespaceSelector` (with `kubernetes.io/metadata.name`, which the API
//! server sets on every namespace), both together, `ipBlock` with
//! `except`, numeric and named ports, `endPort`, the three protocols, and
//! `policyTypes` with their defaults. Counters of the drop rules are named
//! after their chains ([`Enforcer::dropped`]).

mod objects;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use self::objects::Direction;
use self::objects::{Pod, Policy, applies_to, family, ip_block, labels, pod, rule_list, selects};
use super::Nft;

/// The nftables table the enforcer owns (shared with [`Nft::counter`]).
pub const TABLE: &str = "enforcer";

/// The cluster's objects as the enforcer reads them.
#[derive(Clone, Debug, Default)]
pub struct Enforcer {
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pods: Vec<Pod>,
    policies: Vec<Policy>,
}

/// One allow rule: the peer addresses (`None` = any), the ports (`None` =
/// any protocol and port).
struct Allow {
    peers: Option<Vec<String>>,
    ports: Option<Vec<String>>,
}

impl Enforcer {
    /// Reads namespaces, pods and NetworkPolicies out of `items` (other
    /// kinds are ignored).
    pub fn from_items(items: &[Value]) -> Result<Self> {
        let mut enforcer = Self::default();
        for item in items {
            let kind = item["kind"].as_str().unwrap_or_default();
            let metadata = &item["metadata"];
            let name = metadata["name"].as_str().unwrap_or_default().to_owned();
            let namespace = metadata["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match kind {
                "Namespace" => {
                    let mut labels = labels(&metadata["labels"]);
                    labels.insert("kubernetes.io/metadata.name".into(), name.clone());
                    enforcer.namespaces.insert(name, labels);
                }
                "Pod" => enforcer.pods.push(pod(item, namespace, name)?),
                "NetworkPolicy" => enforcer.policies.push(Policy {
                    namespace,
                    name,
                    spec: item["spec"].clone(),
                }),
                _ => {}
            }
        }
        Ok(enforcer)
    }

    /// Adds (or replaces, by namespace and name) a NetworkPolicy object.
    pub fn apply_policy(&mut self, object: &Value) -> Result<()> {
        let metadata = &object["metadata"];
        let name = metadata["name"]
            .as_str()
            .context("a NetworkPolicy without metadata.name")?
            .to_owned();
        let namespace = metadata["namespace"]
            .as_str()
            .context("a NetworkPolicy without metadata.namespace")?
            .to_owned();
        if object["kind"] != "NetworkPolicy" {
            bail!(
                "{namespace}/{name} is a {}, not a NetworkPolicy",
                object["kind"]
            );
        }
        self.policies.retain(|policy| {
            (policy.namespace.as_str(), policy.name.as_str()) != (&namespace, &name)
        });
        self.policies.push(Policy {
            namespace,
            name,
            spec: object["spec"].clone(),
        });
        Ok(())
    }

    /// The policies, as `namespace/name`, in the order they were read.
    pub fn policy_names(&self) -> Vec<String> {
        self.policies
            .iter()
            .map(|policy| format!("{}/{}", policy.namespace, policy.name))
            .collect()
    }

    /// The nftables script that replaces the enforcer's table with the
    /// rules these objects call for.
    pub fn ruleset(&self) -> String {
        let mut chains = String::new();
        // Egress jumps before ingress ones in every hook, as a packet leaves
        // one pod before it reaches the other: (hook, 0 | 1) → rules.
        let mut jumps: BTreeMap<(&str, u8), Vec<String>> = BTreeMap::new();
        let mut counters = Vec::new();
        for pod in &self.pods {
            for direction in [Direction::Egress, Direction::Ingress] {
                let selecting = self.selecting(pod, direction);
                if selecting.is_empty() {
                    continue;
                }
                let chain = Self::chain_name(direction, &pod.namespace, &pod.name);
                let _ = writeln!(chains, "  chain {chain} {{");
                for policy in selecting {
                    for (index, rule) in rule_list(&policy.spec, direction).iter().enumerate() {
                        for allow in self.allows(policy, rule, direction) {
                            for line in allow.lines(direction) {
                                let _ = writeln!(
                                    chains,
                                    "    {line} return comment \"{}/{} {}[{index}]\"",
                                    policy.namespace,
                                    policy.name,
                                    direction.word()
                                );
                            }
                        }
                    }
                }
                let _ = writeln!(chains, "    counter name {chain} drop\n  }}");
                counters.push(chain.clone());
                let hooks: &[&str] = match direction {
                    Direction::Egress => &["forward", "input"],
                    Direction::Ingress => &["forward", "output"],
                };
                let order = u8::from(direction == Direction::Ingress);
                for ip in &pod.ips {
                    for hook in hooks {
                        jumps.entry((hook, order)).or_default().push(format!(
                            "{} {} {ip} jump {chain}",
                            family(*ip),
                            direction.own_address()
                        ));
                    }
                }
            }
        }
        let mut script =
            format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
        for counter in &counters {
            let _ = writeln!(script, "  counter {counter} {{}}");
        }
        script.push_str(&chains);
        for hook in ["forward", "input", "output"] {
            let _ = writeln!(
                script,
                "  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n    ct state established,related accept"
            );
            let ordered = [0, 1]
                .into_iter()
                .flat_map(|order| jumps.get(&(hook, order)).into_iter().flatten());
            for jump in ordered {
                let _ = writeln!(script, "    {jump}");
            }
            script.push_str("  }\n");
        }
        script.push_str("}\n");
        script
    }

    /// Loads [`Self::ruleset`] into the node's nftables (atomically: the
    /// old table goes in the same transaction).
    pub fn enforce(&self, nft: &Nft<'_>) -> Result<()> {
        nft.apply(&self.ruleset())
    }

    /// The chain (and drop counter) of a pod's direction:
    /// `egress_shop_cart`.
    pub fn chain_name(direction: Direction, namespace: &str, pod: &str) -> String {
        let clean = |text: &str| -> String {
            text.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        format!("{}_{}_{}", direction.word(), clean(namespace), clean(pod))
    }

    /// Packets the drop rule of a pod's direction dropped so far (0 when the
    /// pod is not isolated in that direction).
    pub fn dropped(nft: &Nft<'_>, direction: Direction, namespace: &str, pod: &str) -> Result<u64> {
        let chain = Self::chain_name(direction, namespace, pod);
        Ok(nft.counter(&chain).unwrap_or(0))
    }

    /// The policies that isolate `pod` in `direction`.
    fn selecting(&self, pod: &Pod, direction: Direction) -> Vec<&Policy> {
        self.policies
            .iter()
            .filter(|policy| policy.namespace == pod.namespace)
            .filter(|policy| applies_to(&policy.spec, direction))
            .filter(|policy| selects(&policy.spec["podSelector"], &pod.labels))
            .collect()
    }

    /// The chains (and drop counters) of every isolated pod direction.
    pub fn chains(&self) -> Vec<String> {
        let mut chains = Vec::new();
        for pod in &self.pods {
            for direction in [Direction::Egress, Direction::Ingress] {
                if !self.selecting(pod, direction).is_empty() {
                    chains.push(Self::chain_name(direction, &pod.namespace, &pod.name));
                }
            }
        }
        chains
    }

    /// Packets every drop rule dropped so far.
    pub fn dropped_total(&self, nft: &Nft<'_>) -> Result<u64> {
        self.chains().iter().map(|chain| nft.counter(chain)).sum()
    }

    /// The allow rules one policy rule makes for the pods it selects.
    fn allows(&self, policy: &Policy, rule: &Value, direction: Direction) -> Vec<Allow> {
        let peers = match rule.get(direction.peers_field()).and_then(Value::as_array) {
            Some(list) if !list.is_empty() => Some(list.as_slice()),
            _ => None,
        };
        let ports = match rule.get("ports").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => Some(list.as_slice()),
            _ => None,
        };
        // Peer addresses, and for named ports the pods they resolve on.
        let peer_pods: Option<Vec<&Pod>> = peers.map(|peers| {
            peers
                .iter()
                .flat_map(|peer| self.peer_pods(&policy.namespace, peer))
                .collect()
        });
        let blocks: Vec<String> = peers
            .into_iter()
            .flatten()
            .filter_map(|peer| ip_block(peer.get("ipBlock")?))
            .collect();
        let Some(ports) = ports else {
            let peers = peer_pods.map(|pods| {
                let mut peers: Vec<String> = pods
                    .iter()
                    .flat_map(|pod| pod.ips.iter().map(IpAddr::to_string))
                    .collect();
                peers.extend(blocks.iter().cloned());
                peers
            });
            return vec![Allow { peers, ports: None }];
        };
        let mut allows = Vec::new();
        for port in ports {
            let protocol = port["protocol"]
                .as_str()
                .unwrap_or("TCP")
                .to_ascii_lowercase();
            match &port["port"] {
                Value::String(name) => {
                    // A named port: the number each destination pod gives it.
                    let destinations: Vec<&Pod> = match direction {
                        Direction::Ingress => self
                            .pods
                            .iter()
                            .filter(|pod| pod.namespace == policy.namespace)
                            .filter(|pod| selects(&policy.spec["podSelector"], &pod.labels))
                            .collect(),
                        Direction::Egress => match &peer_pods {
                            Some(pods) => pods.clone(),
                            None => self.pods.iter().collect(),
                        },
                    };
                    let mut by_number: BTreeMap<u16, Vec<String>> = BTreeMap::new();
                    for pod in destinations {
                        for (port_protocol, number) in
                            pod.named_ports.get(name).into_iter().flatten()
                        {
                            if port_protocol.eq_ignore_ascii_case(&protocol) {
                                by_number
                                    .entry(*number)
                                    .or_default()
                                    .extend(pod.ips.iter().map(IpAddr::to_string));
                            }
                        }
                    }
                    for (number, ips) in by_number {
                        let match_port = format!("{protocol} dport {number}");
                        let peers = match direction {
                            // Ingress: the peers are the sources, the named
                            // port is the selected pod's (always these).
                            Direction::Ingress => peer_pods.as_ref().map(|pods| {
                                let mut peers: Vec<String> = pods
                                    .iter()
                                    .flat_map(|pod| pod.ips.iter().map(IpAddr::to_string))
                                    .collect();
                                peers.extend(blocks.iter().cloned());
                                peers
                            }),
                            Direction::Egress => Some(ips),
                        };
                        allows.push(Allow {
                            peers,
                            ports: Some(vec![match_port]),
                        });
                    }
                }
                other => {
                    let match_port = match (other.as_u64(), port["endPort"].as_u64()) {
                        (Some(first), Some(last)) => format!("{protocol} dport {first}-{last}"),
                        (Some(number), None) => format!("{protocol} dport {number}"),
                        // No port: every port of the protocol.
                        (None, _) => format!("meta l4proto {protocol}"),
                    };
                    let peers = peer_pods.as_ref().map(|pods| {
                        let mut peers: Vec<String> = pods
                            .iter()
                            .flat_map(|pod| pod.ips.iter().map(IpAddr::to_string))
                            .collect();
                        peers.extend(blocks.iter().cloned());
                        peers
                    });
                    allows.push(Allow {
                        peers,
                        ports: Some(vec![match_port]),
                    });
                }
            }
        }
        allows
    }

    /// The pods one `from`/`to` entry matches (none for an `ipBlock`).
    fn peer_pods(&self, policy_namespace: &str, peer: &Value) -> Vec<&Pod> {
        let pod_selector = peer.get("podSelector");
        let namespace_selector = peer.get("namespaceSelector");
        if pod_selector.is_none() && namespace_selector.is_none() {
            return Vec::new();
        }
        self.pods
            .iter()
            .filter(|pod| match namespace_selector {
                Some(selector) => self
                    .namespaces
                    .get(&pod.namespace)
                    .is_some_and(|labels| selects(selector, labels)),
                None => pod.namespace == policy_namespace,
            })
            .filter(|pod| pod_selector.is_none_or(|selector| selects(selector, &pod.labels)))
            .collect()
    }
}

impl Allow {
    /// The rule lines (without the verdict) of this allow: one per address
    /// family of its peers, or one when it has none. An allow whose peers
    /// matched nothing allows nothing and has no line.
    fn lines(&self, direction: Direction) -> Vec<String> {
        let ports = self.ports.as_ref().map(|ports| ports.join(" "));
        let with_ports = |head: String| match &ports {
            Some(ports) if head.is_empty() => ports.clone(),
            Some(ports) => format!("{head} {ports}"),
            None => head,
        };
        let Some(peers) = &self.peers else {
            let line = with_ports(String::new());
            return vec![if line.is_empty() {
                "meta nfproto { ipv4, ipv6 }".into()
            } else {
                line
            }];
        };
        let mut lines = Vec::new();
        for (family, filter) in [("ip", false), ("ip6", true)] {
            let mut included = Vec::new();
            let mut excepted = Vec::new();
            for peer in peers {
                let is_v6 = peer.contains(':');
                if is_v6 != filter {
                    continue;
                }
                match peer.split_once(" except ") {
                    Some((cidr, except)) => {
                        // An ipBlock with exceptions gets a line of its own.
                        excepted.push(format!(
                            "{family} {field} {cidr} {family} {field} != {{ {except} }}",
                            field = direction.peer_address()
                        ));
                    }
                    None => included.push(peer.clone()),
                }
            }
            if !included.is_empty() {
                let set: BTreeSet<&String> = included.iter().collect();
                let set: Vec<&str> = set.into_iter().map(String::as_str).collect();
                lines.push(with_ports(format!(
                    "{family} {} {{ {} }}",
                    direction.peer_address(),
                    set.join(", ")
                )));
            }
            lines.extend(excepted.into_iter().map(with_ports));
        }
        lines
    }
}
