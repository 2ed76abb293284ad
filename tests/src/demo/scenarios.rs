//! The four incidents of the runbooks in `../shared/seeds/`, each as a lab:
//! pods, Services (DNATed like kube-proxy), the NetworkPolicies that broke
//! the traffic, the servers that answer, the client actions that fail, and
//! what dropscope must name.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use serde_json::{Value, json};

use super::steps::{Action, Step};
use crate::lab::{Cluster, Lab, LabClient, LabProcess};

/// The node every demo pod runs on.
pub const NODE: &str = "demo-node";

/// What dropscope must say about one dropped flow.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The flow's destination port after DNAT (what the drop carries).
    pub port: u16,
    /// The source as `namespace/pod`, or `node` for the node itself.
    pub source: String,
    /// The destination pod as `namespace/pod`.
    pub destination: String,
    /// The policy the explanation names, `namespace/name`.
    pub policy: String,
    /// The hint code it must carry.
    pub hint: &'static str,
}

/// A scenario set up in a lab, ready to run.
pub struct Stage {
    /// The cluster's objects, policies included (before the fix).
    pub cluster: Cluster,
    /// Servers running in the lab's pods; stopped with the stage.
    pub servers: Vec<LabProcess>,
    /// What the workload does (each fails before the fix).
    pub steps: Vec<Step>,
    /// One entry per dropped flow dropscope must explain.
    pub expected: Vec<Expected>,
    /// `dropscope observe` filter flags that select this incident.
    pub observe: Vec<String>,
    /// `dropscope explain` flags for the first step's flow.
    pub explain: Vec<String>,
    /// The Services, one line each, for the reader.
    pub services: Vec<String>,
}

/// One seed incident.
pub struct Scenario {
    /// A short title.
    pub title: &'static str,
    /// What happened, as the runbook tells it.
    pub story: &'static str,
    /// Builds it in `lab`, servers started with `client`.
    pub build: fn(&mut Lab, &LabClient) -> Result<Stage>,
}

/// Every scenario, in the order the demo plays them.
pub fn all() -> [Scenario; 4] {
    [
        Scenario {
            title: "Default-deny egress silently breaks DNS, then HTTP",
            story: "A \"default deny\" egress policy went into namespace shop during a security review. \
                    Nobody allowed DNS: lookups time out, and every call to the api Service times out too.",
            build: default_deny_egress,
        },
        Scenario {
            title: "An egress rule allows UDP 53, but the DNS pods listen on 5353 behind the Service",
            story: "The fix for the first incident allowed \"UDP 53 to namespace kube-system\". The kube-dns \
                    Service DNATs port 53 to the pods' port 5353, and policies see the packet after DNAT: \
                    the allow rule never matches.",
            build: dns_behind_dnat,
        },
        Scenario {
            title: "An ingress rule selects a namespace label that namespace frontend does not carry",
            story: "backend isolates its pods for ingress and allows \"namespaceSelector: name=frontend\". \
                    Namespace frontend has no label `name`: the selector matches nothing and web's calls to \
                    the api Service time out.",
            build: missing_namespace_label,
        },
        Scenario {
            title: "A kubelet HTTP probe from the node IP is blocked by an ingress rule that allows only pods",
            story: "An ingress policy allows traffic from every pod of the namespace. The kubelet probes from \
                    the node's address, which no pod selector matches: the probe times out and the pod \
                    restarts in a loop.",
            build: kubelet_probe,
        },
    ]
}

fn endpoint(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// Starts a DNS server in `pod` on `port` answering A queries with `answer`.
fn dns_server(
    client: &LabClient,
    lab: &Lab,
    pod: &str,
    port: u16,
    answer: IpAddr,
) -> Result<LabProcess> {
    let pod = lab.pod(pod);
    let server = client.spawn_in(
        &pod.netns,
        None,
        &[
            "dns-server",
            &endpoint(pod.ipv4.into(), port).to_string(),
            "--answer",
            &format!("a:{answer}"),
        ],
    )?;
    server.first_line(std::time::Duration::from_secs(5))?;
    Ok(server)
}

/// Starts an HTTP server in `pod` on `port`.
fn http_server(client: &LabClient, lab: &Lab, pod: &str, port: u16) -> Result<LabProcess> {
    let pod = lab.pod(pod);
    let server = client.spawn_in(
        &pod.netns,
        None,
        &["http-server", &endpoint(pod.ipv4.into(), port).to_string()],
    )?;
    server.first_line(std::time::Duration::from_secs(5))?;
    Ok(server)
}

/// shop/cart, shop/api behind Service shop/api (80 → 8080), and
/// kube-system/coredns behind kube-dns (53 → `dns_port`); the servers run.
struct Shop {
    cluster: Cluster,
    servers: Vec<LabProcess>,
    dns_vip: IpAddr,
    api_vip: IpAddr,
    services: Vec<String>,
}

fn shop(lab: &mut Lab, client: &LabClient, dns_port: u16) -> Result<Shop> {
    let cart = lab.add_pod("cart")?;
    let api = lab.add_pod("api")?;
    let coredns = lab.add_pod("coredns")?;
    let dns_vip = IpAddr::V4(lab.vip(10));
    let api_vip = IpAddr::V4(lab.vip(1));
    lab.nft().service(
        "kube-dns",
        dns_vip,
        53,
        "udp",
        coredns.ipv4.into(),
        dns_port,
    )?;
    lab.nft()
        .service("api", api_vip, 80, "tcp", api.ipv4.into(), 8080)?;
    let mut cluster = Cluster::new();
    cluster
        .node(NODE, lab.gateway_v4().into())
        .namespace("shop", &[])
        .namespace("kube-system", &[])
        .pod(
            "shop",
            "cart",
            cart.ipv4.into(),
            NODE,
            &[("app", "cart")],
            &[],
        )
        .pod(
            "shop",
            "api",
            api.ipv4.into(),
            NODE,
            &[("app", "api")],
            &[("http", 8080, "TCP")],
        )
        .pod(
            "kube-system",
            "coredns",
            coredns.ipv4.into(),
            NODE,
            &[("k8s-app", "kube-dns")],
            &[("dns", dns_port, "UDP")],
        )
        .service(
            "kube-system",
            "kube-dns",
            dns_vip,
            ("dns", 53, dns_port, "UDP"),
            &[("k8s-app", "kube-dns")],
            &[("coredns", coredns.ipv4.into())],
        )
        .service(
            "shop",
            "api",
            api_vip,
            ("http", 80, 8080, "TCP"),
            &[("app", "api")],
            &[("api", api.ipv4.into())],
        );
    let servers = vec![
        dns_server(client, lab, "coredns", dns_port, api_vip)?,
        http_server(client, lab, "api", 8080)?,
    ];
    let services = vec![
        format!(
            "Service kube-system/kube-dns {dns_vip}:53/UDP → coredns {}:{dns_port}",
            coredns.ipv4
        ),
        format!("Service shop/api {api_vip}:80/TCP → api {}:8080", api.ipv4),
    ];
    Ok(Shop {
        cluster,
        servers,
        dns_vip,
        api_vip,
        services,
    })
}

impl Shop {
    /// The stage: these steps and expectations, observed in namespace
    /// shop, the DNS flow explained.
    fn into_stage(self, steps: Vec<Step>, expected: Vec<Expected>) -> Stage {
        Stage {
            steps,
            expected,
            observe: args(&["--namespace", "shop"]),
            explain: args(&[
                "--from",
                "shop/cart",
                "--to",
                "kube-system/svc/kube-dns",
                "--port",
                "53",
                "--protocol",
                "UDP",
            ]),
            cluster: self.cluster,
            servers: self.servers,
            services: self.services,
        }
    }
}

/// The lookup cart makes of the api Service's name.
fn lookup(lab: &Lab, dns_vip: IpAddr) -> Step {
    Step {
        who: "shop/cart".into(),
        netns: lab.pod("cart").netns.clone(),
        pod: Some("cart".into()),
        action: Action::Dns {
            server: endpoint(dns_vip, 53),
            name: "api.shop.svc.cluster.local".into(),
        },
    }
}

fn default_deny_egress(lab: &mut Lab, client: &LabClient) -> Result<Stage> {
    let mut shop = shop(lab, client, 53)?;
    shop.cluster.policy(
        "shop",
        "default-deny-egress",
        json!({ "podSelector": {}, "policyTypes": ["Egress"] }),
    );
    let get = Step {
        who: "shop/cart".into(),
        netns: lab.pod("cart").netns.clone(),
        pod: Some("cart".into()),
        action: Action::Http {
            to: endpoint(shop.api_vip, 80),
            path: "/cart/items".into(),
        },
    };
    let steps = vec![lookup(lab, shop.dns_vip), get];
    Ok(shop.into_stage(
        steps,
        vec![
            Expected {
                port: 53,
                source: "shop/cart".into(),
                destination: "kube-system/coredns".into(),
                policy: "shop/default-deny-egress".into(),
                hint: "dns_egress_denied",
            },
            Expected {
                port: 8080,
                source: "shop/cart".into(),
                destination: "shop/api".into(),
                policy: "shop/default-deny-egress".into(),
                hint: "default_deny",
            },
        ],
    ))
}

fn dns_behind_dnat(lab: &mut Lab, client: &LabClient) -> Result<Stage> {
    let mut shop = shop(lab, client, 5353)?;
    shop.cluster.policy(
        "shop",
        "allow-dns-egress",
        json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } } }],
                "ports": [{ "protocol": "UDP", "port": 53 }],
            }],
        }),
    );
    let steps = vec![lookup(lab, shop.dns_vip)];
    Ok(shop.into_stage(
        steps,
        vec![Expected {
            port: 5353,
            source: "shop/cart".into(),
            destination: "kube-system/coredns".into(),
            policy: "shop/allow-dns-egress".into(),
            hint: "service_port_not_target_port",
        }],
    ))
}

fn missing_namespace_label(lab: &mut Lab, client: &LabClient) -> Result<Stage> {
    let web = lab.add_pod("web")?;
    let api = lab.add_pod("api")?;
    let vip = IpAddr::V4(lab.vip(1));
    lab.nft()
        .service("api", vip, 80, "tcp", api.ipv4.into(), 8080)?;
    let mut cluster = Cluster::new();
    cluster
        .node(NODE, lab.gateway_v4().into())
        .web_and_api(
            (web.ipv4.into(), NODE),
            (api.ipv4.into(), NODE),
            8080,
            "TCP",
        )
        .api_service(vip, api.ipv4.into())
        .policy(
            "backend",
            "default-deny-ingress",
            json!({ "podSelector": {}, "policyTypes": ["Ingress"] }),
        )
        .policy(
            "backend",
            "allow-from-frontend",
            json!({
                "podSelector": { "matchLabels": { "app": "api" } },
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "namespaceSelector": { "matchLabels": { "name": "frontend" } } }],
                    "ports": [{ "protocol": "TCP", "port": 8080 }],
                }],
            }),
        );
    let servers = vec![http_server(client, lab, "api", 8080)?];
    Ok(Stage {
        steps: vec![Step {
            who: "frontend/web".into(),
            netns: web.netns.clone(),
            pod: Some("web".into()),
            action: Action::Http {
                to: endpoint(vip, 80),
                path: "/api/orders".into(),
            },
        }],
        expected: vec![Expected {
            port: 8080,
            source: "frontend/web".into(),
            destination: "backend/api".into(),
            policy: "backend/allow-from-frontend".into(),
            hint: "namespace_label_missing",
        }],
        observe: args(&["--namespace", "frontend"]),
        explain: args(&[
            "--from",
            "frontend/web",
            "--to",
            "backend/svc/api",
            "--port",
            "80",
        ]),
        cluster,
        servers,
        services: vec![format!(
            "Service backend/api {vip}:80/TCP → api {}:8080",
            api.ipv4
        )],
    })
}

fn kubelet_probe(lab: &mut Lab, client: &LabClient) -> Result<Stage> {
    let web = lab.add_pod("web")?;
    let mut cluster = Cluster::new();
    cluster
        .node(NODE, lab.gateway_v4().into())
        .probed_web(NODE, web.ipv4.into());
    let servers = vec![http_server(client, lab, "web", 8080)?];
    Ok(Stage {
        steps: vec![Step {
            who: format!("kubelet on {NODE} ({})", lab.gateway_v4()),
            netns: lab.node.clone(),
            pod: None,
            action: Action::Http {
                to: endpoint(web.ipv4.into(), 8080),
                path: "/healthz".into(),
            },
        }],
        expected: vec![Expected {
            port: 8080,
            source: "node".into(),
            destination: "default/web".into(),
            policy: "default/allow-from-pods".into(),
            hint: "kubelet_probe_blocked",
        }],
        observe: args(&["--namespace", "default"]),
        explain: args(&[
            "--from",
            &lab.gateway_v4().to_string(),
            "--to",
            "default/web",
            "--port",
            "8080",
        ]),
        cluster,
        servers,
        services: Vec::new(),
    })
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

/// A policy's spec on one line, for the reader.
pub fn one_line(spec: &Value) -> String {
    spec.to_string()
}
