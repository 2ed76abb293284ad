//! The metadata store: stripped objects of six kinds and the indexes that
//! make lookups cheap (IP, pod UID, labels, namespace), and what it could
//! not use ([`super::skipped`]). Receives [`WatchEvent`]s through
//! [`Store::apply`], the one entry point used by the live watch and the
//! snapshot loader alike; read through [`super::view`].
//!
//! Sized for a node agent in a 100,000-pod cluster (every node holds the
//! whole cluster): pods and policies live once, in their namespace
//! ([`Namespaced`]), and every other index points at them; a pod's name is
//! not interned (it is unique: interning only added a table entry), its
//! UID is 16 bytes ([`super::object::Uid`]), its workload, label set and
//! port list are shared with its replicas. Each policy carries how many
//! pods of its namespace it selects, so a pod event moves counts instead
//! of re-checking the namespace ([`namespaced`]). Bursts are applied in
//! time-bounded batches ([`batch`]).

pub mod batch;
mod index;
mod namespaced;
mod orphans;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use ipnet::IpNet;

use self::index::CountMap;
pub use self::{
    index::{LabelIndex, get as index_get},
    namespaced::{CountedPolicy, NamespacePods, NamespacePolicies, Namespaced, PolicyIndex},
    orphans::Orphans,
};
use super::{
    Error,
    freshness::Freshness,
    object::{self, EndpointSlice, Interner, Key, Namespace, Node, Pod, Service, Str, Uid},
    policy::{self, Policy},
    skipped::{self, Skipped},
};

pub use super::change::{HashMap, HashSet, Kind, Object, WatchEvent};

/// Fewest changes between two prunings of the interner.
pub const PRUNE_AFTER: usize = 4096;

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
            (Kind::Namespace.resource(), self.namespaces),
            (Kind::Pod.resource(), self.pods),
            (Kind::Service.resource(), self.services),
            (Kind::EndpointSlice.resource(), self.endpoint_slices),
            (Kind::NetworkPolicy.resource(), self.policies),
            (Kind::Node.resource(), self.nodes),
        ]
    }
}

/// The cluster metadata store.
#[derive(Debug, Default)]
pub struct Store {
    interner: Interner,
    pub(super) namespaces: HashMap<Str, Arc<Namespace>>,
    /// Pods and policies, per namespace.
    pub(super) namespaced: HashMap<Str, Namespaced>,
    pod_count: usize,
    policy_count: usize,
    pub(super) pod_by_uid: HashMap<Uid, Arc<Pod>>,
    pub(super) pod_by_ip: HashMap<IpAddr, Arc<Pod>>,
    pub(super) services: HashMap<Key, Arc<Service>>,
    pub(super) service_by_ip: HashMap<IpAddr, Key>,
    pub(super) slices: HashMap<Key, Arc<EndpointSlice>>,
    /// Slice names per Service, sorted.
    pub(super) slices_by_service: HashMap<Key, Vec<Str>>,
    /// Policies whose non-empty podSelector selects no pod of their own
    /// namespace (kept current on every pod and policy change).
    pub(super) orphans: Orphans,
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
    /// How current each kind is (live path only).
    freshness: Freshness,
    /// Applies and deletes since the interner was last pruned.
    changes_since_prune: usize,
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

    /// How current each kind is, on the live path (empty for a snapshot).
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The same, for the watch to keep current.
    pub fn freshness_mut(&mut self) -> &mut Freshness {
        &mut self.freshness
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
            pods: self.pod_count,
            services: self.services.len(),
            endpoint_slices: self.slices.len(),
            policies: self.policy_count,
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
                self.changed();
                result
            }
            WatchEvent::Delete(object) => {
                let kind = object.kind();
                let key = key_of(&object);
                self.remove(kind, &key);
                self.skipped.forget(kind, &key);
                self.changed();
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
                self.changes_since_prune = 0;
                Ok(())
            }
        }
    }

    /// Counts a change that may have left interned values unused, and
    /// prunes the interner once the changes since the last pruning reach
    /// half its size (at least [`PRUNE_AFTER`]): a cluster that only ever
    /// watches (never relists) does not keep every label it ever saw, and
    /// pruning costs O(1) per change, amortised.
    fn changed(&mut self) {
        self.changes_since_prune += 1;
        if self.changes_since_prune >= (self.interner.len() / 2).max(PRUNE_AFTER) {
            self.interner.prune();
            self.changes_since_prune = 0;
        }
    }

    /// Values the interner holds (strings, label sets, port lists,
    /// workloads).
    pub fn interned(&self) -> usize {
        self.interner.len()
    }

    fn keys(&self, kind: Kind) -> Vec<Key> {
        let cluster = |name: &Str| Key {
            namespace: "".into(),
            name: name.clone(),
        };
        let namespaced = |names: fn(&Namespaced) -> Vec<&Str>| {
            self.namespaced
                .iter()
                .flat_map(|(namespace, held)| {
                    names(held).into_iter().map(|name| Key {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })
                })
                .collect()
        };
        match kind {
            Kind::Namespace => self.namespaces.keys().map(cluster).collect(),
            Kind::Node => self.nodes.keys().map(cluster).collect(),
            Kind::Pod => namespaced(|held| held.pods.by_name.keys().collect()),
            Kind::Service => self.services.keys().cloned().collect(),
            Kind::EndpointSlice => self.slices.keys().cloned().collect(),
            Kind::NetworkPolicy => namespaced(|held| held.policies.by_name.keys().collect()),
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
                    index::insert(
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
        self.remove(Kind::Pod, &pod.key());
        let pod = Arc::new(pod);
        if !pod.uid.is_empty() {
            self.pod_by_uid.insert(pod.uid.clone(), pod.clone());
        }
        if !pod.host_network && !pod.finished {
            for ip in &pod.ips {
                self.pod_by_ip.insert(*ip, pod.clone());
            }
        }
        if !pod.host_network {
            for (label, value) in pod.labels.iter() {
                *self
                    .pod_label_namespaces
                    .entry(label.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .entry(pod.namespace.clone())
                    .or_default() += 1;
            }
        }
        self.pod_count += 1;
        self.namespaced
            .entry(pod.namespace.clone())
            .or_default()
            .insert_pod(pod, &mut self.orphans);
    }

    fn remove_pod(&mut self, key: &Key) {
        let Some(held) = self.namespaced.get_mut(&key.namespace) else {
            return;
        };
        let Some(pod) = held.remove_pod(&key.name, &mut self.orphans) else {
            return;
        };
        if held.is_empty() {
            self.namespaced.remove(&key.namespace);
        }
        self.pod_count -= 1;
        let is_this =
            |other: Option<&Arc<Pod>>| other.is_some_and(|other| Arc::ptr_eq(other, &pod));
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
                    namespaces.decrement(&key.namespace);
                    if namespaces.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.pod_label_namespaces.remove(label);
                }
            }
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
            let names = self
                .slices_by_service
                .entry(Key {
                    namespace: slice.namespace.clone(),
                    name: service.clone(),
                })
                .or_default();
            if let Err(at) = names.binary_search(&slice.name) {
                names.insert(at, slice.name.clone());
            }
        }
        self.slices.insert(key, Arc::new(slice));
    }

    fn insert_policy(&mut self, policy: Policy) {
        let key = policy.key();
        self.remove(Kind::NetworkPolicy, &key);
        self.policy_count += 1;
        self.namespaced
            .entry(key.namespace)
            .or_default()
            .insert_policy(Arc::new(policy), &mut self.orphans);
    }

    fn remove(&mut self, kind: Kind, key: &Key) {
        match kind {
            Kind::Namespace => {
                if let Some(namespace) = self.namespaces.remove(&key.name) {
                    for (label, value) in namespace.labels.iter() {
                        index::remove_by(&mut self.namespaces_by_label, label, value, |name| {
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
                        self.pod_cidrs.decrement(&cidr);
                        self.pod_cidr_prefixes.decrement(&prefix);
                    }
                }
            }
            Kind::Pod => self.remove_pod(key),
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
                        names.retain(|name| *name != key.name);
                        if names.is_empty() {
                            self.slices_by_service.remove(&service);
                        }
                    }
                }
            }
            Kind::NetworkPolicy => {
                let Some(held) = self.namespaced.get_mut(&key.namespace) else {
                    return;
                };
                if held.remove_policy(&key.name, &mut self.orphans).is_some() {
                    self.policy_count -= 1;
                }
                if held.is_empty() {
                    self.namespaced.remove(&key.namespace);
                }
            }
        }
    }
}
