//! The synthetic clusters: their sizes, and every object of them built
//! as the API would serve it (namespaces, nodes, pods, Services with their
//! EndpointSlices, policies of ten shapes), deterministically.

use std::{collections::BTreeMap, net::Ipv4Addr};

use dropscope::enrich::store::Object;
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
        apis::meta::v1::{ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};

/// One cluster size: the bench's base density (200 pods and 20 policies
/// per namespace, 100 pods per node, 20 Services per namespace), scaled.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub name: &'static str,
    pub namespaces: usize,
    pub pods: usize,
    pub nodes: usize,
    pub policies: usize,
}

pub const SERVICES_PER_NAMESPACE: usize = 20;
const APPS: usize = 20;

/// The base size and ten times it (same per-namespace density).
pub const SIZES: [Size; 2] = [
    Size {
        name: "10k",
        namespaces: 50,
        pods: 10_000,
        nodes: 100,
        policies: 1_000,
    },
    Size {
        name: "100k",
        namespaces: 500,
        pods: 100_000,
        nodes: 1_000,
        policies: 10_000,
    },
];

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: (!namespace.is_empty()).then(|| namespace.into()),
        uid: Some(format!(
            "{:08x}-0000-4000-8000-{:012x}",
            name.len(),
            fxhash(namespace, name)
        )),
        labels: Some(labels),
        resource_version: Some("12345".into()),
        ..Default::default()
    }
}

fn fxhash(a: &str, b: &str) -> u64 {
    a.bytes()
        .chain(b.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, byte| {
            (h ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3) & 0xffff_ffff_ffff
        })
}

fn namespace_name(index: usize) -> String {
    format!("team-{index:02}")
}

pub fn pod_ip(size: &Size, index: usize) -> Ipv4Addr {
    // 100 pods per node: node n has 10.(n / 2).((n % 2) * 128).0/25 .. use /24 per node.
    let node = index % size.nodes;
    let slot = index / size.nodes + 2;
    Ipv4Addr::new(10, 64 + (node / 256) as u8, (node % 256) as u8, slot as u8)
}

pub fn node_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, (node / 250) as u8, (node % 250 + 2) as u8)
}

pub fn namespace_object(index: usize, env_override: Option<&str>) -> Object {
    let name = namespace_name(index);
    let env = env_override.unwrap_or(if index.is_multiple_of(3) {
        "prod"
    } else {
        "staging"
    });
    let team = format!("t{}", index % 10);
    Object::Namespace(Box::new(Namespace {
        metadata: meta(
            "",
            &name,
            map(&[
                ("kubernetes.io/metadata.name", &name),
                ("env", env),
                ("team", &team),
            ]),
        ),
        ..Default::default()
    }))
}

pub fn node_object(index: usize) -> Object {
    Object::Node(Box::new(Node {
        metadata: meta(
            "",
            &format!("node-{index:03}"),
            map(&[("kubernetes.io/os", "linux")]),
        ),
        spec: Some(NodeSpec {
            pod_cidrs: Some(vec![format!(
                "10.{}.{}.0/24",
                64 + index / 256,
                index % 256
            )]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                address: node_ip(index).to_string(),
                type_: "InternalIP".into(),
            }]),
            ..Default::default()
        }),
    }))
}

fn app_of(size: &Size, pod: usize) -> usize {
    (pod / size.namespaces) % APPS
}

pub fn pod_object(size: &Size, index: usize, version: &str) -> Object {
    let namespace = namespace_name(index % size.namespaces);
    let app = format!("app-{:02}", app_of(size, index));
    let hash = format!("{:010x}", fxhash(&namespace, &app) & 0xff_ffff_ffff);
    let name = format!("{app}-{hash}-{index:05}");
    let tier = ["web", "api", "db", "cache"][app_of(size, index) % 4];
    let ip = pod_ip(size, index).to_string();
    Object::Pod(Box::new(Pod {
        metadata: ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: format!("{app}-{hash}"),
                uid: "rs".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..meta(
                &namespace,
                &name,
                map(&[
                    ("app", &app),
                    ("tier", tier),
                    ("pod-template-hash", &hash),
                    ("version", version),
                ]),
            )
        },
        spec: Some(PodSpec {
            node_name: Some(format!("node-{:03}", index % size.nodes)),
            containers: vec![Container {
                name: "main".into(),
                image: Some("registry.example/app:1.0".into()),
                ports: Some(vec![
                    ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                    ContainerPort {
                        name: Some("metrics".into()),
                        container_port: 9090,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            ..Default::default()
        }),
    }))
}

pub fn service_vip(namespace: usize, app: usize) -> Ipv4Addr {
    let index = namespace * SERVICES_PER_NAMESPACE + app;
    Ipv4Addr::new(10, 96, (index / 250) as u8, (index % 250 + 1) as u8)
}

pub fn service_objects(size: &Size, namespace: usize, app: usize) -> [Object; 2] {
    let ns = namespace_name(namespace);
    let name = format!("app-{app:02}");
    let service = Object::Service(Box::new(Service {
        metadata: meta(&ns, &name, map(&[("app", &name)])),
        spec: Some(ServiceSpec {
            cluster_ip: Some(service_vip(namespace, app).to_string()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            selector: Some(map(&[("app", &name)])),
            ..Default::default()
        }),
        status: None,
    }));
    // Backends: the pods of this namespace with this app.
    // pod = namespace + namespaces * k with (k % APPS) == app.
    let endpoints = (0..)
        .map(|j| namespace + size.namespaces * (app + APPS * j))
        .take_while(|pod| *pod < size.pods)
        .map(|pod| Endpoint {
            addresses: vec![pod_ip(size, pod).to_string()],
            ..Default::default()
        })
        .collect();
    let slice = Object::EndpointSlice(Box::new(EndpointSlice {
        metadata: meta(
            &ns,
            &format!("{name}-x1y2z"),
            map(&[("kubernetes.io/service-name", &name)]),
        ),
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: Some(endpoints),
    }));
    [service, slice]
}

pub fn policy_object(size: &Size, index: usize, variant: usize) -> Object {
    let namespace = index % size.namespaces;
    let ns = namespace_name(namespace);
    let app = format!("app-{:02}", (index / size.namespaces) % APPS);
    let other = format!("app-{:02}", (index / size.namespaces + 1) % APPS);
    let team = format!("t{}", (index + 3) % 10);
    let spec = match (index / size.namespaces + variant) % 10 {
        0 => "{podSelector: {}, policyTypes: [Ingress]}".to_string(),
        1 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: {other}}}}}}}], ports: [{{port: http}}]}}]}}"
        ),
        2 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: {team}}}}}, podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [web, api]}}]}}}}], ports: [{{port: 8000, endPort: 8100}}]}}]}}"
        ),
        3 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}}}}}, policyTypes: [Ingress, Egress], ingress: [{{from: [{{ipBlock: {{cidr: 10.64.0.0/16, except: [10.64.{}.0/24]}}}}]}}], egress: [{{to: [{{ipBlock: {{cidr: 0.0.0.0/0, except: [10.0.0.0/8, 172.16.0.0/12]}}}}], ports: [{{port: 443}}]}}]}}",
            index % 100
        ),
        4 => format!(
            "{{podSelector: {{matchExpressions: [{{key: tier, operator: NotIn, values: [db]}}, {{key: version, operator: Exists}}]}}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{env: prod}}}}}}, {{podSelector: {{matchLabels: {{app: {other}}}}}}}]}}]}}"
        ),
        5 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}}}}}, policyTypes: [Egress], egress: [{{to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}], ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]}}, {{to: [{{podSelector: {{}}}}]}}]}}"
        ),
        6 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}, tier: db}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{tier: api}}}}}}], ports: [{{protocol: TCP, port: 5432}}]}}]}}"
        ),
        7 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: [{{from: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: monitoring}}}}}}], ports: [{{port: metrics}}]}}]}}"
        ),
        8 => format!(
            "{{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{name: {}}}}}}}]}}]}}",
            namespace_name((namespace + 1) % size.namespaces)
        ),
        _ => "{podSelector: {matchLabels: {version: v2}}, ingress: [{}], egress: [{}], policyTypes: [Ingress, Egress]}".to_string(),
    };
    let spec: NetworkPolicySpec = match serde_norway::from_str(&spec) {
        Ok(spec) => spec,
        Err(error) => panic!("bench policy {index}: {error}: {spec}"),
    };
    Object::NetworkPolicy(Box::new(NetworkPolicy {
        metadata: meta(&ns, &format!("policy-{index:04}"), BTreeMap::new()),
        spec: Some(spec),
    }))
}

pub fn pod_version(index: usize) -> &'static str {
    if index.is_multiple_of(2) { "v1" } else { "v2" }
}
