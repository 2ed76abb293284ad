//! Filters that read the explanation: pods, namespaces, labels, workloads,
//! Services, policies, hints, verdicts; and events without an explanation.

use dropscope_proto::v1::Verdict;

use super::{
    Row, allow, both, check,
    events::{dnat, explained, plain, service, with_explanation},
    filter, label, s,
};

/// One row per rule.
fn rows() -> Vec<Row> {
    vec![
        // Pods.
        allow(
            "pod: PREFIX of the source",
            vec![filter(|f| f.pod = s(&["frontend"]))],
            explained(),
            true,
        ),
        allow(
            "pod: PREFIX of the destination",
            vec![filter(|f| f.pod = s(&["api-"]))],
            explained(),
            true,
        ),
        allow(
            "pod: NAMESPACE/PREFIX",
            vec![filter(|f| f.pod = s(&["shop/api"]))],
            explained(),
            true,
        ),
        allow(
            "pod: NAMESPACE/PREFIX in another namespace",
            vec![filter(|f| f.pod = s(&["other/api"]))],
            explained(),
            false,
        ),
        allow(
            "pod: NAMESPACE/ selects the namespace",
            vec![filter(|f| f.pod = s(&["shop/"]))],
            explained(),
            true,
        ),
        allow(
            "pod: a prefix, not a substring",
            vec![filter(|f| f.pod = s(&["7d9f"]))],
            explained(),
            false,
        ),
        allow(
            "source_pod: the destination is not the source",
            vec![filter(|f| f.source_pod = s(&["api"]))],
            explained(),
            false,
        ),
        allow(
            "source_pod: NAMESPACE/PREFIX of the source",
            vec![filter(|f| f.source_pod = s(&["shop/frontend"]))],
            explained(),
            true,
        ),
        allow(
            "destination_pod: the destination",
            vec![filter(|f| f.destination_pod = s(&["api"]))],
            explained(),
            true,
        ),
        allow(
            "destination_pod: the source is not the destination",
            vec![filter(|f| f.destination_pod = s(&["frontend"]))],
            explained(),
            false,
        ),
        // Namespaces.
        allow(
            "namespace: of either end",
            vec![filter(|f| f.namespace = s(&["shop"]))],
            explained(),
            true,
        ),
        allow(
            "namespace: of no end",
            vec![filter(|f| f.namespace = s(&["kube-system"]))],
            explained(),
            false,
        ),
        allow(
            "namespace: of the Service the flow was sent to",
            vec![filter(|f| f.namespace = s(&["edge"]))],
            with_explanation(dnat(), |e| e.service = Some(service("edge", "api-svc"))),
            true,
        ),
        // Labels.
        allow(
            "label =: on the source",
            vec![label(&["app=frontend"])],
            explained(),
            true,
        ),
        allow(
            "label ==: on the destination",
            vec![label(&["app==api"])],
            explained(),
            true,
        ),
        allow(
            "label: every requirement on the same end",
            vec![label(&["app=frontend,env=prod"])],
            explained(),
            false,
        ),
        allow(
            "label !=: another value fails",
            vec![label(&["tier!=web,app=frontend"])],
            explained(),
            false,
        ),
        allow(
            "label !=: holds when the key is absent",
            vec![label(&["env!=prod,app=frontend"])],
            explained(),
            true,
        ),
        allow(
            "label in: one of the values",
            vec![label(&["env in (staging, prod)"])],
            explained(),
            true,
        ),
        allow(
            "label in: none of the values",
            vec![label(&["env in (staging)"])],
            explained(),
            false,
        ),
        allow(
            "label notin: a listed value fails",
            vec![label(&["env notin (prod),app=api"])],
            explained(),
            false,
        ),
        allow(
            "label notin: holds when the key is absent",
            vec![label(&["env notin (prod),app=frontend"])],
            explained(),
            true,
        ),
        allow("label exists", vec![label(&["tier"])], explained(), true),
        allow(
            "label exists: on no end",
            vec![label(&["canary"])],
            explained(),
            false,
        ),
        allow(
            "label !key: on the end without it",
            vec![label(&["!tier"])],
            explained(),
            true,
        ),
        allow(
            "label !key: fails on the end with it",
            vec![label(&["!tier,app=frontend"])],
            explained(),
            false,
        ),
        allow(
            "label: one of several selectors",
            vec![label(&["canary", "env=prod"])],
            explained(),
            true,
        ),
        // Workloads.
        allow(
            "workload: KIND/NAME, kind case-insensitive",
            vec![filter(|f| f.workload = s(&["deployment/frontend"]))],
            explained(),
            true,
        ),
        allow(
            "workload: NAME alone",
            vec![filter(|f| f.workload = s(&["api"]))],
            explained(),
            true,
        ),
        allow(
            "workload: the name with another kind",
            vec![filter(|f| f.workload = s(&["Deployment/api"]))],
            explained(),
            false,
        ),
        // Services.
        allow(
            "service: NAMESPACE/NAME the flow was sent to",
            vec![filter(|f| f.service = s(&["shop/api-svc"]))],
            dnat(),
            true,
        ),
        allow(
            "service: NAME alone",
            vec![filter(|f| f.service = s(&["api-svc"]))],
            dnat(),
            true,
        ),
        allow(
            "service: the name in another namespace",
            vec![filter(|f| f.service = s(&["other/api-svc"]))],
            dnat(),
            false,
        ),
        allow(
            "service: a destination identity that is a Service",
            vec![filter(|f| f.service = s(&["shop/lonely"]))],
            with_explanation(explained(), |e| {
                if let Some(end) = e.destination.as_mut() {
                    end.identity = Some(service("shop", "lonely"));
                }
            }),
            true,
        ),
        allow(
            "service: none involved",
            vec![filter(|f| f.service = s(&["api-svc"]))],
            explained(),
            false,
        ),
        // Policies, hints, verdicts.
        allow(
            "policy: isolating the source for egress",
            vec![filter(|f| f.policy = s(&["shop/egress-web"]))],
            explained(),
            true,
        ),
        allow(
            "policy: isolating the destination for ingress",
            vec![filter(|f| f.policy = s(&["default-deny"]))],
            explained(),
            true,
        ),
        allow(
            "policy: the closest miss",
            vec![filter(|f| f.policy = s(&["allow-api"]))],
            explained(),
            true,
        ),
        allow(
            "policy: not involved",
            vec![filter(|f| f.policy = s(&["shop/other"]))],
            explained(),
            false,
        ),
        allow(
            "policy: the name in another namespace",
            vec![filter(|f| f.policy = s(&["other/allow-api"]))],
            explained(),
            false,
        ),
        allow(
            "hint: a code present",
            vec![filter(|f| f.hint = s(&["port_mismatch"]))],
            explained(),
            true,
        ),
        allow(
            "hint: a code absent",
            vec![filter(|f| f.hint = s(&["dns_egress_denied"]))],
            explained(),
            false,
        ),
        allow(
            "verdict: the flow's verdict",
            vec![filter(|f| {
                f.verdict = vec![Verdict::Allow as i32, Verdict::DenyIngress as i32]
            })],
            explained(),
            true,
        ),
        allow(
            "verdict: another verdict",
            vec![filter(|f| f.verdict = vec![Verdict::DenyEgress as i32])],
            explained(),
            false,
        ),
        // Events without an explanation.
        allow(
            "no explanation: a namespace filter does not match",
            vec![filter(|f| f.namespace = s(&["shop"]))],
            plain(),
            false,
        ),
        allow(
            "no explanation: a verdict filter does not match",
            vec![filter(|f| f.verdict = vec![Verdict::DenyIngress as i32])],
            plain(),
            false,
        ),
        allow(
            "no explanation: even !key does not match",
            vec![label(&["!canary"])],
            plain(),
            false,
        ),
        both(
            "no explanation: a metadata deny filter keeps the event",
            vec![],
            vec![filter(|f| f.namespace = s(&["shop"]))],
            plain(),
            true,
        ),
    ]
}

/// Every row of [`rows`].
#[test]
fn metadata_rules() {
    check(rows());
}
