//! The small cluster every row runs against.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{
    enrich::{store::Store, view::View},
    explain::{Flow, explain},
    model::{Explanation, Protocol},
    testkit::*,
};

/// Namespaces default, frontend (team=web), backend, kube-system; nodes
/// node-1 10.0.0.1 (10.244.1.0/24) and node-2 10.0.0.2 (10.244.2.0/24);
/// kube-dns Service 53 → 5353; plus `policies` (namespace, name, spec).
pub fn cluster(policies: &[(&str, &str, &str)]) -> Store {
    let mut objects = vec![
        mk_namespace("default", &[]),
        mk_namespace("frontend", &[("team", "web")]),
        mk_namespace("backend", &[]),
        mk_namespace("kube-system", &[]),
        mk_node("node-1", "10.0.0.1", "10.244.1.0/24"),
        mk_node("node-2", "10.0.0.2", "10.244.2.0/24"),
        pod(with_port(
            with_port(
                mk_pod(
                    "default",
                    "api",
                    "10.244.1.10",
                    &[("app", "api"), ("tier", "backend")],
                ),
                "http",
                8080,
                Protocol::Tcp,
            ),
            "metrics",
            9090,
            Protocol::Tcp,
        )),
        pod(mk_pod("default", "web", "10.244.1.11", &[("app", "web")])),
        pod(on_node(
            with_port(
                mk_pod("default", "db", "10.244.2.12", &[("app", "db")]),
                "pg",
                5432,
                Protocol::Tcp,
            ),
            "node-2",
        )),
        pod(on_node(
            mk_pod("frontend", "client", "10.244.2.20", &[("app", "client")]),
            "node-2",
        )),
        pod(on_node(
            mk_pod(
                "backend",
                "worker",
                "10.244.2.21",
                &[("app", "worker"), ("env", "prod")],
            ),
            "node-2",
        )),
        pod(with_port(
            with_port(
                mk_pod(
                    "kube-system",
                    "coredns",
                    "10.244.1.53",
                    &[("k8s-app", "kube-dns")],
                ),
                "dns",
                5353,
                Protocol::Udp,
            ),
            "dns-tcp",
            5353,
            Protocol::Tcp,
        )),
        pod(host_network(mk_pod(
            "default",
            "hostpod",
            "10.0.0.1",
            &[("app", "hostpod")],
        ))),
        mk_service(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            &[
                ("dns", 53, IntOrString::Int(5353), Protocol::Udp),
                ("dns-tcp", 53, IntOrString::Int(5353), Protocol::Tcp),
            ],
        ),
        mk_slice(
            "kube-system",
            "kube-dns",
            &[
                ("dns", 5353, Protocol::Udp),
                ("dns-tcp", 5353, Protocol::Tcp),
            ],
            &[("10.244.1.53", "coredns")],
        ),
    ];
    for (namespace, name, spec) in policies {
        objects.push(mk_policy(namespace, name, spec));
    }
    store(objects)
}

/// Explains `from` → `to` (`NS/POD`, `NS/svc/NAME` or an IP).
pub fn run(store: &Store, from: &str, to: &str, port: u16, protocol: Protocol) -> Explanation {
    let flow = Flow {
        from: from.parse().expect("from"),
        to: to.parse().expect("to"),
        port,
        protocol,
        original: None,
    };
    explain(&View::new(store), &flow).expect("explainable flow")
}
