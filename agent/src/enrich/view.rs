//! Read-only queries over the [`Store`]: IP → identity, pods by name, UID
//! or label, Service backends, namespaces, policies by namespace and by the
//! labels they may select, and what the store could not load. This is all
//! `explain` imports from `enrich`; it re-exports the stripped types those
//! queries return.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;

use super::{
    freshness::KindState,
    object::Uid,
    store::{Namespaced, index_get},
};
pub use super::{
    object::{
        ContainerPort, EndpointSlice, Key, Labels, Namespace, Node, Pod, Service, ServicePort,
        SliceEndpoint, SlicePort, Str, TargetPort,
    },
    policy::{Operator, Peer, Policy, PortMatch, PortRule, Requirement, Rule, Selector},
    skipped::{Entry as SkippedEntry, Skipped},
    store::{Counts, Kind, Store},
};
use crate::model::{Identity, Protocol, StaleKind};

/// A backend of a Service port: where kube-proxy DNATs to.
#[derive(Clone, Debug)]
pub struct ServiceBackend {
    /// The backend address.
    pub ip: IpAddr,
    /// The target port (post-DNAT).
    pub port: u16,
    /// `conditions.ready`.
    pub ready: bool,
    /// The backend pod, when known.
    pub pod: Option<Arc<Pod>>,
}

/// Read-only access to a store.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    store: &'a Store,
}

impl<'a> View<'a> {
    /// A view of `store`.
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// What the store holds.
    pub fn counts(&self) -> Counts {
        self.store.counts()
    }

    /// The kinds whose watch is failing now (an API server outage): what
    /// the store holds of them is the last known state.
    pub fn stale_kinds(&self) -> Vec<StaleKind> {
        self.store
            .freshness()
            .kinds()
            .filter_map(|(kind, state, _)| match state {
                KindState::Stale { since, .. } => Some(StaleKind {
                    kind: kind.resource().to_owned(),
                    since: *since,
                }),
                _ => None,
            })
            .collect()
    }

    /// What the store could not load: skipped objects and unavailable kinds.
    pub fn skipped(&self) -> &'a Skipped {
        &self.store.skipped
    }

    /// True when some node lists a pod CIDR, so [`Self::in_pod_network`]
    /// can tell pod addresses from outside ones.
    pub fn knows_pod_network(&self) -> bool {
        !self.store.pod_cidrs.is_empty()
    }

    /// A namespace by name.
    pub fn namespace(&self, name: &str) -> Option<&'a Namespace> {
        self.store.namespaces.get(name).map(Arc::as_ref)
    }

    /// Every namespace (unordered).
    pub fn namespaces(&self) -> impl Iterator<Item = &'a Namespace> + 'a {
        self.store.namespaces.values().map(Arc::as_ref)
    }

    /// What one namespace holds (pods, policies), when it holds any.
    fn namespaced(&self, namespace: &str) -> Option<&'a Namespaced> {
        self.store.namespaced.get(namespace)
    }

    /// A pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&'a Arc<Pod>> {
        self.namespaced(namespace)?.pods.by_name.get(name)
    }

    /// The (not host-network, not finished) pod that owns an IP.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&'a Arc<Pod>> {
        self.store.pod_by_ip.get(&ip)
    }

    /// A pod by `metadata.uid` (dashes, as the API spells it).
    pub fn pod_by_uid(&self, uid: &str) -> Option<&'a Arc<Pod>> {
        self.store.pod_by_uid.get(&Uid::new(uid))
    }

    /// The pods of a namespace, by name.
    pub fn pods_in(&self, namespace: &str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        self.namespaced(namespace)
            .into_iter()
            .flat_map(|held| held.pods.by_name.values())
    }

    /// The pods of a namespace carrying `key=value`.
    pub fn pods_in_with_label(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        self.namespaced(namespace)
            .map_or(&[][..], |held| index_get(&held.pods.by_label, key, value))
            .iter()
    }

    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'a Arc<Service>> {
        self.store.services.get(&Key {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// The Service whose ClusterIP this is.
    pub fn service_by_ip(&self, ip: IpAddr) -> Option<&'a Arc<Service>> {
        self.store
            .service_by_ip
            .get(&ip)
            .and_then(|key| self.store.services.get(key))
    }

    /// The backends of one Service port, from its EndpointSlices, sorted by
    /// address. The target port is the EndpointSlice's (kube-proxy's truth);
    /// when no slice names the port, `targetPort` resolved on the pod.
    pub fn service_backends(&self, service: &Service, port: &ServicePort) -> Vec<ServiceBackend> {
        let key = Key {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
        };
        let mut backends = Vec::new();
        for slice_name in self.store.slices_by_service.get(&key).into_iter().flatten() {
            let Some(slice) = self.store.slices.get(&Key {
                namespace: service.namespace.clone(),
                name: slice_name.clone(),
            }) else {
                continue;
            };
            let slice_port = slice
                .ports
                .iter()
                .find(|candidate| {
                    candidate.name == port.name && candidate.protocol == port.protocol
                })
                .map(|candidate| candidate.port);
            for endpoint in &slice.endpoints {
                let pod = endpoint
                    .pod
                    .as_ref()
                    .and_then(|name| self.pod(&service.namespace, name))
                    .or_else(|| endpoint.ips.first().and_then(|ip| self.pod_by_ip(*ip)));
                let target = slice_port.or_else(|| match &port.target {
                    TargetPort::Number(number) => Some(*number),
                    TargetPort::Name(name) => {
                        pod.and_then(|pod| pod.named_port(name, port.protocol))
                    }
                });
                let Some(target) = target else { continue };
                for ip in &endpoint.ips {
                    backends.push(ServiceBackend {
                        ip: *ip,
                        port: target,
                        ready: endpoint.ready,
                        pod: pod.cloned(),
                    });
                }
            }
        }
        backends.sort_by_key(|backend| (!backend.ready, backend.ip));
        backends.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        backends
    }

    /// The policies of a namespace, by name.
    pub fn policies_in(&self, namespace: &str) -> impl Iterator<Item = &'a Arc<Policy>> + 'a {
        self.namespaced(namespace)
            .into_iter()
            .flat_map(|held| held.policies.by_name.values())
            .map(|counted| &counted.policy)
    }

    /// The policies of a namespace whose podSelector may select a pod with
    /// these labels, by name: a superset (callers check the selector),
    /// found through the first equality of each podSelector, so a pod's
    /// check costs the policies that may apply to it, not the namespace's.
    pub fn policies_maybe_selecting(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Vec<&'a Arc<Policy>> {
        let Some(held) = self.namespaced(namespace) else {
            return Vec::new();
        };
        let mut found: Vec<&'a Arc<Policy>> = held.policies.index.maybe_selecting(labels).collect();
        found.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Policies (any namespace) whose non-empty podSelector selects no pod
    /// of their own namespace, by namespace and name.
    pub fn orphan_policies(&self) -> impl Iterator<Item = &'a Arc<Policy>> + 'a {
        self.store.orphans.iter()
    }

    /// The orphan policies (see [`Self::orphan_policies`]) of one
    /// namespace, by name.
    pub fn orphans_in(&self, namespace: &str) -> impl Iterator<Item = &'a Arc<Policy>> + 'a {
        self.namespaced(namespace)
            .into_iter()
            .flat_map(|held| held.policies.by_name.values())
            .filter(|counted| counted.is_orphan())
            .map(|counted| &counted.policy)
    }

    /// Orphan policies (see [`Self::orphan_policies`]) whose podSelector
    /// selects these labels, by namespace and name. Each distinct selector
    /// is checked once, found through its first equality.
    pub fn orphans_selecting(&self, labels: &Labels) -> Vec<&'a Arc<Policy>> {
        self.store.orphans.selecting(labels)
    }

    /// True when some namespace carries the label key.
    pub fn namespace_label_key_exists(&self, key: &str) -> bool {
        self.store.namespaces_by_label.contains_key(key)
    }

    /// Namespaces a namespaceSelector may select (a superset: callers check
    /// the selector): those carrying its first equality, else every one.
    pub fn namespaces_maybe_selected(
        &self,
        selector: &Selector,
    ) -> Box<dyn Iterator<Item = &'a Namespace> + 'a> {
        let store = self.store;
        match selector.first_equality() {
            Some((key, value)) => Box::new(
                index_get(&store.namespaces_by_label, key, value)
                    .iter()
                    .filter_map(|name| store.namespaces.get(name).map(Arc::as_ref)),
            ),
            None => Box::new(self.namespaces()),
        }
    }

    /// How many namespaces [`Self::namespaces_maybe_selected`] yields.
    pub fn namespaces_maybe_selected_count(&self, selector: &Selector) -> usize {
        match selector.first_equality() {
            Some((key, value)) => index_get(&self.store.namespaces_by_label, key, value).len(),
            None => self.store.namespaces.len(),
        }
    }

    /// The namespaces holding (not host-network) pods labelled `key=value`.
    pub fn namespaces_with_pod_label(
        &self,
        key: &str,
        value: &str,
    ) -> impl Iterator<Item = &'a Str> + 'a {
        self.store
            .pod_label_namespaces
            .get(key)
            .and_then(|values| values.get(value))
            .into_iter()
            .flat_map(|namespaces| namespaces.keys())
    }

    /// How many namespaces [`Self::namespaces_with_pod_label`] yields.
    pub fn namespaces_with_pod_label_count(&self, key: &str, value: &str) -> usize {
        self.store
            .pod_label_namespaces
            .get(key)
            .and_then(|values| values.get(value))
            .map_or(0, |namespaces| namespaces.len())
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&'a Arc<Node>> {
        self.store.nodes.get(name)
    }

    /// The node that owns an address.
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<&'a Arc<Node>> {
        self.store
            .node_by_ip
            .get(&ip)
            .and_then(|name| self.store.nodes.get(name))
    }

    /// True when the address is inside some node's pod CIDR.
    pub fn in_pod_network(&self, ip: IpAddr) -> bool {
        let v4 = ip.is_ipv4();
        self.store
            .pod_cidr_prefixes
            .keys()
            .filter(|(family, _)| *family == v4)
            .any(|(_, length)| {
                IpNet::new(ip, *length)
                    .is_ok_and(|net| self.store.pod_cidrs.contains_key(&net.trunc()))
            })
    }

    /// Who an address is. `destination_node` is the node of the flow's
    /// destination pod: a node address equal to it is that pod's kubelet.
    pub fn identify(&self, ip: IpAddr, destination_node: Option<&str>) -> Identity {
        if let Some(pod) = self.pod_by_ip(ip) {
            return pod.identity();
        }
        if let Some(service) = self.service_by_ip(ip) {
            return Identity::Service {
                namespace: service.namespace.to_string(),
                name: service.name.to_string(),
                port_name: None,
                backend: None,
            };
        }
        if let Some(node) = self.node_by_ip(ip) {
            return Identity::Node {
                name: node.name.to_string(),
                is_kubelet_of_destination: destination_node == Some(node.name.as_ref()),
            };
        }
        if self.in_pod_network(ip) {
            return Identity::Unknown { ip };
        }
        Identity::External {
            cidr: IpNet::from(ip),
        }
    }

    /// Who a Service VIP is for a packet to `port`/`protocol`: the Service,
    /// the name of the port used, and the backend it was DNATed to (from
    /// conntrack) when known. `None` when the address is no ClusterIP.
    pub fn identify_service(
        &self,
        vip: IpAddr,
        port: u16,
        protocol: Protocol,
        backend: Option<(IpAddr, u16)>,
    ) -> Option<Identity> {
        let service = self.service_by_ip(vip)?;
        let port_name = Self::service_port(service, port, protocol)
            .and_then(|port| port.name.as_ref())
            .map(|name| name.to_string());
        Some(Identity::Service {
            namespace: service.namespace.to_string(),
            name: service.name.to_string(),
            port_name,
            backend: backend.map(|(ip, port)| crate::model::Backend {
                ip,
                port,
                pod: self
                    .pod_by_ip(ip)
                    .map(|pod| format!("{}/{}", pod.namespace, pod.name)),
            }),
        })
    }

    /// The Service port a packet to `port`/`protocol` on the VIP used.
    pub fn service_port(
        service: &'a Service,
        port: u16,
        protocol: Protocol,
    ) -> Option<&'a ServicePort> {
        service
            .ports
            .iter()
            .find(|candidate| candidate.port == port && candidate.protocol == protocol)
    }
}
