//! The smallest NetworkPolicy that would allow a denied flow: for each
//! denied direction, one policy in the isolated pod's namespace selecting
//! just that pod (by its identifying label), with one rule for just the
//! other end (a pod by label, plus its namespace by
//! `kubernetes.io/metadata.name` when elsewhere; else an ipBlock `/32`) and
//! just the post-DNAT port. Receives the checked [`Facts`]; emits YAML.

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _, net::IpAddr};

use ipnet::IpNet;

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

/// A YAML scalar: plain when unambiguous, else double-quoted (JSON
/// string syntax is valid YAML).
fn scalar(text: &str) -> Cow<'_, str> {
    let plain = text
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'/' | b'-'))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(serde_json::Value::from(text).to_string())
    }
}

/// Writes `name:` and a matchLabels selector at `indent` spaces.
fn selector(out: &mut String, indent: usize, name: &str, labels: &BTreeMap<String, String>) {
    let pad = " ".repeat(indent);
    if labels.is_empty() {
        let _ = writeln!(out, "{pad}{name}: {{}}");
        return;
    }
    let _ = writeln!(out, "{pad}{name}:\n{pad}  matchLabels:");
    for (key, value) in labels {
        let _ = writeln!(out, "{pad}    {}: {}", scalar(key), scalar(value));
    }
}

/// Writes one peer as a list item at `indent` spaces.
fn peer(out: &mut String, indent: usize, policy_namespace: &str, pod: Option<&Pod>, ip: IpAddr) {
    let pad = " ".repeat(indent);
    match pod.filter(|pod| !pod.host_network) {
        Some(pod) => {
            let _ = write!(out, "{pad}- ");
            let mut first = true;
            if pod.namespace.as_ref() != policy_namespace {
                let namespace = BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    pod.namespace.to_string(),
                )]);
                let mut block = String::new();
                selector(&mut block, indent + 2, "namespaceSelector", &namespace);
                out.push_str(block.trim_start());
                first = false;
            }
            let mut block = String::new();
            selector(
                &mut block,
                indent + 2,
                "podSelector",
                &identifying_labels(pod),
            );
            out.push_str(if first { block.trim_start() } else { &block });
        }
        None => {
            let _ = writeln!(out, "{pad}- ipBlock:\n{pad}    cidr: {}", IpNet::from(ip));
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
    let source_pod = facts.source.pod.map(|pod| pod.as_ref());
    let destination_pod = facts.destination.pod.map(|pod| pod.as_ref());
    let name = dns_name(&format!(
        "allow-{}-to-{}-{}-{}",
        short(source_pod, facts.source.ip),
        short(destination_pod, facts.destination.ip),
        facts.protocol.to_string().to_ascii_lowercase(),
        facts.port
    ));
    let mut out = String::new();
    for direction in [Direction::Egress, Direction::Ingress] {
        let check = facts.direction(direction);
        if check.allowed() {
            continue;
        }
        let Some(subject) = check.pod else { continue };
        if !out.is_empty() {
            out.push_str("---\n");
        }
        let (kind, list, field, other, other_ip) = match direction {
            Direction::Egress => (
                "Egress",
                "egress",
                "to",
                destination_pod,
                facts.destination.ip,
            ),
            Direction::Ingress => ("Ingress", "ingress", "from", source_pod, facts.source.ip),
        };
        let _ = writeln!(
            out,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:",
            scalar(&format!("{name}-{list}")),
            scalar(&subject.namespace)
        );
        selector(&mut out, 2, "podSelector", &identifying_labels(subject));
        let _ = writeln!(out, "  policyTypes:\n  - {kind}\n  {list}:\n  - {field}:");
        peer(&mut out, 4, &subject.namespace, other, other_ip);
        let _ = writeln!(
            out,
            "    ports:\n    - protocol: {}\n      port: {}",
            facts.protocol, facts.port
        );
    }
    (!out.is_empty()).then_some(out)
}
