//! The metadata store: stripped objects of six kinds and the indexes that
//! make lookups cheap (IP, pod UID, labels, namespace), and what it could
//! not use ([`super::skipped`]). Receives [`WatchEvent`]s through
//! [`Store::apply`], the one entry point used by the live watch and the
//! snapshot loader alike; read through [`super::view`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
};

use ipnet::IpNet;

use super::{
    Error,
    object::{self, EndpointSlice, Interner, Key, Namespace, Node, Pod, Service, Str},
    policy::{self, Policy, Selector},
    skipped::{self, Skipped},
};

pub use super::change::{HashMap, HashSet, Kind, Object, WatchEvent};

/// Objects by label key, then value.
pub type LabelIndex<T> = HashMap<Str, HashMap<Str, Vec<T>>>;

fn index_insert<T>(index: &mut LabelIndex<T>, key: &Str, value: &Str, item: T) {
    index
        .entry(key.clone())
        .or_default()
        .entry(value.clone())
        .or_default()
        .push(item);
}

fn index_remove<T>(index: &mut LabelIndex<Arc<T>>, key: &str, value: &str, item: &Arc<T>) {
    index_remove_by(index, key, value, |other| Arc::ptr_eq(other, item));
}

fn index_remove_by<T>(
    index: &mut LabelIndex<T>,
    key: &str,
    value: &str,
    is_item: impl Fn(&T) -> bool,
) {
    let Some(values) = index.get_mut(key) else {
        return;
    };
    if let Some(items) = values.get_mut(value) {
        items.retain(|other| !is_item(other));
        if items.is_empty() {
            values.remove(value);
        }
    }
    if values.is_empty() {
        index.remove(key);
    }
}

/// Takes one from a count, forgetting it at zero.
fn decrement<K: std::hash::Hash + Eq + Ord, M: CountMap<K>>(counts: &mut M, key: &K) {
    counts.decrement(key);
}

/// A map of counts (hash or ordered).
trait CountMap<K> {
    fn decrement(&mut self, key: &K);
}

impl<K: std::hash::Hash + Eq> CountMap<K> for HashMap<K, u32> {
    fn decrement(&mut self, key: &K) {
        if let Some(count) = self.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.remove(key);
            }
        }
    }
}

impl<K: Ord> CountMap<K> for BTreeMap<K, u32> {
    fn decrement(&mut self, key: &K) {
        if let Some(count) = self.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.remove(key);
            }
        }
    }
}

/// The pods of one namespace.
#[derive(Debug, Default)]
pub struct NamespacePods {
    /// By name.
    pub by_name: BTreeMap<Str, Arc<Pod>>,
    /// By label key, then value.
    pub by_label: LabelIndex<Arc<Pod>>,
}

/// Counts of what the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Namespaces.
    pub namespaces: usize,
    /// Pods.
    pub pods: usize,
    /// Services.
    pub services: usize,
    /// EndpointSlices.
    pub endpoint_slices: usize,
    /// NetworkPolicies.
    pub policies: usize,
    /// Nodes.
    pub nodes: usize,
}

impl Counts {
    /// Each kind's plural name (as `kubectl get` names it) and count.
    pub fn by_kind(&self) -> [(&'static str, usize); 6] {
        [
            ("namespaces", self.namespaces),
            ("pods", self.pods),
            ("services", self.services),
            ("endpointslices", self.endpoint_slices),
            ("networkpolicies", self.policies),
            ("nodes", self.nodes),
        ]
    }
}

/// The cluster metadata store.
#[derive(Debug, Default)]
pub struct Store {
    interner: Interner,
    pub(super) namespaces: HashMap<Str, Arc<Namespace>>,
    pub(super) pods: HashMap<Key, Arc<Pod>>,
    pub(super) pod_by_uid: HashMap<Str, Arc<Pod>>,
    pub(super) pod_by_ip: HashMap<IpAddr, Arc<Pod>>,
    pub(super) pods_by_namespace: HashMap<Str, NamespacePods>,
    pub(super) services: HashMap<Key, Arc<Service>>,
    pub(super) service_by_ip: HashMap<IpAddr, Key>,
    pub(super) slices: HashMap<Key, Arc<EndpointSlice>>,
    pub(super) slices_by_service: HashMap<Key, BTreeSet<Str>>,
    pub(super) policies_by_namespace: HashMap<Str, BTreeMap<Str, Arc<Policy>>>,
    /// Policies whose podSelector has a `key=value` equality, by that pair.
    pub(super) policies_by_label: LabelIndex<Arc<Policy>>,
    /// Policies whose podSelector is not empty and has no equality.
    pub(super) policies_unindexed: Vec<Arc<Policy>>,
    /// Policies whose non-empty podSelector selects no pod of their own
    /// namespace (kept current on every pod and policy change).
    pub(super) orphans: BTreeMap<Key, Arc<Policy>>,
    /// The same orphans grouped by podSelector: explain asks which orphans
    /// select a pod's labels, and checks each distinct selector once.
    pub(super) orphan_groups: HashMap<Selector, BTreeMap<Key, Arc<Policy>>>,
    /// Orphan selectors by their first `key=value` equality.
    pub(super) orphan_selectors_by_label: LabelIndex<Selector>,
    /// Orphan selectors without an equality.
    pub(super) orphan_selectors_unindexed: Vec<Selector>,
    /// Namespace names by label key, then value.
    pub(super) namespaces_by_label: LabelIndex<Str>,
    /// For each pod label key and value, the namespaces holding (not
    /// host-network) pods that carry it, with how many.
    pub(super) pod_label_namespaces: HashMap<Str, HashMap<Str, HashMap<Str, u32>>>,
    /// Every node's pod CIDR (truncated), with how many nodes list it.
    pub(super) pod_cidrs: HashMap<IpNet, u32>,
    /// The prefix lengths among `pod_cidrs` (IPv4 or not, length), counted.
    pub(super) pod_cidr_prefixes: BTreeMap<(bool, u8), u32>,
    pub(super) nodes: HashMap<Str, Arc<Node>>,
    pub(super) node_by_ip: HashMap<IpAddr, Str>,
    /// What the store could not use.
    pub(super) skipped: Skipped,
    relisting: HashMap<Kind, HashSet<Key>>,
}

fn key_of(object: &Object) -> Key {
    let meta = object.meta();
    Key {
        namespace: meta.namespace.as_deref().unwrap_or_default().into(),
        name: meta.name.as_deref().unwrap_or_default().into(),
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that remembers at most `cap` skipped objects by name
    /// (the default is [`skipped::MAX_SKIPPED`]); the rest are counted.
    pub fn with_skipped_cap(cap: usize) -> Self {
        Self {
            skipped: Skipped::with_cap(cap),
            ..Self::default()
        }
    }

    /// What the store could not use.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Records an object that never reached [`Self::apply`] because it
    /// could not even be read as its kind (a snapshot item whose fields
    /// have the wrong type): explanations then say it is missing, as for an
    /// object `apply` rejects. A later valid version or a delete forgets it.
    pub fn note_skipped(&mut self, kind: Kind, namespace: &str, name: &str, reason: String) {
        let key = Key {
            namespace: namespace.into(),
            name: name.into(),
        };
        if let Some(seen) = self.relisting.get_mut(&kind) {
            seen.insert(key.clone());
        }
        self.remove(kind, &key);
        self.skipped.record(kind, key, reason, Box::default());
    }

    /// Records that no object of `kind` could be listed (RBAC forbids it),
    /// and why; the kind's next complete relist clears it.
    pub fn note_unavailable(&mut self, kind: Kind, reason: String) {
        self.skipped.set_unavailable(kind, reason);
    }

    /// What the store holds.
    pub fn counts(&self) -> Counts {
        Counts {
            namespaces: self.namespaces.len(),
            pods: self.pods.len(),
            services: self.services.len(),
            endpoint_slices: self.slices.len(),
            policies: self.policies_by_namespace.values().map(BTreeMap::len).sum(),
            nodes: self.nodes.len(),
        }
    }

    /// Applies one change. An invalid object is not stored (its previous
    /// version is removed), is remembered as skipped with the reason, and
    /// the error names it; the store stays usable. A valid version or a
    /// delete forgets that it was skipped.
    pub fn apply(&mut self, event: WatchEvent) -> Result<(), Error> {
        match event {
            WatchEvent::Apply(object) => {
                let kind = object.kind();
                let key = key_of(&object);
                if let Some(seen) = self.relisting.get_mut(&kind) {
                    seen.insert(key.clone());
                }
                let result = self.upsert(&object);
                match &result {
                    Ok(()) => self.skipped.forget(kind, &key),
                    Err(error) => {
                        self.remove(kind, &key);
                        let reason = match error {
                            Error::Invalid { reason, .. } => reason.clone(),
                            other => other.to_string(),
                        };
                        self.skipped
                            .record(kind, key, reason, skipped::claimed_ips(&object));
                    }
                }
                result
            }
            WatchEvent::Delete(object) => {
                let kind = object.kind();
                let key = key_of(&object);
                self.remove(kind, &key);
                self.skipped.forget(kind, &key);
                Ok(())
            }
            WatchEvent::RelistStart(kind) => {
                self.relisting.insert(kind, HashSet::default());
                self.skipped.relist_start(kind);
                Ok(())
            }
            WatchEvent::RelistDone(kind) => {
                if let Some(seen) = self.relisting.remove(&kind) {
                    for key in self.keys(kind) {
                        if !seen.contains(&key) {
                            self.remove(kind, &key);
                        }
                    }
                    self.skipped.relist_done(kind, &seen);
                }
                self.interner.prune();
                Ok(())
            }
        }
    }

    fn keys(&self, kind: Kind) -> Vec<Key> {
        let cluster = |name: &Str| Key {
            namespace: "".into(),
            name: name.clone(),
        };
        match kind {
            Kind::Namespace => self.namespaces.keys().map(cluster).collect(),
            Kind::Node => self.nodes.keys().map(cluster).collect(),
            Kind::Pod => self.pods.keys().cloned().collect(),
            Kind::Service => self.services.keys().cloned().collect(),
            Kind::EndpointSlice => self.slices.keys().cloned().collect(),
            Kind::NetworkPolicy => self
                .policies_by_namespace
                .values()
                .flat_map(|policies| policies.values().map(|policy| policy.key()))
                .collect(),
        }
    }

    fn upsert(&mut self, object: &Object) -> Result<(), Error> {
        match object {
            Object::Namespace(namespace) => {
                let namespace = object::namespace(namespace, &mut self.interner)?;
                self.remove(
                    Kind::Namespace,
                    &Key {
                        namespace: "".into(),
                        name: namespace.name.clone(),
                    },
                );
                for (label, value) in namespace.labels.iter() {
                    index_insert(
                        &mut self.namespaces_by_label,
                        label,
                        value,
                        namespace.name.clone(),
                    );
                }
                self.namespaces
                    .insert(namespace.name.clone(), Arc::new(namespace));
            }
            Object::Pod(pod) => {
                let pod = object::pod(pod, &mut self.interner)?;
                self.insert_pod(pod);
            }
            Object::Service(service) => {
                let service = object::service(service, &mut self.interner)?;
                self.insert_service(service);
            }
            Object::EndpointSlice(slice) => {
                let slice = object::endpoint_slice(slice, &mut self.interner)?;
                self.insert_slice(slice);
            }
            Object::NetworkPolicy(policy) => {
                let policy = policy::policy(policy, &mut self.interner)?;
                self.insert_policy(policy);
            }
            Object::Node(node) => {
                let node = object::node(node, &mut self.interner)?;
                self.remove(
                    Kind::Node,
                    &Key {
                        namespace: "".into(),
                        name: node.name.clone(),
                    },
                );
                for ip in &node.ips {
                    self.node_by_ip.insert(*ip, node.name.clone());
                }
                for cidr in &node.pod_cidrs {
                    let cidr = cidr.trunc();
                    *self.pod_cidrs.entry(cidr).or_default() += 1;
                    *self
                        .pod_cidr_prefixes
                        .entry((matches!(cidr, IpNet::V4(_)), cidr.prefix_len()))
                        .or_default() += 1;
                }
                self.nodes.insert(node.name.clone(), Arc::new(node));
            }
        }
        Ok(())
    }

    fn insert_pod(&mut self, pod: Pod) {
        let key = pod.key();
        self.remove(Kind::Pod, &key);
        let pod = Arc::new(pod);
        if !pod.uid.is_empty() {
            self.pod_by_uid.insert(pod.uid.clone(), pod.clone());
        }
        if !pod.host_network && !pod.finished {
            for ip in &pod.ips {
                self.pod_by_ip.insert(*ip, pod.clone());
            }
        }
        let namespace = self
            .pods_by_namespace
            .entry(key.namespace.clone())
            .or_default();
        namespace.by_name.insert(key.name.clone(), pod.clone());
        for (label, value) in pod.labels.iter() {
            index_insert(&mut namespace.by_label, label, value, pod.clone());
        }
        if !pod.host_network {
            for (label, value) in pod.labels.iter() {
                *self
                    .pod_label_namespaces
                    .entry(label.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .entry(key.namespace.clone())
                    .or_default() += 1;
            }
        }
        self.pods.insert(key.clone(), pod);
        self.refresh_orphans(&key.namespace);
    }

    /// True when some (not host-network) pod of `namespace` matches.
    fn selects_some_pod(&self, namespace: &str, selector: &super::policy::Selector) -> bool {
        let Some(pods) = self.pods_by_namespace.get(namespace) else {
            return false;
        };
        let matching = |pod: &Arc<Pod>| !pod.host_network && selector.matches(&pod.labels);
        match selector.first_equality() {
            Some((key, value)) => pods
                .by_label
                .get(key.as_ref())
                .and_then(|values| values.get(value.as_ref()))
                .is_some_and(|candidates| candidates.iter().any(matching)),
            None => pods.by_name.values().any(matching),
        }
    }

    /// Recomputes which policies of a namespace select no pod there.
    fn refresh_orphans(&mut self, namespace: &Str) {
        let Some(policies) = self.policies_by_namespace.get(namespace) else {
            return;
        };
        let mut changes = Vec::new();
        for policy in policies.values() {
            let orphan = !policy.pod_selector.is_empty()
                && !self.selects_some_pod(namespace, &policy.pod_selector);
            let key = policy.key();
            if orphan != self.orphans.contains_key(&key) {
                changes.push((key, orphan.then(|| policy.clone())));
            }
        }
        for (key, policy) in changes {
            match policy {
                Some(policy) => self.orphan_insert(key, policy),
                None => self.orphan_remove(&key),
            }
        }
    }

    fn orphan_insert(&mut self, key: Key, policy: Arc<Policy>) {
        let selector = &policy.pod_selector;
        let group = match self.orphan_groups.get_mut(selector) {
            Some(group) => group,
            None => {
                match selector.first_equality() {
                    Some((label, value)) => index_insert(
                        &mut self.orphan_selectors_by_label,
                        label,
                        value,
                        selector.clone(),
                    ),
                    None => self.orphan_selectors_unindexed.push(selector.clone()),
                }
                self.orphan_groups.entry(selector.clone()).or_default()
            }
        };
        group.insert(key.clone(), policy.clone());
        self.orphans.insert(key, policy);
    }

    fn orphan_remove(&mut self, key: &Key) {
        let Some(policy) = self.orphans.remove(key) else {
            return;
        };
        let selector = &policy.pod_selector;
        let Some(group) = self.orphan_groups.get_mut(selector) else {
            return;
        };
        group.remove(key);
        if !group.is_empty() {
            return;
        }
        self.orphan_groups.remove(selector);
        match selector.first_equality() {
            Some((label, value)) => {
                index_remove_by(&mut self.orphan_selectors_by_label, label, value, |other| {
                    other == selector
                })
            }
            None => self
                .orphan_selectors_unindexed
                .retain(|other| other != selector),
        }
    }

    fn insert_service(&mut self, service: Service) {
        let key = Key {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
        };
        self.remove(Kind::Service, &key);
        for ip in &service.cluster_ips {
            self.service_by_ip.insert(*ip, key.clone());
        }
        self.services.insert(key, Arc::new(service));
    }

    fn insert_slice(&mut self, slice: EndpointSlice) {
        let key = Key {
            namespace: slice.namespace.clone(),
            name: slice.name.clone(),
        };
        self.remove(Kind::EndpointSlice, &key);
        if let Some(service) = &slice.service {
            self.slices_by_service
                .entry(Key {
                    namespace: slice.namespace.clone(),
                    name: service.clone(),
                })
                .or_default()
                .insert(slice.name.clone());
        }
        self.slices.insert(key, Arc::new(slice));
    }

    fn insert_policy(&mut self, policy: Policy) {
        let key = policy.key();
        self.remove(Kind::NetworkPolicy, &key);
        let policy = Arc::new(policy);
        match policy.pod_selector.first_equality() {
            Some((label, value)) => {
                index_insert(&mut self.policies_by_label, label, value, policy.clone());
            }
            None if policy.pod_selector.is_empty() => {}
            None => self.policies_unindexed.push(policy.clone()),
        }
        self.policies_by_namespace
            .entry(key.namespace.clone())
            .or_default()
            .insert(key.name.clone(), policy);
        self.refresh_orphans(&key.namespace);
    }

    fn remove(&mut self, kind: Kind, key: &Key) {
        match kind {
            Kind::Namespace => {
                if let Some(namespace) = self.namespaces.remove(&key.name) {
                    for (label, value) in namespace.labels.iter() {
                        index_remove_by(&mut self.namespaces_by_label, label, value, |name| {
                            *name == namespace.name
                        });
                    }
                }
            }
            Kind::Node => {
                if let Some(node) = self.nodes.remove(&key.name) {
                    for ip in &node.ips {
                        if self.node_by_ip.get(ip) == Some(&node.name) {
                            self.node_by_ip.remove(ip);
                        }
                    }
                    for cidr in &node.pod_cidrs {
                        let cidr = cidr.trunc();
                        let prefix = (matches!(cidr, IpNet::V4(_)), cidr.prefix_len());
                        decrement(&mut self.pod_cidrs, &cidr);
                        decrement(&mut self.pod_cidr_prefixes, &prefix);
                    }
                }
            }
            Kind::Pod => {
                let Some(pod) = self.pods.remove(key) else {
                    return;
                };
                let is_this = |other: Option<&Arc<Pod>>| {
                    other.is_some_and(|other| {
                        other.name == key.name && other.namespace == key.namespace
                    })
                };
                if is_this(self.pod_by_uid.get(&pod.uid)) {
                    self.pod_by_uid.remove(&pod.uid);
                }
                for ip in &pod.ips {
                    if is_this(self.pod_by_ip.get(ip)) {
                        self.pod_by_ip.remove(ip);
                    }
                }
                if !pod.host_network {
                    for (label, value) in pod.labels.iter() {
                        let Some(values) = self.pod_label_namespaces.get_mut(label) else {
                            continue;
                        };
                        if let Some(namespaces) = values.get_mut(value) {
                            decrement(namespaces, &key.namespace);
                            if namespaces.is_empty() {
                                values.remove(value);
                            }
                        }
                        if values.is_empty() {
                            self.pod_label_namespaces.remove(label);
                        }
                    }
                }
                if let Some(namespace) = self.pods_by_namespace.get_mut(&key.namespace) {
                    namespace.by_name.remove(&key.name);
                    for (label, value) in pod.labels.iter() {
                        index_remove(&mut namespace.by_label, label, value, &pod);
                    }
                    if namespace.by_name.is_empty() {
                        self.pods_by_namespace.remove(&key.namespace);
                    }
                }
                self.refresh_orphans(&key.namespace);
            }
            Kind::Service => {
                if let Some(service) = self.services.remove(key) {
                    for ip in &service.cluster_ips {
                        if self.service_by_ip.get(ip) == Some(key) {
                            self.service_by_ip.remove(ip);
                        }
                    }
                }
            }
            Kind::EndpointSlice => {
                if let Some(slice) = self.slices.remove(key)
                    && let Some(service) = &slice.service
                {
                    let service = Key {
                        namespace: key.namespace.clone(),
                        name: service.clone(),
                    };
                    if let Some(names) = self.slices_by_service.get_mut(&service) {
                        names.remove(&key.name);
                        if names.is_empty() {
                            self.slices_by_service.remove(&service);
                        }
                    }
                }
            }
            Kind::NetworkPolicy => {
                let Some(policies) = self.policies_by_namespace.get_mut(&key.namespace) else {
                    return;
                };
                let Some(policy) = policies.remove(&key.name) else {
                    return;
                };
                if policies.is_empty() {
                    self.policies_by_namespace.remove(&key.namespace);
                }
                self.orphan_remove(key);
                match policy.pod_selector.first_equality() {
                    Some((label, value)) => {
                        index_remove(&mut self.policies_by_label, label, value, &policy);
                    }
                    None => self
                        .policies_unindexed
                        .retain(|other| !Arc::ptr_eq(other, &policy)),
                }
            }
        }
    }
}
