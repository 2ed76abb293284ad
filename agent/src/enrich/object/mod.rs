//! The stripped objects the store keeps: only the fields dropscope needs of
//! Namespaces, Pods, Services, EndpointSlices and Nodes (policies are in
//! [`super::policy`]). Receives k8s-openapi objects, emits these; strings
//! are interned so that labels repeated over thousands of pods cost once.

use std::{collections::BTreeMap, fmt, net::IpAddr, sync::Arc};

use ipnet::IpNet;
use k8s_openapi::{
    api::{
        core::v1::{
            Namespace as K8sNamespace, Node as K8sNode, Pod as K8sPod, Service as K8sService,
        },
        discovery::v1::EndpointSlice as K8sEndpointSlice,
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};

mod interner;
mod uid;

pub use self::{interner::Interner, uid::Uid};
use super::Error;
use crate::model::{self, Identity, Protocol};

/// An interned string.
pub type Str = Arc<str>;

/// `namespace/name` of a namespaced object (namespace empty for cluster
/// objects).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Namespace.
    pub namespace: Str,
    /// Name.
    pub name: Str,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Labels, sorted by key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Labels(Arc<[(Str, Str)]>);

impl Default for Labels {
    fn default() -> Self {
        Self(Arc::new([]))
    }
}

impl Labels {
    /// Interned labels from a map.
    pub fn new(labels: Option<&BTreeMap<String, String>>, interner: &mut Interner) -> Self {
        let labels = labels
            .into_iter()
            .flatten()
            .map(|(key, value)| (interner.get(key), interner.get(value)))
            .collect::<Vec<_>>();
        // BTreeMap iteration is sorted already.
        Self(interner.label_set(labels))
    }

    /// Labels from pairs (sorted here).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut labels: Vec<(Str, Str)> = pairs
            .into_iter()
            .map(|(key, value)| (Arc::from(key), Arc::from(value)))
            .collect();
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        Self(Arc::from(labels))
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|index| self.0[index].1.as_ref())
    }

    /// Every label, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&Str, &Str)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As an ordered map of owned strings.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<none>");
        }
        for (index, (key, value)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// A Namespace: its name and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Name.
    pub name: Str,
    /// Labels (`kubernetes.io/metadata.name` included, as the API server sets it).
    pub labels: Labels,
}

/// A container port a named port can resolve to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// Its name, when it has one.
    pub name: Option<Str>,
    /// The port number.
    pub port: u16,
    /// Its protocol (TCP when unset).
    pub protocol: Protocol,
}

/// The workload that owns a pod (from its controller owner reference).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Its kind (`Deployment`, `StatefulSet`, …).
    pub kind: Str,
    /// Its name.
    pub name: Str,
}

/// A Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: Str,
    /// Name.
    pub name: Str,
    /// `metadata.uid` (the cgroup path carries it).
    pub uid: Uid,
    /// Labels.
    pub labels: Labels,
    /// Pod IPs (for host-network pods: the node's).
    pub ips: Box<[IpAddr]>,
    /// Node it is scheduled on.
    pub node: Option<Str>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// True once the pod has Succeeded or Failed: its IP may be reused.
    pub finished: bool,
    /// The owning workload, shared by its replicas.
    pub workload: Option<Arc<Workload>>,
    /// Container ports of every container (init/sidecar containers too),
    /// shared by pods with the same list.
    pub ports: Arc<[ContainerPort]>,
}

impl Pod {
    /// Its key.
    pub fn key(&self) -> Key {
        Key {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The port number a named port resolves to on this pod for a protocol.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|port| port.protocol == protocol && port.name.as_deref() == Some(name))
            .map(|port| port.port)
    }

    /// Its model identity.
    pub fn identity(&self) -> Identity {
        Identity::Pod {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            uid: self.uid.to_string(),
            labels: self.labels.to_map(),
            workload: self.workload.as_ref().map(|workload| model::Workload {
                kind: workload.kind.to_string(),
                name: workload.name.to_string(),
            }),
            node: self.node.as_ref().map(|node| node.to_string()),
            host_network: self.host_network,
        }
    }
}

/// A Service's target port: a number or a container port name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port name, resolved per backend pod.
    Name(Str),
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Its name (required when there are several).
    pub name: Option<Str>,
    /// The Service port (what clients connect to).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Where kube-proxy DNATs it (defaults to `port`).
    pub target: TargetPort,
}

/// A Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: Str,
    /// Name.
    pub name: Str,
    /// ClusterIPs (empty for headless Services).
    pub cluster_ips: Box<[IpAddr]>,
    /// Ports.
    pub ports: Box<[ServicePort]>,
}

/// One port of an EndpointSlice (the resolved target port of a Service port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// The Service port's name.
    pub name: Option<Str>,
    /// The backend port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// Its addresses.
    pub ips: Box<[IpAddr]>,
    /// `conditions.ready` (unset means ready).
    pub ready: bool,
    /// The backing pod's name, when `targetRef` is a Pod.
    pub pod: Option<Str>,
}

/// An EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Namespace.
    pub namespace: Str,
    /// Name.
    pub name: Str,
    /// The Service it belongs to (`kubernetes.io/service-name`).
    pub service: Option<Str>,
    /// Ports.
    pub ports: Box<[SlicePort]>,
    /// Endpoints.
    pub endpoints: Box<[SliceEndpoint]>,
}

/// A Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Name.
    pub name: Str,
    /// InternalIP and ExternalIP addresses.
    pub ips: Box<[IpAddr]>,
    /// `spec.podCIDRs`.
    pub pod_cidrs: Box<[IpNet]>,
}

/// Parses a protocol name as the API spells it (TCP when unset).
pub fn parse_protocol(protocol: Option<&str>, field: &str) -> Result<Protocol, String> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(format!("{field}: unknown protocol {other:?}")),
    }
}

/// A port number from the API's i32, checked.
pub fn parse_port(port: i32, field: &str) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("{field}: port {port} is not in 1-65535"))
}

/// The namespace and name of an object, or an error naming what is missing.
pub fn meta_key(
    kind: &'static str,
    meta: &ObjectMeta,
    namespaced: bool,
    interner: &mut Interner,
) -> Result<Key, Error> {
    let (namespace, name) = meta_names(kind, meta, namespaced)?;
    Ok(Key {
        namespace: interner.get(namespace),
        name: interner.get(name),
    })
}

/// The namespace and name of an object, or an error naming what is missing.
fn meta_names<'m>(
    kind: &'static str,
    meta: &'m ObjectMeta,
    namespaced: bool,
) -> Result<(&'m str, &'m str), Error> {
    let name = meta.name.as_deref().unwrap_or_default();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if name.is_empty() || (namespaced && namespace.is_empty()) {
        return Err(Error::Invalid {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: "metadata.name or metadata.namespace is missing".to_string(),
        });
    }
    Ok((namespace, name))
}

fn invalid(kind: &'static str, key: &Key, reason: String) -> Error {
    Error::Invalid {
        kind,
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        reason,
    }
}

fn parse_ips<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Box<[IpAddr]> {
    let mut ips: Vec<IpAddr> = addresses
        .into_iter()
        .filter_map(|address| address.parse().ok())
        .collect();
    ips.dedup();
    ips.into_boxed_slice()
}

/// The label the API server sets on every namespace, to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Strips a Namespace. It carries [`NAMESPACE_NAME_LABEL`] set to its name
/// whatever its metadata says, as the API server guarantees (a snapshot
/// written by hand may lack it, and a namespaceSelector on it must still
/// select the namespace).
pub fn namespace(object: &K8sNamespace, interner: &mut Interner) -> Result<Namespace, Error> {
    let key = meta_key("Namespace", &object.metadata, false, interner)?;
    let labels = match &object.metadata.labels {
        Some(labels)
            if labels.get(NAMESPACE_NAME_LABEL).map(String::as_str) == Some(&*key.name) =>
        {
            Labels::new(Some(labels), interner)
        }
        labels => {
            let mut labels = labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), key.name.to_string());
            Labels::new(Some(&labels), interner)
        }
    };
    Ok(Namespace {
        name: key.name,
        labels,
    })
}

/// The workload that owns a pod, from its controller owner reference.
fn workload(meta: &ObjectMeta, interner: &mut Interner) -> Option<Arc<Workload>> {
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))?;
    let labels = meta.labels.as_ref();
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => {
            // A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`.
            let hash = labels.and_then(|labels| labels.get("pod-template-hash"));
            match (hash, owner.name.rsplit_once('-')) {
                (Some(hash), Some((deployment, suffix))) if suffix == hash => {
                    ("Deployment", deployment)
                }
                _ => ("ReplicaSet", owner.name.as_str()),
            }
        }
        "Job" => match owner.name.rsplit_once('-') {
            // A CronJob's Job is `<cronjob>-<scheduled minutes>`.
            Some((cronjob, suffix))
                if suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) =>
            {
                ("CronJob", cronjob)
            }
            _ => ("Job", owner.name.as_str()),
        },
        other => (other, owner.name.as_str()),
    };
    Some(interner.workload(kind, name))
}

/// Strips a Pod.
pub fn pod(object: &K8sPod, interner: &mut Interner) -> Result<Pod, Error> {
    let (namespace, name) = meta_names("Pod", &object.metadata, true)?;
    // The name is unique per pod: interning it would only add a table entry.
    let key = Key {
        namespace: interner.get(namespace),
        name: Arc::from(name),
    };
    let spec = object.spec.as_ref();
    let status = object.status.as_ref();
    let uid = Uid::new(object.metadata.uid.as_deref().unwrap_or_default());
    let mut ips: Vec<&str> = status
        .and_then(|status| status.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.and_then(|status| status.pod_ip.as_deref())
    {
        ips.push(ip);
    }
    let mut ports = Vec::new();
    let containers = spec.into_iter().flat_map(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
    });
    for (index, container) in containers.enumerate() {
        for (port_index, port) in container.ports.iter().flatten().enumerate() {
            let field = format!("spec.containers[{index}].ports[{port_index}]");
            let protocol = parse_protocol(port.protocol.as_deref(), &field)
                .map_err(|reason| invalid("Pod", &key, reason))?;
            let number = parse_port(port.container_port, &field)
                .map_err(|reason| invalid("Pod", &key, reason))?;
            ports.push(ContainerPort {
                name: port.name.as_deref().map(|name| interner.get(name)),
                port: number,
                protocol,
            });
        }
    }
    let phase = status.and_then(|status| status.phase.as_deref());
    Ok(Pod {
        uid,
        labels: Labels::new(object.metadata.labels.as_ref(), interner),
        ips: parse_ips(ips),
        node: spec
            .and_then(|spec| spec.node_name.as_deref())
            .map(|node| interner.get(node)),
        host_network: spec.and_then(|spec| spec.host_network).unwrap_or(false),
        finished: matches!(phase, Some("Succeeded" | "Failed")),
        workload: workload(&object.metadata, interner),
        ports: interner.port_list(ports),
        namespace: key.namespace,
        name: key.name,
    })
}

/// Strips a Service.
pub fn service(object: &K8sService, interner: &mut Interner) -> Result<Service, Error> {
    let key = meta_key("Service", &object.metadata, true, interner)?;
    let spec = object.spec.as_ref();
    let mut ips: Vec<&str> = spec
        .and_then(|spec| spec.cluster_ips.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if ips.is_empty()
        && let Some(ip) = spec.and_then(|spec| spec.cluster_ip.as_deref())
    {
        ips.push(ip);
    }
    let mut ports = Vec::new();
    for (index, port) in spec
        .and_then(|spec| spec.ports.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.ports[{index}]");
        let protocol = parse_protocol(port.protocol.as_deref(), &field)
            .map_err(|reason| invalid("Service", &key, reason))?;
        let number =
            parse_port(port.port, &field).map_err(|reason| invalid("Service", &key, reason))?;
        let target = match &port.target_port {
            None => TargetPort::Number(number),
            Some(IntOrString::Int(target)) => TargetPort::Number(
                parse_port(*target, &format!("{field}.targetPort"))
                    .map_err(|reason| invalid("Service", &key, reason))?,
            ),
            Some(IntOrString::String(name)) => match name.parse::<i32>() {
                Ok(target) => TargetPort::Number(
                    parse_port(target, &format!("{field}.targetPort"))
                        .map_err(|reason| invalid("Service", &key, reason))?,
                ),
                Err(_) => TargetPort::Name(interner.get(name)),
            },
        };
        ports.push(ServicePort {
            name: port.name.as_deref().map(|name| interner.get(name)),
            port: number,
            protocol,
            target,
        });
    }
    Ok(Service {
        cluster_ips: parse_ips(ips.into_iter().filter(|ip| *ip != "None")),
        ports: ports.into_boxed_slice(),
        namespace: key.namespace,
        name: key.name,
    })
}

/// Strips an EndpointSlice.
pub fn endpoint_slice(
    object: &K8sEndpointSlice,
    interner: &mut Interner,
) -> Result<EndpointSlice, Error> {
    let key = meta_key("EndpointSlice", &object.metadata, true, interner)?;
    let mut ports = Vec::new();
    for (index, port) in object.ports.iter().flatten().enumerate() {
        let field = format!("ports[{index}]");
        let Some(number) = port.port else { continue };
        ports.push(SlicePort {
            name: port
                .name
                .as_deref()
                .filter(|name| !name.is_empty())
                .map(|name| interner.get(name)),
            port: parse_port(number, &field)
                .map_err(|reason| invalid("EndpointSlice", &key, reason))?,
            protocol: parse_protocol(port.protocol.as_deref(), &field)
                .map_err(|reason| invalid("EndpointSlice", &key, reason))?,
        });
    }
    let endpoints = object
        .endpoints
        .iter()
        .flatten()
        .map(|endpoint| SliceEndpoint {
            ips: parse_ips(endpoint.addresses.iter().map(String::as_str)),
            ready: endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true),
            pod: endpoint
                .target_ref
                .as_ref()
                .filter(|target| target.kind.as_deref() == Some("Pod"))
                .and_then(|target| target.name.as_deref())
                .map(|name| interner.get(name)),
        })
        .collect();
    Ok(EndpointSlice {
        service: object
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get("kubernetes.io/service-name"))
            .map(|name| interner.get(name)),
        ports: ports.into_boxed_slice(),
        endpoints,
        namespace: key.namespace,
        name: key.name,
    })
}

/// Strips a Node.
pub fn node(object: &K8sNode, interner: &mut Interner) -> Result<Node, Error> {
    let key = meta_key("Node", &object.metadata, false, interner)?;
    let addresses = object
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|address| matches!(address.type_.as_str(), "InternalIP" | "ExternalIP"))
        .map(|address| address.address.as_str());
    let spec = object.spec.as_ref();
    let mut cidrs: Vec<&str> = spec
        .and_then(|spec| spec.pod_cidrs.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if cidrs.is_empty()
        && let Some(cidr) = spec.and_then(|spec| spec.pod_cidr.as_deref())
    {
        cidrs.push(cidr);
    }
    Ok(Node {
        name: key.name,
        ips: parse_ips(addresses),
        pod_cidrs: cidrs
            .into_iter()
            .filter_map(|cidr| cidr.parse().ok())
            .collect(),
    })
}
