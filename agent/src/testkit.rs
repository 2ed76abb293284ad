//! Test builders: Kubernetes objects (`mk_pod`, `mk_policy`, …) as the API
//! would serve them, and a store built from them through the same
//! [`Store::apply`] the watch and the snapshot loader use; kernel records
//! and drop events (`mk_drop_record`, `mk_drop_event`). Test-only.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::SystemTime,
};

use k8s_openapi::{
    api::{
        core::v1::{
            Container, ContainerPort, Namespace, Node, NodeAddress, NodeSpec, NodeStatus, Pod,
            PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
        },
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
        networking::v1::{NetworkPolicy, NetworkPolicySpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use crate::{
    enrich::{
        object::{Interner, Labels},
        policy::Selector,
        store::{Object, Store, WatchEvent},
    },
    model::{
        self, DropEvent, DropPlace, DropReason, DropRecord, EventKind, KernelLocation, Protocol,
        TcpFlags, Tuple,
    },
};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn meta(namespace: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: (!namespace.is_empty()).then(|| namespace.into()),
        uid: Some(format!("uid-{namespace}-{name}")),
        labels: (!labels.is_empty()).then(|| map(labels)),
        ..Default::default()
    }
}

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// A compiled selector from matchLabels and (key, operator, values) expressions.
pub fn selector(match_labels: &[(&str, &str)], expressions: &[(&str, &str, &[&str])]) -> Selector {
    let selector = LabelSelector {
        match_labels: (!match_labels.is_empty()).then(|| map(match_labels)),
        match_expressions: (!expressions.is_empty()).then(|| {
            expressions
                .iter()
                .map(|(key, operator, values)| LabelSelectorRequirement {
                    key: key.to_string(),
                    operator: operator.to_string(),
                    values: (!values.is_empty())
                        .then(|| values.iter().map(|value| value.to_string()).collect()),
                })
                .collect()
        }),
    };
    Selector::compile(&selector, "selector", &mut Interner::default()).expect("valid selector")
}

/// A Namespace with the `kubernetes.io/metadata.name` label the API server adds.
pub fn mk_namespace(name: &str, extra: &[(&str, &str)]) -> Object {
    let mut labels = vec![("kubernetes.io/metadata.name", name)];
    labels.extend_from_slice(extra);
    Object::Namespace(Box::new(Namespace {
        metadata: meta("", name, &labels),
        ..Default::default()
    }))
}

/// A running Pod with one IP on node `node-1`.
pub fn mk_pod(namespace: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: meta(namespace, name, labels),
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            ..Default::default()
        }),
    }
}

/// Adds a named container port.
pub fn with_port(mut pod: Pod, name: &str, port: i32, protocol: Protocol) -> Pod {
    if let Some(spec) = pod.spec.as_mut()
        && let Some(container) = spec.containers.first_mut()
    {
        container
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                name: Some(name.into()),
                container_port: port,
                protocol: Some(protocol.to_string()),
                ..Default::default()
            });
    }
    pod
}

/// Moves the pod to another node.
pub fn on_node(mut pod: Pod, node: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.into());
    }
    pod
}

/// Makes it a host-network pod.
pub fn host_network(mut pod: Pod) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.host_network = Some(true);
    }
    pod
}

/// Wraps a pod.
pub fn pod(pod: Pod) -> Object {
    Object::Pod(Box::new(pod))
}

/// A NetworkPolicy whose spec is written in YAML (flow style is handy:
/// `{podSelector: {}, policyTypes: [Ingress]}`).
pub fn mk_policy(namespace: &str, name: &str, spec: &str) -> Object {
    let spec: NetworkPolicySpec = serde_norway::from_str(spec).expect("valid policy spec YAML");
    Object::NetworkPolicy(Box::new(NetworkPolicy {
        metadata: meta(namespace, name, &[]),
        spec: Some(spec),
    }))
}

/// A ClusterIP Service: ports are (name, port, targetPort, protocol).
pub fn mk_service(
    namespace: &str,
    name: &str,
    cluster_ip: &str,
    ports: &[(&str, i32, IntOrString, Protocol)],
) -> Object {
    Object::Service(Box::new(Service {
        metadata: meta(namespace, name, &[]),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port, target, protocol)| ServicePort {
                        name: Some(port_name.to_string()),
                        port: *port,
                        target_port: Some(target.clone()),
                        protocol: Some(protocol.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }))
}

/// An EndpointSlice of a Service: ports (name, port, protocol), endpoints
/// (ip, pod name).
pub fn mk_slice(
    namespace: &str,
    service: &str,
    ports: &[(&str, i32, Protocol)],
    endpoints: &[(&str, &str)],
) -> Object {
    Object::EndpointSlice(Box::new(EndpointSlice {
        metadata: meta(
            namespace,
            &format!("{service}-abcde"),
            &[("kubernetes.io/service-name", service)],
        ),
        address_type: "IPv4".into(),
        ports: Some(
            ports
                .iter()
                .map(|(name, port, protocol)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some(protocol.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
        endpoints: Some(
            endpoints
                .iter()
                .map(|(ip, pod)| Endpoint {
                    addresses: vec![ip.to_string()],
                    target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(pod.to_string()),
                        namespace: Some(namespace.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
    }))
}

/// A Node with an InternalIP and a pod CIDR.
pub fn mk_node(name: &str, ip: &str, pod_cidr: &str) -> Object {
    Object::Node(Box::new(Node {
        metadata: meta("", name, &[]),
        spec: Some(NodeSpec {
            pod_cidr: Some(pod_cidr.into()),
            pod_cidrs: Some(vec![pod_cidr.into()]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                address: ip.into(),
                type_: "InternalIP".into(),
            }]),
            ..Default::default()
        }),
    }))
}

/// A store holding these objects, applied through [`Store::apply`].
pub fn store(objects: impl IntoIterator<Item = Object>) -> Store {
    let mut store = Store::new();
    for object in objects {
        store
            .apply(WatchEvent::Apply(object))
            .expect("test object applies");
    }
    store
}

/// A TCP/UDP/… tuple between two IPv4 addresses.
pub fn mk_tuple(
    src: [u8; 4],
    src_port: u16,
    dst: [u8; 4],
    dst_port: u16,
    protocol: Protocol,
) -> Tuple {
    Tuple {
        src: model::Endpoint {
            ip: IpAddr::V4(Ipv4Addr::from(src)),
            port: src_port,
        },
        dst: model::Endpoint {
            ip: IpAddr::V4(Ipv4Addr::from(dst)),
            port: dst_port,
        },
        protocol,
    }
}

fn netfilter_drop() -> DropReason {
    DropReason {
        code: 12,
        name: Some("NETFILTER_DROP".into()),
    }
}

/// A decoded kernel record of a SYN from 10.0.0.1:1000 to 10.0.0.2:80
/// dropped by netfilter, in counter `slot`.
pub fn mk_drop_record(slot: u32) -> DropRecord {
    DropRecord {
        slot,
        time: SystemTime::UNIX_EPOCH,
        cpu: 0,
        reason: netfilter_drop(),
        location: KernelLocation {
            address: 1,
            symbol: None,
        },
        packet: mk_tuple([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, Protocol::Tcp),
        conntrack: None,
        netns: 1,
        ifindex: 2,
        ingress_ifindex: 0,
        place: DropPlace::default(),
        len: 60,
        tcp_flags: TcpFlags(0x02),
    }
}

/// A drop event of flow `flow_id` for `packet`.
pub fn mk_drop_event(flow_id: u64, kind: EventKind, packet: Tuple) -> Arc<DropEvent> {
    Arc::new(DropEvent {
        flow_id,
        kind,
        reason: netfilter_drop(),
        location: KernelLocation {
            address: 1,
            symbol: None,
        },
        packet,
        conntrack: None,
        tcp_flags: TcpFlags(0x02),
        tcp_flags_seen: TcpFlags(0x02),
        netns: 1,
        ifindex: 1,
        ingress_ifindex: 0,
        place: DropPlace::default(),
        packets: 1,
        bytes: 60,
        new_packets: 1,
        first_seen: SystemTime::UNIX_EPOCH,
        last_seen: SystemTime::UNIX_EPOCH,
        overflow: None,
        explanation: None,
    })
}
