//! One row per rule of the networking.k8s.io/v1 NetworkPolicy reference
//! (NetworkPolicySpec, NetworkPolicyIngressRule/EgressRule,
//! NetworkPolicyPeer, IPBlock, NetworkPolicyPort), each naming its rule.

use super::cluster::{cluster, run};
use crate::model::{HintCode, Protocol, Verdict};

struct Row {
    rule: &'static str,
    policies: &'static [(&'static str, &'static str, &'static str)],
    from: &'static str,
    to: &'static str,
    port: u16,
    protocol: Protocol,
    verdict: Verdict,
    /// `policy/rule-index` entries expected in ingress/egress allowed_by.
    allowed_by: &'static [&'static str],
    hint: Option<HintCode>,
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

const DENY_INGRESS_API: (&str, &str, &str) = (
    "default",
    "deny-ingress",
    "{podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress]}",
);

fn rows() -> Vec<Row> {
    use Verdict::*;
    vec![
        Row {
            rule: "a pod no policy selects is not isolated: everything is allowed",
            policies: &[],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: Some(HintCode::PolicyAllows),
        },
        Row {
            rule: "podSelector {} selects every pod of the namespace; Ingress with no rules denies all ingress",
            policies: &[(
                "default",
                "deny-all",
                "{podSelector: {}, policyTypes: [Ingress]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "policyTypes unset defaults to Ingress: a rule-less policy isolates ingress",
            policies: &[("default", "bare", "{podSelector: {}}")],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "policyTypes unset with egress rules defaults to Ingress and Egress",
            policies: &[(
                "default",
                "web-egress",
                "{podSelector: {matchLabels: {app: web}}, egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyEgress,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "policyTypes unset with `egress: []` does not add Egress",
            policies: &[(
                "default",
                "web-empty-egress",
                "{podSelector: {matchLabels: {app: web}}, egress: []}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "policyTypes [Egress] does not isolate ingress",
            policies: &[(
                "default",
                "api-egress-only",
                "{podSelector: {matchLabels: {app: api}}, policyTypes: [Egress]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "`ingress: [{}]` (a rule with no from and no ports) allows all ingress",
            policies: &[(
                "default",
                "allow-all",
                "{podSelector: {}, policyTypes: [Ingress], ingress: [{}]}",
            )],
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/allow-all/0"],
            hint: None,
        },
        Row {
            rule: "`ingress: []` with Ingress in policyTypes denies all ingress",
            policies: &[(
                "default",
                "none",
                "{podSelector: {}, policyTypes: [Ingress], ingress: []}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "podSelector peer without namespaceSelector selects pods of the policy's namespace only",
            policies: &[(
                "default",
                "from-client",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]}",
            )],
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "podSelector peer selects matching pods of the policy's namespace",
            policies: &[(
                "default",
                "from-web",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/from-web/0"],
            hint: None,
        },
        Row {
            rule: "namespaceSelector alone selects every pod of the selected namespaces",
            policies: &[(
                "default",
                "from-team-web",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}}]}]}",
            )],
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/from-team-web/0"],
            hint: None,
        },
        Row {
            rule: "namespaceSelector {} selects every namespace",
            policies: &[(
                "default",
                "from-anywhere",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}",
            )],
            from: "backend/worker",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/from-anywhere/0"],
            hint: None,
        },
        Row {
            rule: "namespaceSelector and podSelector in one peer are ANDed",
            policies: &[(
                "default",
                "and",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {matchLabels: {app: other}}}]}]}",
            )],
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::SelectorMatchesNoPod),
        },
        Row {
            rule: "namespaceSelector and podSelector in separate peers are ORed",
            policies: &[(
                "default",
                "or",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}}, {podSelector: {matchLabels: {app: other}}}]}]}",
            )],
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/or/0"],
            hint: None,
        },
        Row {
            rule: "matchExpressions In selects a listed value",
            policies: &[(
                "default",
                "in",
                "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [web, x]}]}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/in/0"],
            hint: None,
        },
        Row {
            rule: "matchExpressions NotIn rejects a listed value",
            policies: &[(
                "default",
                "notin",
                "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [web]}]}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "matchExpressions Exists selects pods carrying the key",
            policies: &[(
                "default",
                "exists",
                "{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}, ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Exists}]}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/exists/0"],
            hint: None,
        },
        Row {
            rule: "matchExpressions DoesNotExist rejects pods carrying the key",
            policies: &[(
                "default",
                "no-env",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}}]}]}",
            )],
            from: "backend/worker",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "ipBlock matches an address inside its cidr (pod addresses too, by dropscope's choice)",
            policies: &[(
                "default",
                "cidr",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/cidr/0"],
            hint: None,
        },
        Row {
            rule: "ipBlock except removes addresses from the cidr",
            policies: &[(
                "default",
                "cidr-except",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::IpBlockExcept),
        },
        Row {
            rule: "ipBlock does not match an address outside its cidr",
            policies: &[(
                "default",
                "cidr-other",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/16}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::IpBlockNotCovering),
        },
        Row {
            rule: "ipBlock matches a source outside the cluster",
            policies: &[(
                "default",
                "world",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}",
            )],
            from: "203.0.113.9",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/world/0"],
            hint: None,
        },
        Row {
            rule: "a port entry with a number matches that port",
            policies: &[(
                "default",
                "port",
                "{podSelector: {}, ingress: [{ports: [{port: 8080}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/port/0"],
            hint: None,
        },
        Row {
            rule: "a port entry's protocol defaults to TCP: UDP does not match",
            policies: &[(
                "default",
                "port",
                "{podSelector: {}, ingress: [{ports: [{port: 8080}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: UDP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::PortMismatch),
        },
        Row {
            rule: "a port entry with a protocol and no port matches every port of that protocol",
            policies: &[(
                "default",
                "all-udp",
                "{podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 9999,
            protocol: UDP,
            verdict: Allow,
            allowed_by: &["default/all-udp/0"],
            hint: None,
        },
        Row {
            rule: "endPort makes port..endPort an inclusive range",
            policies: &[(
                "default",
                "range",
                "{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 8080}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/range/0"],
            hint: None,
        },
        Row {
            rule: "a port above endPort does not match",
            policies: &[(
                "default",
                "range",
                "{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 8079}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::PortMismatch),
        },
        Row {
            rule: "a named port resolves against the destination pod's container ports",
            policies: &[(
                "default",
                "named",
                "{podSelector: {}, ingress: [{ports: [{port: http}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/named/0"],
            hint: None,
        },
        Row {
            rule: "a named port that resolves to another number does not match",
            policies: &[(
                "default",
                "named",
                "{podSelector: {}, ingress: [{ports: [{port: metrics}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::NamedPortUnresolved),
        },
        Row {
            rule: "a named port needs a container port of that name with the same protocol",
            policies: &[(
                "default",
                "named-udp",
                "{podSelector: {}, ingress: [{ports: [{port: http, protocol: UDP}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: UDP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::NamedPortUnresolved),
        },
        Row {
            rule: "SCTP ports match SCTP",
            policies: &[(
                "default",
                "sctp",
                "{podSelector: {}, ingress: [{ports: [{protocol: SCTP, port: 3868}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 3868,
            protocol: Protocol::Sctp,
            verdict: Allow,
            allowed_by: &["default/sctp/0"],
            hint: None,
        },
        Row {
            rule: "policies are a union: one allowing policy is enough",
            policies: &[
                (
                    "default",
                    "deny-all",
                    "{podSelector: {}, policyTypes: [Ingress]}",
                ),
                (
                    "default",
                    "allow-web",
                    "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}",
                ),
            ],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/allow-web/0"],
            hint: None,
        },
        Row {
            rule: "a flow needs ingress at the destination even when egress allows it",
            policies: &[
                (
                    "default",
                    "web-out",
                    "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: api}}}]}]}",
                ),
                DENY_INGRESS_API,
            ],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &["default/web-out/0"],
            hint: None,
        },
        Row {
            rule: "a flow needs egress from the source even when ingress allows it",
            policies: &[
                (
                    "default",
                    "web-out-none",
                    "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}",
                ),
                (
                    "default",
                    "api-in",
                    "{podSelector: {matchLabels: {app: api}}, ingress: [{}]}",
                ),
            ],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyEgress,
            allowed_by: &["default/api-in/0"],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "both directions can deny",
            policies: &[(
                "default",
                "deny-both",
                "{podSelector: {}, policyTypes: [Ingress, Egress]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyBoth,
            allowed_by: &[],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "an egress rule without `to` allows every destination on its ports",
            policies: &[(
                "default",
                "out-8080",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{ports: [{port: 8080}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/out-8080/0"],
            hint: None,
        },
        Row {
            rule: "egress ipBlock except keeps private ranges out",
            policies: &[(
                "default",
                "internet",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyEgress,
            allowed_by: &[],
            hint: Some(HintCode::IpBlockExcept),
        },
        Row {
            rule: "egress ipBlock allows an outside destination",
            policies: &[(
                "default",
                "internet",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}], ports: [{port: 443}]}]}",
            )],
            from: "default/web",
            to: "203.0.113.9",
            port: 443,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/internet/0"],
            hint: None,
        },
        Row {
            rule: "a pod cannot block traffic to itself",
            policies: &[(
                "default",
                "deny-both",
                "{podSelector: {}, policyTypes: [Ingress, Egress]}",
            )],
            from: "default/api",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: Some(HintCode::TrafficToSelf),
        },
        Row {
            rule: "policies do not isolate host-network pods",
            policies: &[(
                "default",
                "deny-all",
                "{podSelector: {}, policyTypes: [Ingress]}",
            )],
            from: "default/web",
            to: "default/hostpod",
            port: 10250,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: Some(HintCode::HostNetworkPod),
        },
        Row {
            rule: "selectors do not match a host-network source (it has the node address)",
            policies: &[(
                "default",
                "from-default",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {}}]}]}",
            )],
            from: "default/hostpod",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::NodeSourceNotSelectable),
        },
        Row {
            rule: "a node address matches an ipBlock",
            policies: &[(
                "default",
                "from-nodes",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}]}]}",
            )],
            from: "10.0.0.2",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/from-nodes/0"],
            hint: None,
        },
        Row {
            rule: "a node address is not matched by pod selectors",
            policies: &[(
                "default",
                "pods-only",
                "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
            )],
            from: "10.0.0.2",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: DenyIngress,
            allowed_by: &[],
            hint: Some(HintCode::NodeSourceNotSelectable),
        },
        Row {
            rule: "a policy whose podSelector does not match the pod does not isolate it",
            policies: &[(
                "default",
                "db-only",
                "{podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "a policy applies only to pods of its own namespace",
            policies: &[(
                "frontend",
                "deny-api",
                "{podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "podSelector {} beside a namespaceSelector selects every pod of those namespaces",
            policies: &[(
                "default",
                "team-web-all",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {}}]}]}",
            )],
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/team-web-all/0"],
            hint: None,
        },
        Row {
            rule: "explicit policyTypes [Ingress] ignores the policy's egress rules",
            policies: &[(
                "default",
                "ingress-only",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress], egress: [{to: [{ipBlock: {cidr: 192.0.2.1/32}}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &[],
            hint: None,
        },
        Row {
            rule: "an egress named port resolves on the destination pod",
            policies: &[(
                "default",
                "to-pg",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{ports: [{port: pg}]}]}",
            )],
            from: "default/web",
            to: "default/db",
            port: 5432,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/to-pg/0"],
            hint: None,
        },
        Row {
            rule: "an egress named port the destination pod does not have does not match",
            policies: &[(
                "default",
                "to-pg",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{ports: [{port: pg}]}]}",
            )],
            from: "default/web",
            to: "default/api",
            port: 5432,
            protocol: TCP,
            verdict: DenyEgress,
            allowed_by: &[],
            hint: Some(HintCode::NamedPortUnresolved),
        },
        Row {
            rule: "ipBlock matches IPv6 addresses in an IPv6 cidr",
            policies: &[(
                "default",
                "v6",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: \"2001:db8::/32\"}}]}]}",
            )],
            from: "2001:db8::7",
            to: "default/api",
            port: 8080,
            protocol: TCP,
            verdict: Allow,
            allowed_by: &["default/v6/0"],
            hint: None,
        },
        Row {
            rule: "a flow through a Service is evaluated on the backend pod and the target port",
            policies: &[(
                "kube-system",
                "dns-in",
                "{podSelector: {matchLabels: {k8s-app: kube-dns}}, ingress: [{ports: [{protocol: UDP, port: 5353}]}]}",
            )],
            from: "frontend/client",
            to: "kube-system/svc/kube-dns",
            port: 53,
            protocol: UDP,
            verdict: Allow,
            allowed_by: &["kube-system/dns-in/0"],
            hint: None,
        },
    ]
}

#[test]
fn networkpolicy_reference_rules() {
    let rows = rows();
    assert!(rows.len() >= 50, "every rule has a row");
    for row in rows {
        let store = cluster(row.policies);
        let explanation = run(&store, row.from, row.to, row.port, row.protocol);
        assert_eq!(
            explanation.verdict, row.verdict,
            "{}: {explanation:#?}",
            row.rule
        );
        let allowed_by: Vec<String> = explanation
            .egress
            .allowed_by
            .iter()
            .chain(&explanation.ingress.allowed_by)
            .map(|rule| format!("{}/{}", rule.policy, rule.rule))
            .collect();
        for want in row.allowed_by {
            assert!(
                allowed_by.iter().any(|got| got == want),
                "{}: allowed_by {allowed_by:?} lacks {want}",
                row.rule
            );
        }
        if let Some(code) = row.hint {
            assert!(
                explanation.has_hint(code),
                "{}: no hint {code} in {:#?}",
                row.rule,
                explanation.hints
            );
        }
        if row.verdict.is_allow() {
            assert!(
                explanation.suggested_policy.is_none(),
                "{}: allowed flows need no fix",
                row.rule
            );
        }
    }
}

#[test]
fn service_flow_reports_target_port_and_service() {
    let store = cluster(&[]);
    let explanation = run(
        &store,
        "frontend/client",
        "kube-system/svc/kube-dns",
        53,
        UDP,
    );
    assert_eq!(explanation.port, 5353);
    assert_eq!(explanation.destination.ip.to_string(), "10.244.1.53");
    let Some(crate::model::Identity::Service {
        name,
        port_name,
        backend,
        ..
    }) = &explanation.service
    else {
        panic!("service missing: {explanation:#?}");
    };
    assert_eq!(name, "kube-dns");
    assert_eq!(port_name.as_deref(), Some("dns"));
    assert_eq!(backend.as_ref().map(|backend| backend.port), Some(5353));
}
