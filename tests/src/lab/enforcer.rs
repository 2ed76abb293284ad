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

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Nft;

/// The nftables table the enforcer owns (shared with [`Nft::counter`]).
pub const TABLE: &str = "enforcer";

/// A NetworkPolicy direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic into the selected pods.
    Ingress,
    /// Traffic out of the selected pods.
    Egress,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    /// The policy field listing this direction's rules.
    fn rules_field(self) -> &'static str {
        self.word()
    }

    /// The rule field listing its peers.
    fn peers_field(self) -> &'static str {
        match self {
            Self::Ingress => "from",
            Self::Egress => "to",
        }
    }

    /// The header field that names the peer: the source of ingress, the
    /// destination of egress.
    fn peer_address(self) -> &'static str {
        match self {
            Self::Ingress => "saddr",
            Self::Egress => "daddr",
        }
    }

    /// The header field that names the selected pod.
    fn own_address(self) -> &'static str {
        match self {
            Self::Ingress => "daddr",
            Self::Egress => "saddr",
        }
    }
}

/// A pod the enforcer can select or match.
#[derive(Clone, Debug)]
struct Pod {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
    /// Container ports by name: (protocol, number).
    named_ports: BTreeMap<String, Vec<(String, u16)>>,
}

/// A NetworkPolicy's parts the enforcer needs.
#[derive(Clone, Debug)]
struct Policy {
    namespace: String,
    name: String,
    spec: Value,
}

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

/// `ip` or `ip6`.
fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

/// An `ipBlock` as `CIDR` or `CIDR except A, B`.
fn ip_block(block: &Value) -> Option<String> {
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
fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect()
}

/// A pod object: labels, IPs (`status.podIPs`, or `podIP`), container ports.
fn pod(item: &Value, namespace: String, name: String) -> Result<Pod> {
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
fn applies_to(spec: &Value, direction: Direction) -> bool {
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
fn rule_list(spec: &Value, direction: Direction) -> Vec<Value> {
    spec[direction.rules_field()]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A label selector against labels: `matchLabels` all equal and every
/// `matchExpressions` entry true; an empty selector selects everything.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lab::Cluster;

    fn shop() -> Cluster {
        let mut cluster = Cluster::new();
        cluster
            .namespace("shop", &[])
            .namespace("kube-system", &[])
            .pod(
                "shop",
                "cart",
                "10.1.1.10".parse().expect("an address"),
                "n",
                &[("app", "cart")],
                &[],
            )
            .pod(
                "kube-system",
                "coredns",
                "10.1.1.11".parse().expect("an address"),
                "n",
                &[("k8s-app", "kube-dns")],
                &[("dns", 5353, "UDP")],
            );
        cluster
    }

    fn rules(cluster: &Cluster) -> String {
        Enforcer::from_items(cluster.items())
            .map(|enforcer| enforcer.ruleset())
            .unwrap_or_else(|error| error.to_string())
    }

    #[test]
    fn a_default_deny_egress_isolates_every_pod_of_its_namespace() {
        let mut cluster = shop();
        cluster.policy(
            "shop",
            "deny",
            json!({ "podSelector": {}, "policyTypes": ["Egress"] }),
        );
        let rules = rules(&cluster);
        assert!(
            rules.contains("ip saddr 10.1.1.10 jump egress_shop_cart"),
            "{rules}"
        );
        assert!(
            rules.contains("counter name egress_shop_cart drop"),
            "{rules}"
        );
        assert!(!rules.contains("ingress_"), "{rules}");
        assert!(!rules.contains("return"), "nothing is allowed: {rules}");
    }

    #[test]
    fn a_namespace_selector_matches_the_metadata_name_label_and_ports_stay_numeric() {
        let mut cluster = shop();
        cluster.policy(
            "shop",
            "allow-dns",
            json!({
                "podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } } }],
                    "ports": [{ "port": 53, "protocol": "UDP" }],
                }],
            }),
        );
        let rules = rules(&cluster);
        assert!(
            rules.contains("ip daddr { 10.1.1.11 } udp dport 53 return"),
            "{rules}"
        );
    }

    #[test]
    fn a_selector_on_a_missing_label_allows_nothing() {
        let mut cluster = shop();
        cluster.policy(
            "kube-system",
            "from-shop",
            json!({
                "podSelector": {}, "policyTypes": ["Ingress"],
                "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": { "name": "shop" } } }] }],
            }),
        );
        let rules = rules(&cluster);
        assert!(
            rules.contains("ip daddr 10.1.1.11 jump ingress_kube_system_coredns"),
            "{rules}"
        );
        assert!(!rules.contains("return"), "{rules}");
    }

    #[test]
    fn named_ports_resolve_on_the_destination_and_ip_blocks_keep_their_exceptions() {
        let mut cluster = shop();
        cluster.policy(
            "kube-system",
            "dns-from-node",
            json!({
                "podSelector": { "matchExpressions": [{ "key": "k8s-app", "operator": "In", "values": ["kube-dns"] }] },
                "ingress": [{
                    "from": [{ "ipBlock": { "cidr": "10.1.0.0/16", "except": ["10.1.1.10/32"] } }],
                    "ports": [{ "port": "dns", "protocol": "UDP" }],
                }],
            }),
        );
        let rules = rules(&cluster);
        assert!(
            rules.contains(
                "ip saddr 10.1.0.0/16 ip saddr != { 10.1.1.10/32 } udp dport 5353 return"
            ),
            "{rules}"
        );
    }

    #[test]
    fn an_operator_the_api_server_refuses_selects_nothing() {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_owned(), "web".to_owned());
        let selector =
            json!({ "matchExpressions": [{ "key": "app", "operator": "in", "values": ["web"] }] });
        assert!(!selects(&selector, &labels));
        assert!(selects(&json!({}), &labels));
    }
}
