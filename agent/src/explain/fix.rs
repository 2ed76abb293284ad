//! The smallest NetworkPolicy that would allow a denied flow: for each
//! denied direction, one policy in the isolated pod's namespace selecting
//! just that pod (by its identifying label), with one rule for just the
//! other end (a pod by label, plus its namespace by
//! `kubernetes.io/metadata.name` when elsewhere; else an ipBlock `/32`) and
//! just the post-DNAT port. Receives the checked [`Facts`]; emits YAML.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::{
    api::networking::v1::{
        IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
        NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::Facts;
use crate::{enrich::view::Pod, model::Direction};

/// Label keys that name an application, best first.
const IDENTIFYING: [&str; 6] = [
    "app.kubernetes.io/name",
    "app",
    "k8s-app",
    "name",
    "app.kubernetes.io/component",
    "component",
];

/// Label keys that change per pod or per rollout: never used to select.
const VOLATILE: [&str; 6] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
];

/// The smallest label set that selects the pod's workload.
pub fn identifying_labels(pod: &Pod) -> BTreeMap<String, String> {
    for key in IDENTIFYING {
        if let Some(value) = pod.labels.get(key) {
            return BTreeMap::from([(key.to_string(), value.to_string())]);
        }
    }
    pod.labels
        .iter()
        .filter(|(key, _)| !VOLATILE.contains(&key.as_ref()))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: None,
    }
}

fn peer(
    facts: &Facts<'_>,
    policy_namespace: &str,
    pod: Option<&Pod>,
    ip: IpAddr,
) -> NetworkPolicyPeer {
    match pod.filter(|pod| !pod.host_network) {
        Some(pod) => NetworkPolicyPeer {
            pod_selector: Some(selector(identifying_labels(pod))),
            namespace_selector: (pod.namespace.as_ref() != policy_namespace).then(|| {
                selector(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    pod.namespace.to_string(),
                )]))
            }),
            ip_block: None,
        },
        None => {
            let _ = facts;
            NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: IpNet::from(ip).to_string(),
                    except: None,
                }),
                ..Default::default()
            }
        }
    }
}

fn dns_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(63);
    name.trim_matches('-').to_string()
}

fn short(pod: Option<&Pod>, ip: IpAddr) -> String {
    match pod {
        Some(pod) => identifying_labels(pod)
            .into_values()
            .next()
            .unwrap_or_else(|| pod.name.to_string()),
        None => ip.to_string(),
    }
}

/// The suggested policies as YAML documents, or `None` when nothing is denied.
pub fn suggest(facts: &Facts<'_>) -> Option<String> {
    let port = NetworkPolicyPort {
        protocol: Some(facts.protocol.to_string()),
        port: Some(IntOrString::Int(i32::from(facts.port))),
        end_port: None,
    };
    let source_pod = facts.source.pod.map(|pod| pod.as_ref());
    let destination_pod = facts.destination.pod.map(|pod| pod.as_ref());
    let name = dns_name(&format!(
        "allow-{}-to-{}-{}-{}",
        short(source_pod, facts.source.ip),
        short(destination_pod, facts.destination.ip),
        facts.protocol.to_string().to_ascii_lowercase(),
        facts.port
    ));
    let mut documents = Vec::new();
    for direction in [Direction::Egress, Direction::Ingress] {
        let check = facts.direction(direction);
        if check.allowed() {
            continue;
        }
        let Some(subject) = check.pod else { continue };
        let namespace = subject.namespace.to_string();
        let mut spec = NetworkPolicySpec {
            pod_selector: Some(selector(identifying_labels(subject))),
            policy_types: Some(vec![match direction {
                Direction::Ingress => "Ingress".to_string(),
                Direction::Egress => "Egress".to_string(),
            }]),
            ..Default::default()
        };
        match direction {
            Direction::Egress => {
                spec.egress = Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![peer(
                        facts,
                        &namespace,
                        destination_pod,
                        facts.destination.ip,
                    )]),
                    ports: Some(vec![port.clone()]),
                }]);
            }
            Direction::Ingress => {
                spec.ingress = Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![peer(facts, &namespace, source_pod, facts.source.ip)]),
                    ports: Some(vec![port.clone()]),
                }]);
            }
        }
        let policy = NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{direction}")),
                namespace: Some(namespace),
                ..Default::default()
            },
            spec: Some(spec),
        };
        match serde_norway::to_string(&policy) {
            Ok(yaml) => documents.push(yaml),
            Err(error) => tracing::debug!(%error, "suggested policy does not serialize"),
        }
    }
    (!documents.is_empty()).then(|| documents.join("---\n"))
}
