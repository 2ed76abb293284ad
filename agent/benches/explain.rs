//! Explain latency and metadata store memory on a large synthetic cluster:
//! 10,000 pods in 50 namespaces on 100 nodes, 1,000 Services with their
//! EndpointSlices, 1,000 NetworkPolicies (default denies, same-app allows,
//! namespace and pod selectors, matchExpressions, ipBlocks with except,
//! named ports, endPort ranges). Times `explain` over many random flows
//! (p50, p99, max in µs) and counts the bytes the store keeps (a counting
//! global allocator: allocated after building minus before). Prints a
//! table and writes `target/bench/explain.json`.
//!
//! `cargo +1.98.0 bench -p dropscope --bench explain` (full), or with
//! `DROPSCOPE_BENCH_QUICK=1` (or `-- --quick`) for a smoke run.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use dropscope::{
    enrich::{
        store::{Object, Store, WatchEvent},
        view::View,
    },
    explain::{Flow, Target, explain},
    model::Protocol,
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
        apis::meta::v1::{ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NAMESPACES: usize = 50;
const PODS: usize = 10_000;
const NODES: usize = 100;
const SERVICES_PER_NAMESPACE: usize = 20;
const POLICIES: usize = 1_000;
const APPS: usize = 20;

/// xorshift64*: deterministic, no dependency.
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

fn pod_ip(index: usize) -> Ipv4Addr {
    // 100 pods per node: node n has 10.(n / 2).((n % 2) * 128).0/25 .. use /24 per node.
    let node = index % NODES;
    let slot = index / NODES + 2;
    Ipv4Addr::new(10, 64 + (node / 256) as u8, (node % 256) as u8, slot as u8)
}

fn node_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, (node / 250) as u8, (node % 250 + 2) as u8)
}

fn namespace_object(index: usize) -> Object {
    let name = namespace_name(index);
    let env = if index.is_multiple_of(3) {
        "prod"
    } else {
        "staging"
    };
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

fn node_object(index: usize) -> Object {
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

fn app_of(pod: usize) -> usize {
    (pod / NAMESPACES) % APPS
}

fn pod_object(index: usize) -> Object {
    let namespace = namespace_name(index % NAMESPACES);
    let app = format!("app-{:02}", app_of(index));
    let hash = format!("{:010x}", fxhash(&namespace, &app) & 0xff_ffff_ffff);
    let name = format!("{app}-{hash}-{index:05}");
    let tier = ["web", "api", "db", "cache"][app_of(index) % 4];
    let ip = pod_ip(index).to_string();
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
                    ("version", if index.is_multiple_of(2) { "v1" } else { "v2" }),
                ]),
            )
        },
        spec: Some(PodSpec {
            node_name: Some(format!("node-{:03}", index % NODES)),
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

fn service_vip(namespace: usize, app: usize) -> Ipv4Addr {
    let index = namespace * SERVICES_PER_NAMESPACE + app;
    Ipv4Addr::new(10, 96, (index / 250) as u8, (index % 250 + 1) as u8)
}

fn service_objects(namespace: usize, app: usize) -> [Object; 2] {
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
    let endpoints = (0..PODS)
        .filter(|pod| pod % NAMESPACES == namespace && app_of(*pod) == app)
        .map(|pod| Endpoint {
            addresses: vec![pod_ip(pod).to_string()],
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

fn policy_object(index: usize) -> Object {
    let namespace = index % NAMESPACES;
    let ns = namespace_name(namespace);
    let app = format!("app-{:02}", (index / NAMESPACES) % APPS);
    let other = format!("app-{:02}", (index / NAMESPACES + 1) % APPS);
    let team = format!("t{}", (index + 3) % 10);
    let spec = match (index / NAMESPACES) % 10 {
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
            namespace_name((namespace + 1) % NAMESPACES)
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

fn apply(store: &mut Store, object: Object) {
    if let Err(error) = store.apply(WatchEvent::Apply(object)) {
        panic!("bench object rejected: {error}");
    }
}

fn build() -> Store {
    let mut store = Store::new();
    for index in 0..NAMESPACES {
        apply(&mut store, namespace_object(index));
    }
    for index in 0..NODES {
        apply(&mut store, node_object(index));
    }
    for index in 0..PODS {
        apply(&mut store, pod_object(index));
    }
    for namespace in 0..NAMESPACES {
        for app in 0..SERVICES_PER_NAMESPACE {
            for object in service_objects(namespace, app) {
                apply(&mut store, object);
            }
        }
    }
    for index in 0..POLICIES {
        apply(&mut store, policy_object(index));
    }
    store
}

fn random_flow(rng: &mut Rng) -> Flow {
    let src = rng.below(PODS);
    let from = match rng.below(20) {
        0 => Target::Ip(IpAddr::V4(node_ip(src % NODES))),
        1 => Target::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(250) as u8))),
        _ => Target::Ip(IpAddr::V4(pod_ip(src))),
    };
    let (to, port, protocol) = match rng.below(10) {
        0 => (
            Target::Ip(IpAddr::V4(service_vip(
                rng.below(NAMESPACES),
                rng.below(SERVICES_PER_NAMESPACE),
            ))),
            80,
            Protocol::Tcp,
        ),
        1 => (
            Target::Ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            443,
            Protocol::Tcp,
        ),
        _ => {
            let dst = rng.below(PODS);
            let (port, protocol) = [
                (8080, Protocol::Tcp),
                (9090, Protocol::Tcp),
                (5432, Protocol::Tcp),
                (53, Protocol::Udp),
                (8443, Protocol::Tcp),
            ][rng.below(5)];
            (Target::Ip(IpAddr::V4(pod_ip(dst))), port, protocol)
        }
    };
    Flow {
        from,
        to,
        port,
        protocol,
        original: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn main() {
    let quick = std::env::var_os("DROPSCOPE_BENCH_QUICK").is_some()
        || std::env::args().any(|arg| arg == "--quick");
    let flows = if quick { 2_000 } else { 100_000 };

    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let store = build();
    let build_time = started.elapsed();
    let store_bytes = LIVE.load(Ordering::Relaxed) - before;
    let counts = store.counts();
    let view = View::new(&store);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Warm up.
    for _ in 0..flows / 20 {
        let flow = random_flow(&mut rng);
        let _ = black_box(explain(&view, black_box(&flow)));
    }
    let mut latencies = Vec::with_capacity(flows);
    let (mut allowed, mut denied, mut errors) = (0usize, 0usize, 0usize);
    for _ in 0..flows {
        let flow = random_flow(&mut rng);
        let started = Instant::now();
        let result = explain(&view, black_box(&flow));
        latencies.push(started.elapsed());
        match black_box(result) {
            Ok(explanation) if explanation.verdict.is_allow() => allowed += 1,
            Ok(_) => denied += 1,
            Err(_) => errors += 1,
        }
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().map_or(0.0, |max| max.as_secs_f64() * 1e6);
    let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / flows as f64 * 1e6;

    println!(
        "dropscope explain benchmark{}",
        if quick { " (quick)" } else { "" }
    );
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| pods / policies / services / namespaces / nodes | {} / {} / {} / {} / {} |",
        counts.pods, counts.policies, counts.services, counts.namespaces, counts.nodes
    );
    println!("| flows explained | {flows} ({allowed} allowed, {denied} denied, {errors} errors) |");
    println!("| explain p50 | {p50:.1} µs |");
    println!("| explain p99 | {p99:.1} µs (target < 50) |");
    println!("| explain max | {max:.1} µs |");
    println!("| explain mean | {mean:.1} µs |");
    println!(
        "| store memory | {:.1} MiB ({store_bytes} bytes, target < 64 MiB) |",
        store_bytes as f64 / 1048576.0
    );
    println!("| store build | {:.0} ms |", build_time.as_secs_f64() * 1e3);

    let json = serde_json::json!({
        "explain_p50_us": p50,
        "explain_p99_us": p99,
        "explain_max_us": max,
        "explain_mean_us": mean,
        "flows": flows,
        "allowed": allowed,
        "denied": denied,
        "errors": errors,
        "store_bytes": store_bytes,
        "store_build_ms": build_time.as_secs_f64() * 1e3,
        "pods": counts.pods,
        "policies": counts.policies,
        "services": counts.services,
        "endpoint_slices": counts.endpoint_slices,
        "namespaces": counts.namespaces,
        "nodes": counts.nodes,
        "quick": quick,
        "p99_target_met": p99 < 50.0,
        "memory_target_met": store_bytes < 64 * 1024 * 1024,
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("explain.json"), format!("{json:#}\n")));
    match written {
        Ok(()) => println!("wrote {}", dir.join("explain.json").display()),
        Err(error) => eprintln!(
            "cannot write {}: {error}",
            dir.join("explain.json").display()
        ),
    }
}
