//! End-to-end: the runbooks' incidents (../shared/seeds/) reproduced in the
//! lab with a matching cluster snapshot. The kernel drops the packet the
//! way a policy enforcer would; the agent's event must name the pods, the
//! Service, the policy responsible and the trap.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Cluster, DropView, connect_tcp,
        json::{hint_codes, policy_names, text},
        send_udp,
        web_to_api::WebToApi,
    },
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "lab-node";

/// Waits for this lab's first explained drop to `port` and returns its
/// explanation.
fn explained_drop(agent: &Agent, lab: &Lab, port: u16) -> Result<(DropView, Value)> {
    agent.wait_for(WAIT, "an explained drop", |agent| {
        agent
            .drops(|drop| (lab.owns(drop.src.ip) || lab.owns(drop.dst.ip)) && drop.dst.port == port)
            .into_iter()
            .find_map(|drop| {
                let explanation = drop.raw.get("explanation")?.clone();
                Some((drop, explanation))
            })
    })
}

/// A DNS lab: `shop/cart` as client, `kube-system/coredns` behind the
/// `kube-dns` Service on `target_port`, dropped there by the enforcer.
fn dns_lab(
    target_port: u16,
    policy: (&str, Value),
) -> Result<(Lab, dropscope_e2e::lab::Snapshot, IpAddr)> {
    let mut lab = Lab::new()?;
    let cart = lab.add_pod("cart")?;
    let coredns = lab.add_pod("coredns")?;
    let vip = IpAddr::V4(lab.vip(10));
    lab.nft()
        .service("kube-dns", vip, 53, "udp", coredns.ipv4.into(), target_port)?;
    lab.nft()
        .drop_forward("deny_dns", coredns.ipv4.into(), target_port, "udp")?;
    let snapshot = Cluster::new()
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
            "kube-system",
            "coredns",
            coredns.ipv4.into(),
            NODE,
            &[("k8s-app", "kube-dns")],
            &[("dns", target_port, "UDP")],
        )
        .service(
            "kube-system",
            "kube-dns",
            vip,
            ("dns", 53, target_port, "UDP"),
            &[("k8s-app", "kube-dns")],
            &[("coredns", coredns.ipv4.into())],
        )
        .policy("shop", policy.0, policy.1)
        .write(lab.id())?;
    Ok((lab, snapshot, vip))
}

#[test]
fn default_deny_egress_that_kills_dns_is_named() -> Result<()> {
    let (lab, snapshot, vip) = dns_lab(
        53,
        (
            "default-deny-egress",
            json!({ "podSelector": {}, "policyTypes": ["Egress"] }),
        ),
    )?;
    let agent = Agent::start(&["--snapshot", snapshot.path()])?;
    let cart = lab_pod_netns(&lab, "cart");
    send_udp(&cart, vec![0], SocketAddr::new(vip, 53), 2)?;

    let (drop, explanation) = explained_drop(&agent, &lab, 53)?;
    assert_eq!(drop.reason, "NETFILTER_DROP");
    assert_eq!(text(&explanation, &["verdict"]), "VERDICT_DENY_EGRESS");
    assert_eq!(
        text(&explanation, &["source", "identity", "pod", "name"]),
        "cart"
    );
    assert_eq!(
        text(&explanation, &["destination", "identity", "pod", "name"]),
        "coredns"
    );
    assert_eq!(
        text(&explanation, &["service", "service", "name"]),
        "kube-dns"
    );
    assert_eq!(
        policy_names(&explanation["egress"]),
        ["shop/default-deny-egress"]
    );
    assert!(
        hint_codes(&explanation).contains(&"dns_egress_denied".to_owned()),
        "{explanation:#}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn an_allow_rule_for_53_does_not_match_after_dnat_to_5353() -> Result<()> {
    let allow_53 = json!({
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{
            "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } } }],
            "ports": [{ "port": 53, "protocol": "UDP" }],
        }],
    });
    let (lab, snapshot, vip) = dns_lab(5353, ("allow-dns", allow_53))?;
    let agent = Agent::start(&["--snapshot", snapshot.path()])?;
    send_udp(
        &lab_pod_netns(&lab, "cart"),
        vec![0],
        SocketAddr::new(vip, 53),
        2,
    )?;

    let (drop, explanation) = explained_drop(&agent, &lab, 5353)?;
    let (_, original_dst) = drop.original.context("conntrack original tuple")?;
    assert_eq!((original_dst.ip, original_dst.port), (vip, 53));
    assert_eq!(text(&explanation, &["verdict"]), "VERDICT_DENY_EGRESS");
    assert_eq!(explanation["port"], 5353, "policies see the post-DNAT port");
    assert_eq!(policy_names(&explanation["egress"]), ["shop/allow-dns"]);
    assert!(
        hint_codes(&explanation).contains(&"service_port_not_target_port".to_owned()),
        "{explanation:#}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn a_namespace_selector_on_a_missing_label_is_named() -> Result<()> {
    let mut lab = Lab::new()?;
    let shape = WebToApi::new(&mut lab, 20)?;
    let snapshot = shape
        .cluster(&lab, NODE)
        .policy(
            "backend",
            "allow-frontend",
            json!({
                "podSelector": { "matchLabels": { "app": "api" } },
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "namespaceSelector": { "matchLabels": { "name": "frontend" } } }],
                    "ports": [{ "port": 8080, "protocol": "TCP" }],
                }],
            }),
        )
        .write(lab.id())?;
    let agent = Agent::start(&["--snapshot", snapshot.path()])?;
    shape.connect(Duration::from_millis(1500))?;

    let (drop, explanation) = explained_drop(&agent, &lab, 8080)?;
    assert!(drop.tcp_flags.contains(&"SYN".to_owned()));
    assert_eq!(text(&explanation, &["verdict"]), "VERDICT_DENY_INGRESS");
    assert_eq!(
        text(&explanation, &["source", "identity", "pod", "namespace"]),
        "frontend"
    );
    assert_eq!(
        text(&explanation, &["destination", "identity", "pod", "name"]),
        "api"
    );
    assert_eq!(
        policy_names(&explanation["ingress"]),
        ["backend/allow-frontend"]
    );
    assert!(
        hint_codes(&explanation).contains(&"namespace_label_missing".to_owned()),
        "{explanation:#}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn a_kubelet_probe_from_the_node_blocked_by_a_pods_only_policy_is_named() -> Result<()> {
    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    lab.nft()
        .drop_output("deny_probe", web.ipv4.into(), 8080, "tcp")?;
    let snapshot = Cluster::new()
        .node(NODE, lab.gateway_v4().into())
        .probed_web(NODE, web.ipv4.into())
        .write(lab.id())?;
    let agent = Agent::start(&["--snapshot", snapshot.path()])?;
    // The kubelet's probe: from the node's own address to the pod.
    connect_tcp(
        &lab.node,
        SocketAddr::new(web.ipv4.into(), 8080),
        Duration::from_millis(1500),
    )?;

    let (drop, explanation) = explained_drop(&agent, &lab, 8080)?;
    assert_eq!(drop.src.ip, IpAddr::V4(lab.gateway_v4()));
    assert!(
        explanation["source"]["identity"]["node"].is_object(),
        "the source is the node: {explanation}"
    );
    assert_eq!(text(&explanation, &["verdict"]), "VERDICT_DENY_INGRESS");
    assert_eq!(
        policy_names(&explanation["ingress"]),
        ["default/allow-from-pods"]
    );
    assert!(
        hint_codes(&explanation).contains(&"kubelet_probe_blocked".to_owned()),
        "{explanation:#}"
    );
    agent.stop()?;
    Ok(())
}

fn lab_pod_netns(lab: &Lab, pod: &str) -> dropscope_e2e::lab::Netns {
    lab.pod(pod).netns.clone()
}
