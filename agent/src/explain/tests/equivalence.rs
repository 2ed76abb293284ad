//! Equivalence: on random small clusters and flows, what `explain`
//! answers from the store's indexes equals a straightforward evaluator
//! written here, which scans every namespace, pod and policy: verdict,
//! policies per direction, closest rule, and the hints that need the whole
//! cluster (namespace_label_missing, namespace_selector_matches_nothing,
//! selector_matches_no_pod, policy_selects_no_pod,
//! policy_in_other_namespace). Clusters change through the same `apply`
//! as the watch (pods created, relabelled, deleted or moved to the host
//! network; namespaces relabelled; policies changed or deleted) before they
//! are asked, so the indexes' upkeep is checked too: the per-namespace
//! policy index `verdict` reads, and the per-policy counts of selected pods
//! the orphan hints read. A hand-rolled PRNG keeps it deterministic.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::IpNet;

use crate::{
    enrich::store::{Store, WatchEvent},
    enrich::view::View,
    explain::{Flow, Target, explain},
    model::{Direction, HintCode, Protocol, Verdict},
    testkit::*,
};

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: [&str; 3] = ["app", "tier", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const NAMESPACES: [&str; 4] = ["ns0", "ns1", "ns2", "ns3"];

type Labels = Vec<(&'static str, &'static str)>;

fn random_labels(rng: &mut Rng) -> Labels {
    let mut labels = Vec::new();
    for key in KEYS {
        if !rng.chance(3) {
            labels.push((key, rng.pick(&VALUES)));
        }
    }
    labels
}

fn get(labels: &Labels, key: &str) -> Option<&'static str> {
    labels
        .iter()
        .find(|(candidate, _)| *candidate == key)
        .map(|(_, value)| *value)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, Default)]
struct Sel {
    labels: Vec<(&'static str, &'static str)>,
    exprs: Vec<(&'static str, Op, Vec<&'static str>)>,
}

impl Sel {
    fn random(rng: &mut Rng) -> Self {
        let mut sel = Sel::default();
        if rng.chance(4) {
            return sel;
        }
        for key in KEYS {
            if rng.chance(3) {
                sel.labels.push((key, rng.pick(&VALUES)));
            }
        }
        if rng.chance(3) {
            let key = rng.pick(&KEYS);
            if sel.labels.iter().all(|(other, _)| *other != key) {
                let op = [Op::In, Op::NotIn, Op::Exists, Op::DoesNotExist][rng.below(4)];
                let values = match op {
                    Op::In | Op::NotIn => {
                        let mut values = vec![rng.pick(&VALUES), rng.pick(&VALUES)];
                        values.sort();
                        values.dedup();
                        values
                    }
                    _ => Vec::new(),
                };
                sel.exprs.push((key, op, values));
            }
        }
        sel
    }

    fn random_namespace(rng: &mut Rng) -> Self {
        let mut sel = Sel::default();
        match rng.below(5) {
            0 => {}
            1 => sel
                .labels
                .push(("kubernetes.io/metadata.name", rng.pick(&NAMESPACES))),
            2 => sel.labels.push(("team", rng.pick(&["x", "y"]))),
            3 => sel.labels.push(("missing", "yes")),
            _ => sel.exprs.push(("team", Op::Exists, Vec::new())),
        }
        sel
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.exprs.is_empty()
    }

    fn matches(&self, labels: &Labels) -> bool {
        self.labels
            .iter()
            .all(|(key, value)| get(labels, key) == Some(value))
            && self.exprs.iter().all(|(key, op, values)| {
                let value = get(labels, key);
                match op {
                    Op::In => value.is_some_and(|value| values.contains(&value)),
                    Op::NotIn => !value.is_some_and(|value| values.contains(&value)),
                    Op::Exists => value.is_some(),
                    Op::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Keys it needs present (`In`, matchLabels, `Exists`).
    fn required_keys(&self) -> Vec<&'static str> {
        self.labels
            .iter()
            .map(|(key, _)| *key)
            .chain(
                self.exprs
                    .iter()
                    .filter(|(_, op, _)| matches!(op, Op::In | Op::Exists))
                    .map(|(key, _, _)| *key),
            )
            .collect()
    }

    fn yaml(&self) -> String {
        let mut out = String::from("{");
        if !self.labels.is_empty() {
            out.push_str("matchLabels: {");
            for (index, (key, value)) in self.labels.iter().enumerate() {
                let _ = write!(out, "{}{key}: {value}", if index > 0 { ", " } else { "" });
            }
            out.push('}');
        }
        if !self.exprs.is_empty() {
            if !self.labels.is_empty() {
                out.push_str(", ");
            }
            out.push_str("matchExpressions: [");
            for (index, (key, op, values)) in self.exprs.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}{{key: {key}, operator: {op:?}",
                    if index > 0 { ", " } else { "" }
                );
                if !values.is_empty() {
                    let _ = write!(out, ", values: [{}]", values.join(", "));
                }
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
        out
    }
}

#[derive(Clone, Debug)]
enum RPeer {
    Pods {
        namespaces: Option<Sel>,
        pods: Option<Sel>,
    },
    Block {
        cidr: IpNet,
        except: Option<IpNet>,
    },
}

#[derive(Clone, Debug)]
struct RPort {
    protocol: Protocol,
    range: Option<(u16, u16)>,
}

#[derive(Clone, Debug, Default)]
struct RRule {
    peers: Vec<RPeer>,
    ports: Vec<RPort>,
}

#[derive(Clone, Debug)]
struct RPolicy {
    namespace: &'static str,
    name: String,
    selector: Sel,
    ingress_type: bool,
    egress_type: bool,
    ingress: Vec<RRule>,
    egress: Vec<RRule>,
}

impl RPolicy {
    fn rules(&self, direction: Direction) -> &[RRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    fn affects(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress_type,
            Direction::Egress => self.egress_type,
        }
    }

    fn random(rng: &mut Rng, index: usize) -> Self {
        let random_rules = |rng: &mut Rng| -> Vec<RRule> {
            (0..rng.below(3))
                .map(|_| RRule {
                    peers: (0..rng.below(3))
                        .map(|_| match rng.below(4) {
                            0 => RPeer::Pods {
                                namespaces: None,
                                pods: Some(Sel::random(rng)),
                            },
                            1 => RPeer::Pods {
                                namespaces: Some(Sel::random_namespace(rng)),
                                pods: None,
                            },
                            2 => RPeer::Pods {
                                namespaces: Some(Sel::random_namespace(rng)),
                                pods: Some(Sel::random(rng)),
                            },
                            _ => RPeer::Block {
                                cidr: ["10.0.0.0/29", "10.0.0.0/24", "0.0.0.0/0"][rng.below(3)]
                                    .parse()
                                    .expect("cidr"),
                                except: rng.chance(2).then(|| "10.0.0.4/30".parse().expect("cidr")),
                            },
                        })
                        .collect(),
                    ports: (0..rng.below(3))
                        .map(|_| match rng.below(4) {
                            0 => RPort {
                                protocol: Protocol::Tcp,
                                range: Some((80, 80)),
                            },
                            1 => RPort {
                                protocol: Protocol::Tcp,
                                range: Some((80, 90)),
                            },
                            2 => RPort {
                                protocol: Protocol::Udp,
                                range: Some((53, 53)),
                            },
                            _ => RPort {
                                protocol: Protocol::Tcp,
                                range: None,
                            },
                        })
                        .collect(),
                })
                .collect()
        };
        let (ingress_type, egress_type) =
            [(true, false), (false, true), (true, true)][rng.below(3)];
        RPolicy {
            namespace: rng.pick(&NAMESPACES),
            name: format!("p{index}"),
            selector: Sel::random(rng),
            ingress_type,
            egress_type,
            ingress: if ingress_type {
                random_rules(rng)
            } else {
                Vec::new()
            },
            egress: if egress_type {
                random_rules(rng)
            } else {
                Vec::new()
            },
        }
    }

    fn yaml(&self) -> String {
        let rules = |rules: &[RRule], field: &str| -> String {
            let items: Vec<String> = rules
                .iter()
                .map(|rule| {
                    let mut parts = Vec::new();
                    if !rule.peers.is_empty() {
                        let peers: Vec<String> = rule
                            .peers
                            .iter()
                            .map(|peer| match peer {
                                RPeer::Pods { namespaces, pods } => {
                                    let mut entries = Vec::new();
                                    if let Some(namespaces) = namespaces {
                                        entries.push(format!(
                                            "namespaceSelector: {}",
                                            namespaces.yaml()
                                        ));
                                    }
                                    if let Some(pods) = pods {
                                        entries.push(format!("podSelector: {}", pods.yaml()));
                                    }
                                    format!("{{{}}}", entries.join(", "))
                                }
                                RPeer::Block { cidr, except } => match except {
                                    Some(except) => {
                                        format!("{{ipBlock: {{cidr: {cidr}, except: [{except}]}}}}")
                                    }
                                    None => format!("{{ipBlock: {{cidr: {cidr}}}}}"),
                                },
                            })
                            .collect();
                        parts.push(format!("{field}: [{}]", peers.join(", ")));
                    }
                    if !rule.ports.is_empty() {
                        let ports: Vec<String> = rule
                            .ports
                            .iter()
                            .map(|port| match port.range {
                                None => format!("{{protocol: {}}}", port.protocol),
                                Some((start, end)) if start == end => {
                                    format!("{{protocol: {}, port: {start}}}", port.protocol)
                                }
                                Some((start, end)) => format!(
                                    "{{protocol: {}, port: {start}, endPort: {end}}}",
                                    port.protocol
                                ),
                            })
                            .collect();
                        parts.push(format!("ports: [{}]", ports.join(", ")));
                    }
                    format!("{{{}}}", parts.join(", "))
                })
                .collect();
            format!("[{}]", items.join(", "))
        };
        let mut types = Vec::new();
        if self.ingress_type {
            types.push("Ingress");
        }
        if self.egress_type {
            types.push("Egress");
        }
        format!(
            "{{podSelector: {}, policyTypes: [{}], ingress: {}, egress: {}}}",
            self.selector.yaml(),
            types.join(", "),
            rules(&self.ingress, "from"),
            rules(&self.egress, "to")
        )
    }
}

#[derive(Clone, Debug)]
struct RPod {
    namespace: &'static str,
    name: String,
    ip: Ipv4Addr,
    labels: Labels,
    host_network: bool,
}

#[derive(Clone, Debug)]
struct RNamespace {
    name: &'static str,
    labels: Labels,
}

#[derive(Clone, Debug, Default)]
struct Cluster {
    namespaces: Vec<RNamespace>,
    pods: Vec<RPod>,
    policies: Vec<RPolicy>,
}

fn namespace_object(namespace: &RNamespace) -> crate::enrich::store::Object {
    let extra: Vec<(&str, &str)> = namespace
        .labels
        .iter()
        .filter(|(key, _)| *key != "kubernetes.io/metadata.name")
        .copied()
        .collect();
    mk_namespace(namespace.name, &extra)
}

fn pod_object(pod: &RPod) -> crate::enrich::store::Object {
    let object = mk_pod(pod.namespace, &pod.name, &pod.ip.to_string(), &pod.labels);
    crate::testkit::pod(if pod.host_network {
        host_network(object)
    } else {
        object
    })
}

fn namespace_labels(rng: &mut Rng, name: &'static str) -> Labels {
    let mut labels = vec![("kubernetes.io/metadata.name", name)];
    if !rng.chance(3) {
        labels.push(("team", rng.pick(&["x", "y"])));
    }
    labels
}

/// A random cluster, built through `apply`, then changed through `apply`.
fn random_cluster(rng: &mut Rng) -> (Cluster, Store) {
    let mut cluster = Cluster::default();
    let mut store = Store::new();
    // Some namespaces of pods and policies have no Namespace object.
    for name in NAMESPACES.iter().take(1 + rng.below(4)) {
        cluster.namespaces.push(RNamespace {
            name,
            labels: namespace_labels(rng, name),
        });
    }
    for index in 0..1 + rng.below(8) {
        cluster.pods.push(RPod {
            namespace: rng.pick(&NAMESPACES),
            name: format!("pod{index}"),
            ip: Ipv4Addr::new(10, 0, 0, index as u8 + 1),
            labels: random_labels(rng),
            host_network: rng.chance(8),
        });
    }
    for index in 0..rng.below(7) {
        cluster.policies.push(RPolicy::random(rng, index));
    }
    let apply = |store: &mut Store, event: WatchEvent| {
        store.apply(event).expect("generated objects are valid");
    };
    for namespace in &cluster.namespaces {
        apply(&mut store, WatchEvent::Apply(namespace_object(namespace)));
    }
    for pod in &cluster.pods {
        apply(&mut store, WatchEvent::Apply(pod_object(pod)));
    }
    for policy in &cluster.policies {
        apply(
            &mut store,
            WatchEvent::Apply(mk_policy(policy.namespace, &policy.name, &policy.yaml())),
        );
    }
    // Changes, as the watch delivers them: they move the indexes and the
    // per-policy counts of selected pods that the answers come from.
    let mut created = 100;
    for _ in 0..rng.below(8) {
        match rng.below(7) {
            0 if !cluster.pods.is_empty() => {
                let index = rng.below(cluster.pods.len());
                cluster.pods[index].labels = random_labels(rng);
                apply(
                    &mut store,
                    WatchEvent::Apply(pod_object(&cluster.pods[index])),
                );
            }
            1 if !cluster.pods.is_empty() => {
                let index = rng.below(cluster.pods.len());
                let pod = cluster.pods.remove(index);
                apply(&mut store, WatchEvent::Delete(pod_object(&pod)));
            }
            2 if !cluster.namespaces.is_empty() => {
                let index = rng.below(cluster.namespaces.len());
                let name = cluster.namespaces[index].name;
                cluster.namespaces[index].labels = namespace_labels(rng, name);
                apply(
                    &mut store,
                    WatchEvent::Apply(namespace_object(&cluster.namespaces[index])),
                );
            }
            3 if !cluster.policies.is_empty() => {
                let index = rng.below(cluster.policies.len());
                let policy = cluster.policies.remove(index);
                apply(
                    &mut store,
                    WatchEvent::Delete(mk_policy(policy.namespace, &policy.name, "{}")),
                );
            }
            4 if !cluster.policies.is_empty() => {
                // A policy's spec changes (same namespace and name).
                let index = rng.below(cluster.policies.len());
                let old = &cluster.policies[index];
                let changed = RPolicy {
                    namespace: old.namespace,
                    name: old.name.clone(),
                    ..RPolicy::random(rng, index)
                };
                apply(
                    &mut store,
                    WatchEvent::Apply(mk_policy(changed.namespace, &changed.name, &changed.yaml())),
                );
                cluster.policies[index] = changed;
            }
            5 => {
                // A pod created after the policies.
                created += 1;
                let index = created;
                let pod = RPod {
                    namespace: rng.pick(&NAMESPACES),
                    name: format!("pod{index}"),
                    ip: Ipv4Addr::new(10, 0, 1, index as u8),
                    labels: random_labels(rng),
                    host_network: rng.chance(8),
                };
                apply(&mut store, WatchEvent::Apply(pod_object(&pod)));
                cluster.pods.push(pod);
            }
            6 if !cluster.pods.is_empty() => {
                // A pod switches to or from the host network.
                let index = rng.below(cluster.pods.len());
                cluster.pods[index].host_network = !cluster.pods[index].host_network;
                apply(
                    &mut store,
                    WatchEvent::Apply(pod_object(&cluster.pods[index])),
                );
            }
            _ => {}
        }
    }
    (cluster, store)
}

/// What the reference evaluator says.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    verdict: Verdict,
    egress: Vec<String>,
    ingress: Vec<String>,
    closest: Option<(Direction, String, usize)>,
    hints: BTreeSet<(HintCode, String)>,
}

struct Reference<'c> {
    cluster: &'c Cluster,
}

/// One end of the flow: its address and pod (not host-network).
#[derive(Clone, Copy)]
struct REnd<'c> {
    ip: IpAddr,
    pod: Option<&'c RPod>,
}

impl<'c> Reference<'c> {
    fn pod_by_ip(&self, ip: IpAddr) -> Option<&'c RPod> {
        self.cluster
            .pods
            .iter()
            .find(|pod| !pod.host_network && IpAddr::V4(pod.ip) == ip)
    }

    fn namespace(&self, name: &str) -> Option<&'c RNamespace> {
        self.cluster
            .namespaces
            .iter()
            .find(|namespace| namespace.name == name)
    }

    fn namespace_selected(&self, selector: &Sel, name: &'static str) -> bool {
        if selector.is_empty() {
            return true;
        }
        match self.namespace(name) {
            Some(namespace) => selector.matches(&namespace.labels),
            None => selector.matches(&vec![("kubernetes.io/metadata.name", name)]),
        }
    }

    /// Why a peer misses: `None` when it matches.
    fn peer_miss(&self, policy_namespace: &str, peer: &RPeer, end: REnd<'_>) -> Option<Miss> {
        match peer {
            RPeer::Block { cidr, except } => {
                if !cidr.contains(&end.ip) {
                    return Some(Miss::Other);
                }
                except
                    .filter(|except| except.contains(&end.ip))
                    .map(|_| Miss::Other)
            }
            RPeer::Pods { namespaces, pods } => {
                let Some(pod) = end.pod else {
                    return Some(Miss::Other);
                };
                match namespaces {
                    None if pod.namespace != policy_namespace => return Some(Miss::Other),
                    Some(selector) if !self.namespace_selected(selector, pod.namespace) => {
                        return Some(Miss::Namespace(selector.clone()));
                    }
                    _ => {}
                }
                match pods {
                    Some(selector) if !selector.matches(&pod.labels) => {
                        Some(Miss::Pod(selector.clone(), namespaces.clone()))
                    }
                    _ => None,
                }
            }
        }
    }

    fn port_matches(ports: &[RPort], port: u16, protocol: Protocol) -> bool {
        ports.is_empty()
            || ports.iter().any(|entry| {
                entry.protocol == protocol
                    && entry
                        .range
                        .is_none_or(|(start, end)| (start..=end).contains(&port))
            })
    }

    fn rule_allows(
        &self,
        policy_namespace: &str,
        rule: &RRule,
        other: REnd<'_>,
        port: u16,
        protocol: Protocol,
    ) -> bool {
        (rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|peer| self.peer_miss(policy_namespace, peer, other).is_none()))
            && Self::port_matches(&rule.ports, port, protocol)
    }

    /// The policies isolating `pod` for `direction`, by name.
    fn isolating(&self, pod: &RPod, direction: Direction) -> Vec<&'c RPolicy> {
        let mut policies: Vec<&RPolicy> = self
            .cluster
            .policies
            .iter()
            .filter(|policy| {
                policy.namespace == pod.namespace
                    && policy.affects(direction)
                    && policy.selector.matches(&pod.labels)
            })
            .collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        policies
    }

    fn is_orphan(&self, policy: &RPolicy) -> bool {
        !policy.selector.is_empty()
            && !self.cluster.pods.iter().any(|pod| {
                pod.namespace == policy.namespace
                    && !pod.host_network
                    && policy.selector.matches(&pod.labels)
            })
    }

    fn answer(
        &self,
        source: REnd<'c>,
        destination: REnd<'c>,
        port: u16,
        protocol: Protocol,
    ) -> Answer {
        let mut hints = BTreeSet::new();
        let mut closest: Option<(usize, Direction, String, usize)> = None;
        let mut allowed = [true, true];
        let mut names = [Vec::new(), Vec::new()];
        let to_self = match (source.pod, destination.pod) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            _ => false,
        };
        for (slot, direction) in [Direction::Egress, Direction::Ingress]
            .into_iter()
            .enumerate()
        {
            let (subject, other) = match direction {
                Direction::Egress => (source.pod, destination),
                Direction::Ingress => (destination.pod, source),
            };
            let Some(subject) = subject else { continue };
            let policies = self.isolating(subject, direction);
            names[slot] = policies
                .iter()
                .map(|policy| format!("{}/{}", policy.namespace, policy.name))
                .collect();
            if policies.is_empty() {
                continue;
            }
            let mut rules = Vec::new();
            for policy in &policies {
                for (index, rule) in policy.rules(direction).iter().enumerate() {
                    let misses: Vec<(usize, Option<Miss>)> = rule
                        .peers
                        .iter()
                        .enumerate()
                        .map(|(peer_index, peer)| {
                            (peer_index, self.peer_miss(policy.namespace, peer, other))
                        })
                        .collect();
                    let peers =
                        rule.peers.is_empty() || misses.iter().any(|(_, miss)| miss.is_none());
                    let ports = Self::port_matches(&rule.ports, port, protocol);
                    rules.push((*policy, index, peers, ports, misses));
                }
            }
            allowed[slot] = rules.iter().any(|(_, _, peers, ports, _)| *peers && *ports);
            if allowed[slot] || to_self {
                continue;
            }
            for (policy, index, peers, ports, _) in &rules {
                let score = usize::from(*peers) + usize::from(*ports);
                if closest.as_ref().is_none_or(|(best, ..)| score > *best) {
                    closest = Some((
                        score,
                        direction,
                        format!("{}/{}", policy.namespace, policy.name),
                        *index,
                    ));
                }
            }
            // The hints that need the whole cluster.
            for (policy, index, peers, _, misses) in &rules {
                if *peers {
                    continue;
                }
                for (peer_index, miss) in misses {
                    let field = format!(
                        "{}/{} {direction}[{index}].{}[{peer_index}]",
                        policy.namespace,
                        policy.name,
                        if direction == Direction::Ingress {
                            "from"
                        } else {
                            "to"
                        }
                    );
                    match miss {
                        Some(Miss::Namespace(selector)) => {
                            let missing = selector.required_keys().into_iter().any(|key| {
                                self.cluster
                                    .namespaces
                                    .iter()
                                    .all(|namespace| get(&namespace.labels, key).is_none())
                            });
                            if missing {
                                hints.insert((HintCode::NamespaceLabelMissing, field));
                            } else if !self
                                .cluster
                                .namespaces
                                .iter()
                                .any(|namespace| selector.matches(&namespace.labels))
                            {
                                hints.insert((HintCode::NamespaceSelectorMatchesNothing, field));
                            }
                        }
                        Some(Miss::Pod(selector, namespaces)) => {
                            let in_scope = |pod: &RPod| match namespaces {
                                None => pod.namespace == policy.namespace,
                                Some(namespaces) => self
                                    .namespace(pod.namespace)
                                    .is_some_and(|namespace| namespaces.matches(&namespace.labels)),
                            };
                            if !self.cluster.pods.iter().any(|pod| {
                                !pod.host_network && in_scope(pod) && selector.matches(&pod.labels)
                            }) {
                                hints.insert((HintCode::SelectorMatchesNoPod, field));
                            }
                        }
                        _ => {}
                    }
                }
            }
            let would_allow = |policy: &RPolicy, namespace: &str| {
                policy
                    .rules(direction)
                    .iter()
                    .any(|rule| self.rule_allows(namespace, rule, other, port, protocol))
            };
            for policy in &self.cluster.policies {
                let name = format!("{}/{}", policy.namespace, policy.name);
                if policy.namespace == subject.namespace
                    && policy.affects(direction)
                    && !policy.selector.is_empty()
                    && !policy.selector.matches(&subject.labels)
                    && self.is_orphan(policy)
                    && would_allow(policy, policy.namespace)
                {
                    hints.insert((HintCode::PolicySelectsNoPod, name.clone()));
                }
                if policy.namespace != subject.namespace
                    && self.is_orphan(policy)
                    && policy.affects(direction)
                    && policy.selector.matches(&subject.labels)
                    && would_allow(policy, subject.namespace)
                {
                    hints.insert((HintCode::PolicyInOtherNamespace, name));
                }
            }
        }
        let verdict = if to_self {
            Verdict::Allow
        } else {
            Verdict::of(allowed[0], allowed[1])
        };
        let [egress, ingress] = names;
        Answer {
            verdict,
            egress,
            ingress,
            closest: if verdict.is_allow() {
                None
            } else {
                closest.map(|(_, direction, policy, index)| (direction, policy, index))
            },
            hints,
        }
    }
}

#[derive(Debug)]
enum Miss {
    Namespace(Sel),
    Pod(Sel, Option<Sel>),
    Other,
}

const CLUSTER_HINTS: [HintCode; 5] = [
    HintCode::NamespaceLabelMissing,
    HintCode::NamespaceSelectorMatchesNothing,
    HintCode::SelectorMatchesNoPod,
    HintCode::PolicySelectsNoPod,
    HintCode::PolicyInOtherNamespace,
];

/// What `explain` says, in the reference's terms.
fn indexed(store: &Store, flow: &Flow) -> Answer {
    let explanation = explain(&View::new(store), flow).expect("explains");
    let names = |report: &crate::model::DirectionReport| {
        report
            .policies
            .iter()
            .map(|policy| format!("{}/{}", policy.namespace, policy.name))
            .collect::<Vec<_>>()
    };
    let hints = explanation
        .hints
        .iter()
        .filter(|hint| CLUSTER_HINTS.contains(&hint.code))
        .map(|hint| {
            // The subject: the policy, or the rule's peer field.
            let words = match hint.code {
                HintCode::PolicySelectsNoPod | HintCode::PolicyInOtherNamespace => 1,
                _ => 2,
            };
            let subject: Vec<&str> = hint.message.split(' ').take(words).collect();
            (hint.code, subject.join(" "))
        })
        .collect();
    Answer {
        verdict: explanation.verdict,
        egress: names(&explanation.egress),
        ingress: names(&explanation.ingress),
        closest: explanation.closest_miss.map(|miss| {
            (
                miss.direction,
                format!("{}/{}", miss.policy.namespace, miss.policy.name),
                miss.rule,
            )
        }),
        hints,
    }
}

#[test]
fn indexed_answers_equal_a_scanning_evaluator_on_random_clusters() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut compared = 0;
    let mut with_cluster_hints = 0;
    for round in 0..1000 {
        let (cluster, store) = random_cluster(&mut rng);
        let reference = Reference { cluster: &cluster };
        let external = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let addresses: Vec<IpAddr> = cluster
            .pods
            .iter()
            .map(|pod| IpAddr::V4(pod.ip))
            .chain([external, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))])
            .collect();
        for _ in 0..10 {
            let src = addresses[rng.below(addresses.len())];
            let dst = addresses[rng.below(addresses.len())];
            let (port, protocol) = [
                (80, Protocol::Tcp),
                (85, Protocol::Tcp),
                (53, Protocol::Udp),
                (443, Protocol::Tcp),
            ][rng.below(4)];
            let flow = Flow {
                from: Target::Ip(src),
                to: Target::Ip(dst),
                port,
                protocol,
                original: None,
            };
            let want = reference.answer(
                REnd {
                    ip: src,
                    pod: reference.pod_by_ip(src),
                },
                REnd {
                    ip: dst,
                    pod: reference.pod_by_ip(dst),
                },
                port,
                protocol,
            );
            let got = indexed(&store, &flow);
            assert_eq!(
                got,
                want,
                "round {round}: flow {flow:?}\ncluster {cluster:#?}\npolicies {:#?}",
                cluster
                    .policies
                    .iter()
                    .map(RPolicy::yaml)
                    .collect::<Vec<_>>()
            );
            compared += 1;
            with_cluster_hints += usize::from(!want.hints.is_empty());
        }
    }
    assert_eq!(compared, 10_000);
    // The random clusters do reach the hints that scan the cluster.
    assert!(
        with_cluster_hints > 150,
        "only {with_cluster_hints} flows with cluster hints"
    );
}
