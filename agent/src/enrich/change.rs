//! What the store receives: the six kinds it keeps, a Kubernetes object of
//! one of them as the API serves it, and a change as a watcher (or the
//! snapshot loader) reports it; plus the hash containers the store and its
//! neighbours share.

use k8s_openapi::api::{
    core::v1::{Namespace as K8sNamespace, Node as K8sNode, Pod as K8sPod, Service as K8sService},
    discovery::v1::EndpointSlice as K8sEndpointSlice,
    networking::v1::NetworkPolicy as K8sNetworkPolicy,
};

/// The kinds the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Namespaces.
    Namespace,
    /// Pods.
    Pod,
    /// Services.
    Service,
    /// EndpointSlices.
    EndpointSlice,
    /// NetworkPolicies.
    NetworkPolicy,
    /// Nodes.
    Node,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
        Kind::Node,
    ];

    /// The API kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Node => "Node",
        }
    }

    /// The API resource name (plural, lower case), as in URLs, RBAC rules
    /// and `GetStatus`.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::Node => "nodes",
        }
    }
}

/// A Kubernetes object of one of the six kinds, as the API serves it.
#[derive(Clone, Debug)]
pub enum Object {
    /// A Namespace.
    Namespace(Box<K8sNamespace>),
    /// A Pod.
    Pod(Box<K8sPod>),
    /// A Service.
    Service(Box<K8sService>),
    /// An EndpointSlice.
    EndpointSlice(Box<K8sEndpointSlice>),
    /// A NetworkPolicy.
    NetworkPolicy(Box<K8sNetworkPolicy>),
    /// A Node.
    Node(Box<K8sNode>),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::Node(_) => Kind::Node,
        }
    }

    pub(super) fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Namespace(object) => &object.metadata,
            Object::Pod(object) => &object.metadata,
            Object::Service(object) => &object.metadata,
            Object::EndpointSlice(object) => &object.metadata,
            Object::NetworkPolicy(object) => &object.metadata,
            Object::Node(object) => &object.metadata,
        }
    }
}

/// A change to the cluster, as a watcher reports it.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// An object was added or changed.
    Apply(Object),
    /// An object was deleted.
    Delete(Object),
    /// A full relist of a kind starts: objects of that kind not applied
    /// before the matching [`WatchEvent::RelistDone`] are then removed.
    RelistStart(Kind),
    /// The relist of a kind is complete.
    RelistDone(Kind),
}

/// A hash map with a fast, per-process seeded hasher.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with the same hasher.
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
