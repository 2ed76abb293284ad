//! One row per rule of the networking.k8s.io/v1 NetworkPolicy reference
//! (NetworkPolicySpec, NetworkPolicyIngressRule/EgressRule,
//! NetworkPolicyPeer, IPBlock, NetworkPolicyPort), each naming its rule.

use super::cluster::{cluster, run};
use crate::model::{HintCode, Protocol, Verdict};

/// One rule of the reference: policies, a flow, and what must come out.
pub(super) struct Row {
    pub(super) rule: &'static str,
    pub(super) policies: &'static [(&'static str, &'static str, &'static str)],
    pub(super) from: &'static str,
    pub(super) to: &'static str,
    pub(super) port: u16,
    pub(super) protocol: Protocol,
    pub(super) verdict: Verdict,
    /// `policy/rule-index` entries expected in ingress/egress allowed_by.
    pub(super) allowed_by: &'static [&'static str],
    pub(super) hint: Option<HintCode>,
}

pub(super) const TCP: Protocol = Protocol::Tcp;
pub(super) const UDP: Protocol = Protocol::Udp;

pub(super) const DENY_INGRESS_API: (&str, &str, &str) = (
    "default",
    "deny-ingress",
    "{podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress]}",
);

/// Every row: policy types, peers, selectors and ipBlocks here; ports,
/// directions and special addresses in [`super::semantics_ports`].
fn rows() -> Vec<Row> {
    let mut rows = peer_rows();
    rows.extend(super::semantics_ports::rows());
    rows
}

fn peer_rows() -> Vec<Row> {
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
