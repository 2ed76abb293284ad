//! Fail closed: which objects the metadata store could not load (skipped
//! as invalid, or their kind could not be listed) could decide this flow's
//! verdict. Such an object, listed in the explanation, makes the verdict
//! what the loaded objects say, not what the cluster does:
//! - a NetworkPolicy of the namespace of an end NetworkPolicy can isolate
//!   (the source pod for egress, the destination pod for ingress), or one
//!   that named no namespace;
//! - the Namespace of the other end of a rule whose peer has a non-empty
//!   namespaceSelector: its labels are unknown;
//! - a Pod that claims an end's address, or whose address is unknown while
//!   an end is an address no loaded pod has: the end may be that pod, and
//!   its namespace's policies may isolate it;
//! - a Service that claims an end's address (the flow may go through it);
//! - an EndpointSlice of the namespace of the Service the flow used: it
//!   may hold backends whose ingress was not evaluated.
//!
//! A pod sending to itself is never blocked: nothing missing can change
//! that. Receives the checked [`Facts`]; emits the objects, at most
//! [`MAX_LISTED`], and how many more could decide it.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use super::{Facts, verdict::DirectionCheck};
use crate::{
    enrich::view::{Key, Kind, Peer, Pod, Skipped},
    model::{Direction, Identity, verdict::SkippedObject},
};

/// The most objects an explanation lists; the rest are counted.
pub const MAX_LISTED: usize = 32;

/// What could decide the verdict but was not loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// The objects, by kind, namespace and name (at most [`MAX_LISTED`]).
    pub objects: Vec<SkippedObject>,
    /// More such objects: not remembered by the store (beyond its cap) or
    /// beyond [`MAX_LISTED`].
    pub unlisted: u64,
}

impl Missing {
    /// True when nothing that could decide the verdict is missing.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.unlisted == 0
    }

    /// How many objects are missing, listed or not.
    pub fn count(&self) -> u64 {
        self.objects.len() as u64 + self.unlisted
    }
}

/// Collects entries by (kind, namespace, name), joining relevances.
struct Collector<'a> {
    skipped: &'a Skipped,
    found: BTreeMap<(Kind, Key), SkippedObject>,
    unlisted: u64,
}

impl<'a> Collector<'a> {
    fn add(&mut self, kind: Kind, key: &Key, reason: &str, relevance: String) {
        let entry = self
            .found
            .entry((kind, key.clone()))
            .or_insert_with(|| SkippedObject {
                kind: kind.as_str().to_string(),
                namespace: key.namespace.to_string(),
                name: key.name.to_string(),
                reason: reason.to_string(),
                relevance: String::new(),
            });
        if entry.relevance.is_empty() {
            entry.relevance = relevance;
        } else if !entry.relevance.contains(&relevance) {
            let _ = write!(entry.relevance, "; {relevance}");
        }
    }

    /// The kind as a whole: when it could not be listed, one entry without
    /// a name; and the objects of it the store did not remember.
    fn whole_kind(&mut self, kind: Kind, relevance: impl FnOnce() -> String) {
        if let Some(reason) = self.skipped.unavailable(kind) {
            let key = Key {
                namespace: "".into(),
                name: "".into(),
            };
            self.add(kind, &key, reason, relevance());
        }
        self.unlisted += self.skipped.unlisted(kind);
    }

    fn finish(self) -> Missing {
        let total = self.found.len();
        let objects: Vec<SkippedObject> = self.found.into_values().take(MAX_LISTED).collect();
        Missing {
            unlisted: self.unlisted + (total - objects.len()) as u64,
            objects,
        }
    }
}

fn pod_name(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

fn end_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Egress => "source",
        Direction::Ingress => "destination",
    }
}

/// An end the store cannot name: not a loaded pod, and either an address
/// in the pod network no pod has or one it cannot place at all.
fn unnamed(facts: &Facts<'_>, identity: &Identity) -> bool {
    match identity {
        Identity::Unknown { .. } => true,
        Identity::External { .. } => !facts.view.knows_pod_network(),
        _ => false,
    }
}

/// True when some rule the direction checked has a peer with a non-empty
/// namespaceSelector (evaluated on the other end's namespace).
fn evaluates_namespace_labels(check: &DirectionCheck<'_>) -> bool {
    check.rules.iter().any(|rule| {
        super::verdict::rules(rule.policy, check.direction)
            .get(rule.index)
            .is_some_and(|written| {
                written.peers.iter().any(|peer| {
                    matches!(peer, Peer::Pods { namespaces: Some(selector), .. } if !selector.is_empty())
                })
            })
    })
}

/// What could decide this flow's verdict but was not loaded.
pub fn missing(facts: &Facts<'_>) -> Missing {
    let skipped = facts.view.skipped();
    if facts.to_self || skipped.is_empty() {
        return Missing::default();
    }
    let mut collector = Collector {
        skipped,
        found: BTreeMap::new(),
        unlisted: 0,
    };
    policies(facts, &mut collector);
    namespaces(facts, &mut collector);
    addresses(facts, &mut collector);
    slices(facts, &mut collector);
    collector.finish()
}

/// NetworkPolicies of the namespaces whose pods the directions check.
fn policies(facts: &Facts<'_>, collector: &mut Collector<'_>) {
    let mut subjects: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for check in [&facts.egress, &facts.ingress] {
        if let Some(pod) = check.pod {
            subjects.entry(&pod.namespace).or_default().push(format!(
                "the {} pod {} for {}",
                end_name(check.direction),
                pod_name(pod),
                check.direction
            ));
        }
    }
    if subjects.is_empty() {
        return;
    }
    for (namespace, pods) in &subjects {
        let relevance = format!(
            "a NetworkPolicy of namespace {namespace} may isolate {}",
            pods.join(" and ")
        );
        let skipped = collector.skipped;
        for (key, entry) in skipped.in_namespace(Kind::NetworkPolicy, namespace) {
            let relevance = if key.namespace.is_empty() {
                format!("it named no namespace, so it may be in {namespace}, where {relevance}")
            } else {
                relevance.clone()
            };
            collector.add(Kind::NetworkPolicy, key, &entry.reason, relevance);
        }
    }
    let namespaces: Vec<&str> = subjects.keys().copied().collect();
    collector.whole_kind(Kind::NetworkPolicy, || {
        format!(
            "no NetworkPolicy could be read, and one in {} may isolate this flow's pods",
            namespaces.join(" or ")
        )
    });
}

/// Namespaces whose labels a namespaceSelector was evaluated on.
fn namespaces(facts: &Facts<'_>, collector: &mut Collector<'_>) {
    let mut evaluated = false;
    for check in [&facts.egress, &facts.ingress] {
        if !evaluates_namespace_labels(check) {
            continue;
        }
        let (end, _) = facts.other_end(check.direction);
        let Some(pod) = end.peer().selectable() else {
            continue;
        };
        evaluated = true;
        let key = Key {
            namespace: "".into(),
            name: pod.namespace.clone(),
        };
        let skipped = collector.skipped;
        if let Some(entry) = skipped.get(Kind::Namespace, &key) {
            let other = match check.direction {
                Direction::Egress => "destination",
                Direction::Ingress => "source",
            };
            collector.add(
                Kind::Namespace,
                &key,
                &entry.reason,
                format!(
                    "its labels are unknown, and a namespaceSelector of the {} rules that apply is evaluated on it, the namespace of the {other} pod {}",
                    check.direction,
                    pod_name(pod)
                ),
            );
        }
    }
    if evaluated {
        collector.whole_kind(Kind::Namespace, || {
            "no Namespace could be read, and a namespaceSelector decides this flow".to_string()
        });
    }
}

/// Pods and Services that may be an end no loaded pod is.
fn addresses(facts: &Facts<'_>, collector: &mut Collector<'_>) {
    let ends = [
        ("source", &facts.source, &facts.source_identity),
        (
            "destination",
            &facts.destination,
            &facts.destination_identity,
        ),
    ];
    let skipped = collector.skipped;
    let mut any_unnamed = false;
    for (label, end, identity) in ends {
        if end.pod.is_some() || matches!(identity, Identity::Pod { .. }) {
            continue;
        }
        let ip: IpAddr = end.ip;
        let is_unnamed = unnamed(facts, identity);
        any_unnamed |= is_unnamed;
        for (key, entry) in skipped.of_kind(Kind::Pod) {
            let relevance = if entry.ips.contains(&ip) {
                format!(
                    "it has {ip}, the {label} of this flow, which no loaded pod has: its namespace's policies may isolate it"
                )
            } else if entry.ips.is_empty() && is_unnamed {
                format!(
                    "its address is unknown and the {label} {ip} is no loaded pod: it may be this pod, and its namespace's policies may isolate it"
                )
            } else {
                continue;
            };
            collector.add(Kind::Pod, key, &entry.reason, relevance);
        }
        if !matches!(identity, Identity::Service { .. }) {
            for (key, entry) in skipped.of_kind(Kind::Service) {
                if entry.ips.contains(&ip) {
                    collector.add(
                        Kind::Service,
                        key,
                        &entry.reason,
                        format!(
                            "it has {ip}, the {label} of this flow: the flow may go through it to backends with policies of their own"
                        ),
                    );
                }
            }
        }
    }
    if any_unnamed {
        collector.whole_kind(Kind::Pod, || {
            "no Pod could be read, and an end of this flow is no loaded pod".to_string()
        });
        collector.whole_kind(Kind::Service, || {
            "no Service could be read, and an end of this flow is no loaded pod".to_string()
        });
    }
}

/// EndpointSlices of the namespace of the Service the flow used.
fn slices(facts: &Facts<'_>, collector: &mut Collector<'_>) {
    let Some(hit) = facts.service else { return };
    let service = format!("{}/{}", hit.service.namespace, hit.service.name);
    let relevance = if facts.no_endpoints {
        format!(
            "it may hold the backends of service {service}, which has none loaded, so no ingress was evaluated"
        )
    } else {
        format!(
            "it may hold more backends of service {service}, whose ingress policies were not evaluated"
        )
    };
    let skipped = collector.skipped;
    for (key, entry) in skipped.in_namespace(Kind::EndpointSlice, &hit.service.namespace) {
        collector.add(Kind::EndpointSlice, key, &entry.reason, relevance.clone());
    }
    collector.whole_kind(Kind::EndpointSlice, || {
        format!("no EndpointSlice could be read: backends of service {service} are unknown")
    });
}
