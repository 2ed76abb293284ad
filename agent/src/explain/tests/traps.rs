//! The traps of the incident runbooks, each named by its hint; and the
//! suggested policy, applied to the same cluster, must allow the flow.

use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::cluster::{cluster, run};
use crate::{
    enrich::store::{Object, WatchEvent},
    model::{Direction, HintCode, Protocol, Verdict},
};

pub(crate) struct Trap {
    pub(crate) name: &'static str,
    pub(crate) policies: &'static [(&'static str, &'static str, &'static str)],
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    verdict: Verdict,
    pub(crate) hints: &'static [HintCode],
    /// (policy, direction, rule) expected as closest miss.
    closest: Option<(&'static str, Direction, usize)>,
}

const DEFAULT_DENY_EGRESS: (&str, &str, &str) = (
    "default",
    "default-deny-egress",
    "{podSelector: {}, policyTypes: [Egress]}",
);
const DEFAULT_DENY_INGRESS: (&str, &str, &str) = (
    "default",
    "default-deny-ingress",
    "{podSelector: {}, policyTypes: [Ingress]}",
);

pub(crate) fn traps() -> Vec<Trap> {
    vec![
        Trap {
            name: "default-deny egress kills DNS",
            policies: &[DEFAULT_DENY_EGRESS],
            from: "default/web",
            to: "kube-system/svc/kube-dns",
            port: 53,
            protocol: Protocol::Udp,
            verdict: Verdict::DenyEgress,
            hints: &[HintCode::DnsEgressDenied, HintCode::DefaultDeny],
            closest: None,
        },
        Trap {
            name: "egress allows the Service port 53, the packet is on 5353 after DNAT",
            policies: &[
                DEFAULT_DENY_EGRESS,
                (
                    "default",
                    "allow-dns",
                    "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}], ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]}",
                ),
            ],
            from: "default/web",
            to: "kube-system/svc/kube-dns",
            port: 53,
            protocol: Protocol::Udp,
            verdict: Verdict::DenyEgress,
            hints: &[
                HintCode::ServicePortNotTargetPort,
                HintCode::DnsEgressDenied,
            ],
            closest: Some(("default/allow-dns", Direction::Egress, 0)),
        },
        Trap {
            name: "egress ipBlock on the kube-dns ClusterIP never matches (post-DNAT address)",
            policies: &[(
                "default",
                "dns-by-ip",
                "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.96.0.10/32}}], ports: [{protocol: UDP, port: 5353}]}]}",
            )],
            from: "default/web",
            to: "10.96.0.10",
            port: 53,
            protocol: Protocol::Udp,
            verdict: Verdict::DenyEgress,
            hints: &[HintCode::IpBlockIsServiceIp, HintCode::DnsEgressDenied],
            closest: Some(("default/dns-by-ip", Direction::Egress, 0)),
        },
        Trap {
            name: "kubelet probe from the node address blocked by a pods-only ingress policy",
            policies: &[(
                "default",
                "api-from-pods",
                "{podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {}}]}]}",
            )],
            from: "10.0.0.1",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::KubeletProbeBlocked],
            closest: Some(("default/api-from-pods", Direction::Ingress, 0)),
        },
        Trap {
            name: "namespaceSelector on a label no namespace carries (name: frontend)",
            policies: &[
                (
                    "backend",
                    "default-deny",
                    "{podSelector: {}, policyTypes: [Ingress]}",
                ),
                (
                    "backend",
                    "allow-frontend",
                    "{podSelector: {matchLabels: {app: worker}}, ingress: [{from: [{namespaceSelector: {matchLabels: {name: frontend}}}], ports: [{port: 8080}]}]}",
                ),
            ],
            from: "frontend/client",
            to: "backend/worker",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::NamespaceLabelMissing],
            closest: Some(("backend/allow-frontend", Direction::Ingress, 0)),
        },
        Trap {
            name: "a podSelector peer that matches no pod",
            policies: &[(
                "default",
                "api-from-frontend",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::SelectorMatchesNoPod],
            closest: Some(("default/api-from-frontend", Direction::Ingress, 0)),
        },
        Trap {
            name: "the allow policy's own podSelector matches no pod (app: api-server)",
            policies: &[
                DEFAULT_DENY_INGRESS,
                (
                    "default",
                    "api-policy",
                    "{podSelector: {matchLabels: {app: api-server}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}",
                ),
            ],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::PolicySelectsNoPod],
            closest: None,
        },
        Trap {
            name: "the allow policy lives in another namespace than the pod",
            policies: &[
                DEFAULT_DENY_INGRESS,
                (
                    "frontend",
                    "api-allow-web",
                    "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}",
                ),
            ],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::PolicyInOtherNamespace],
            closest: None,
        },
        Trap {
            name: "NetworkPolicy allows it: the drop came from elsewhere",
            policies: &[
                DEFAULT_DENY_INGRESS,
                (
                    "default",
                    "api-allow-web",
                    "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]}",
                ),
            ],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::Allow,
            hints: &[HintCode::PolicyAllows],
            closest: None,
        },
        Trap {
            name: "a namespaceSelector whose label exists, but on no namespace with that value",
            policies: &[(
                "backend",
                "allow-payments",
                "{podSelector: {matchLabels: {app: worker}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: payments}}}]}]}",
            )],
            from: "frontend/client",
            to: "backend/worker",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::NamespaceSelectorMatchesNothing],
            closest: Some(("backend/allow-payments", Direction::Ingress, 0)),
        },
        Trap {
            name: "an ipBlock for node-2's pods, the client on node-1",
            policies: &[(
                "default",
                "api-from-node-2",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{ipBlock: {cidr: 10.244.2.0/24}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::IpBlockNotCovering],
            closest: Some(("default/api-from-node-2", Direction::Ingress, 0)),
        },
        Trap {
            name: "an ipBlock that covers the client, and an except that removes it",
            policies: &[(
                "default",
                "api-from-cluster",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::IpBlockExcept],
            closest: Some(("default/api-from-cluster", Direction::Ingress, 0)),
        },
        Trap {
            name: "the peer is allowed on the metrics port, the flow is on http",
            policies: &[(
                "default",
                "api-metrics",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 9090}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::PortMismatch],
            closest: Some(("default/api-metrics", Direction::Ingress, 0)),
        },
        Trap {
            name: "a named port the destination pod does not declare (grpc)",
            policies: &[(
                "default",
                "api-grpc",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: grpc}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::NamedPortUnresolved],
            closest: Some(("default/api-grpc", Direction::Ingress, 0)),
        },
        Trap {
            name: "another node's address, which only an ipBlock can match",
            policies: &[(
                "default",
                "api-from-pods",
                "{podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {}}]}]}",
            )],
            from: "10.0.0.2",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyIngress,
            hints: &[HintCode::NodeSourceNotSelectable],
            closest: Some(("default/api-from-pods", Direction::Ingress, 0)),
        },
        Trap {
            name: "a pod calling itself under default-deny ingress",
            policies: &[DEFAULT_DENY_INGRESS],
            from: "default/api",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::Allow,
            hints: &[HintCode::TrafficToSelf],
            closest: None,
        },
        Trap {
            name: "a host-network pod under default-deny ingress",
            policies: &[DEFAULT_DENY_INGRESS],
            from: "default/web",
            to: "default/hostpod",
            port: 22,
            protocol: Protocol::Tcp,
            verdict: Verdict::Allow,
            hints: &[HintCode::HostNetworkPod],
            closest: None,
        },
        Trap {
            name: "default-deny egress to a pod address no pod holds (a pod gone, a stale IP)",
            policies: &[DEFAULT_DENY_EGRESS],
            from: "default/web",
            to: "10.244.1.99",
            port: 443,
            protocol: Protocol::Tcp,
            verdict: Verdict::DenyEgress,
            hints: &[HintCode::UnknownAddress, HintCode::DefaultDeny],
            closest: None,
        },
    ]
}

#[test]
fn runbook_traps_are_named() {
    for trap in traps() {
        let mut store = cluster(trap.policies);
        let explanation = run(&store, trap.from, trap.to, trap.port, trap.protocol);
        assert_eq!(
            explanation.verdict, trap.verdict,
            "{}: {explanation:#?}",
            trap.name
        );
        for code in trap.hints {
            assert!(
                explanation.has_hint(*code),
                "{}: no {code} in {:#?}",
                trap.name,
                explanation.hints
            );
        }
        match (trap.closest, &explanation.closest_miss) {
            (None, _) => {}
            (Some((policy, direction, rule)), Some(miss)) => {
                assert_eq!(
                    (miss.policy.to_string().as_str(), miss.direction, miss.rule),
                    (policy, direction, rule),
                    "{}: closest miss {miss:#?}",
                    trap.name
                );
                assert!(!miss.why.is_empty(), "{}", trap.name);
            }
            (Some(_), None) => panic!("{}: no closest miss", trap.name),
        }
        if trap.verdict.is_allow() {
            continue;
        }
        // The suggested policy, applied, must allow the flow.
        let yaml = explanation
            .suggested_policy
            .clone()
            .expect("a suggested policy");
        for document in yaml.split("---\n") {
            let policy: NetworkPolicy =
                serde_norway::from_str(document).expect("suggested policy parses");
            store
                .apply(WatchEvent::Apply(Object::NetworkPolicy(Box::new(policy))))
                .expect("suggested policy is valid");
        }
        let fixed = run(&store, trap.from, trap.to, trap.port, trap.protocol);
        assert_eq!(
            fixed.verdict,
            Verdict::Allow,
            "{}: suggested policy does not fix it:\n{yaml}",
            trap.name
        );
    }
}

#[test]
fn explanation_json_has_the_documented_shape() {
    let store = cluster(&[DEFAULT_DENY_EGRESS]);
    let explanation = run(
        &store,
        "default/web",
        "kube-system/svc/kube-dns",
        53,
        Protocol::Udp,
    );
    let json = serde_json::to_value(crate::print::explain::as_message(&explanation))
        .expect("serializes")["explanation"]
        .clone();
    assert_eq!(json["verdict"], "VERDICT_DENY_EGRESS");
    assert_eq!(json["source"]["identity"]["pod"]["name"], "web");
    assert_eq!(json["service"]["service"]["name"], "kube-dns");
    assert_eq!(json["port"], 5353);
    assert_eq!(json["protocol"], "PROTOCOL_UDP");
    assert_eq!(json["egress"]["isolated"], true);
    assert_eq!(json["egress"]["policies"][0]["name"], "default-deny-egress");
    assert_ne!(
        json["ingress"]["isolated"], true,
        "false is omitted in proto3 JSON"
    );
    assert!(
        json["hints"]
            .as_array()
            .is_some_and(|hints| hints.iter().any(|hint| hint["code"] == "dns_egress_denied"))
    );
    assert!(
        json["suggestedPolicy"]
            .as_str()
            .is_some_and(|yaml| yaml.contains("kind: NetworkPolicy"))
    );
}

/// A drop event carries the conntrack original destination (the VIP): the
/// flow is the backend tuple, the Service comes from the original.
#[test]
fn conntrack_original_names_the_service_and_the_dnat_trap() {
    use crate::{
        enrich::view::View,
        explain::{Flow, Target, explain},
    };
    let store = cluster(&[(
        "default",
        "allow-dns-53",
        "{podSelector: {}, policyTypes: [Egress], egress: [{ports: [{protocol: UDP, port: 53}]}]}",
    )]);
    use crate::model::{Endpoint, Tuple, record::Conntrack};
    let ip = |text: &str| text.parse().expect("ip");
    let end = |address: &str, port| Endpoint {
        ip: ip(address),
        port,
    };
    let tuple = |src, dst| Tuple {
        src,
        dst,
        protocol: Protocol::Udp,
    };
    // The client sent to the VIP; the reply comes from the backend.
    let conntrack = Conntrack {
        original: tuple(end("10.244.1.11", 40000), end("10.96.0.10", 53)),
        reply: tuple(end("10.244.1.53", 5353), end("10.244.1.11", 40000)),
    };
    let flow = Flow::from_packet(&conntrack.translated(), Some(&conntrack));
    assert_eq!(flow.original, Some((ip("10.96.0.10"), 53)));
    assert_eq!(flow.to, Target::Ip(ip("10.244.1.53")));
    let explanation = explain(&View::new(&store), &flow).expect("explains");
    assert_eq!(explanation.verdict, Verdict::DenyEgress);
    assert!(
        explanation.has_hint(HintCode::ServicePortNotTargetPort),
        "{:#?}",
        explanation.hints
    );
    let Some(crate::model::Identity::Service { name, backend, .. }) = &explanation.service else {
        panic!("no service: {explanation:#?}");
    };
    assert_eq!(name, "kube-dns");
    assert_eq!(backend.as_ref().map(|backend| backend.port), Some(5353));
}
