//! The enforcer's rules for small clusters, as text.

use serde_json::json;

use super::{objects::selects, *};
use crate::lab::Cluster;

fn shop() -> Cluster {
    let mut cluster = Cluster::new();
    cluster
        .namespace("shop", &[])
        .namespace("kube-system", &[])
        .pod(
            "shop",
            "cart",
            "10.1.1.10".parse().expect("an address"),
            "n",
            &[("app", "cart")],
            &[],
        )
        .pod(
            "kube-system",
            "coredns",
            "10.1.1.11".parse().expect("an address"),
            "n",
            &[("k8s-app", "kube-dns")],
            &[("dns", 5353, "UDP")],
        );
    cluster
}

fn rules(cluster: &Cluster) -> String {
    Enforcer::from_items(cluster.items())
        .map(|enforcer| enforcer.ruleset())
        .unwrap_or_else(|error| error.to_string())
}

#[test]
fn a_default_deny_egress_isolates_every_pod_of_its_namespace() {
    let mut cluster = shop();
    cluster.policy(
        "shop",
        "deny",
        json!({ "podSelector": {}, "policyTypes": ["Egress"] }),
    );
    let rules = rules(&cluster);
    assert!(
        rules.contains("ip saddr 10.1.1.10 jump egress_shop_cart"),
        "{rules}"
    );
    assert!(
        rules.contains("counter name egress_shop_cart drop"),
        "{rules}"
    );
    assert!(!rules.contains("ingress_"), "{rules}");
    assert!(!rules.contains("return"), "nothing is allowed: {rules}");
}

#[test]
fn a_namespace_selector_matches_the_metadata_name_label_and_ports_stay_numeric() {
    let mut cluster = shop();
    cluster.policy(
        "shop",
        "allow-dns",
        json!({
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{
                "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } } }],
                "ports": [{ "port": 53, "protocol": "UDP" }],
            }],
        }),
    );
    let rules = rules(&cluster);
    assert!(
        rules.contains("ip daddr { 10.1.1.11 } udp dport 53 return"),
        "{rules}"
    );
}

#[test]
fn a_selector_on_a_missing_label_allows_nothing() {
    let mut cluster = shop();
    cluster.policy(
        "kube-system",
        "from-shop",
        json!({
            "podSelector": {}, "policyTypes": ["Ingress"],
            "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": { "name": "shop" } } }] }],
        }),
    );
    let rules = rules(&cluster);
    assert!(
        rules.contains("ip daddr 10.1.1.11 jump ingress_kube_system_coredns"),
        "{rules}"
    );
    assert!(!rules.contains("return"), "{rules}");
}

#[test]
fn named_ports_resolve_on_the_destination_and_ip_blocks_keep_their_exceptions() {
    let mut cluster = shop();
    cluster.policy(
        "kube-system",
        "dns-from-node",
        json!({
            "podSelector": { "matchExpressions": [{ "key": "k8s-app", "operator": "In", "values": ["kube-dns"] }] },
            "ingress": [{
                "from": [{ "ipBlock": { "cidr": "10.1.0.0/16", "except": ["10.1.1.10/32"] } }],
                "ports": [{ "port": "dns", "protocol": "UDP" }],
            }],
        }),
    );
    let rules = rules(&cluster);
    assert!(
        rules.contains("ip saddr 10.1.0.0/16 ip saddr != { 10.1.1.10/32 } udp dport 5353 return"),
        "{rules}"
    );
}

#[test]
fn an_operator_the_api_server_refuses_selects_nothing() {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_owned(), "web".to_owned());
    let selector =
        json!({ "matchExpressions": [{ "key": "app", "operator": "in", "values": ["web"] }] });
    assert!(!selects(&selector, &labels));
    assert!(selects(&json!({}), &labels));
}
