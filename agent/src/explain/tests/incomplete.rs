//! Fail closed: one row per rule of what makes an explanation incomplete.
//! Objects the store could not load (through the same `apply` as the
//! watch and the snapshot loader) that could decide the verdict are listed;
//! the computed verdict stays, `explanation_incomplete` is the first hint
//! and `policy_allows` is never said.

use k8s_openapi::api::core::v1::Namespace as K8sNamespace;

use super::{
    cluster::{cluster, run},
    semantics::TCP,
};
use crate::{
    enrich::{
        store::{Kind, Object, Store, WatchEvent},
        view::View,
    },
    explain::{Error, Flow, explain},
    model::{HintCode, Verdict},
    testkit::*,
};

/// The reported bug: `operator: in` (lower case) makes the policy that
/// isolates default/api invalid.
pub(super) const ISOLATE_API_BROKEN: (&str, &str, &str) = (
    "default",
    "isolate-api",
    "{podSelector: {matchExpressions: [{key: app, operator: in, values: [api]}]}, policyTypes: [Ingress]}",
);

/// Applies an object the store must reject.
fn reject(store: &mut Store, object: Object) {
    store
        .apply(WatchEvent::Apply(object))
        .expect_err("an invalid object");
}

pub(super) fn broken_policy(store: &mut Store, (namespace, name, spec): (&str, &str, &str)) {
    reject(store, mk_policy(namespace, name, spec));
}

/// A pod whose container port 0 makes it invalid, with or without an IP.
fn broken_pod(store: &mut Store, namespace: &str, name: &str, ip: Option<&str>) {
    let mut object = with_port(
        mk_pod(
            namespace,
            name,
            ip.unwrap_or("10.244.9.9"),
            &[("app", name)],
        ),
        "bad",
        0,
        TCP,
    );
    if ip.is_none() {
        object.status = None;
    }
    reject(store, pod(object));
}

struct Row {
    rule: &'static str,
    /// Valid policies of the cluster.
    policies: &'static [(&'static str, &'static str, &'static str)],
    /// What the store could not load.
    setup: fn(&mut Store),
    from: &'static str,
    to: &'static str,
    port: u16,
    verdict: Verdict,
    /// (kind, namespace, name) listed in `incomplete`, in order.
    incomplete: &'static [(&'static str, &'static str, &'static str)],
    /// A hint that must be present besides the incomplete one.
    hint: Option<HintCode>,
}

fn rows() -> Vec<Row> {
    use Verdict::*;
    vec![
        Row {
            rule: "a policy that failed to load in the destination's namespace is listed; the allow is not bare",
            policies: &[],
            setup: |store| broken_policy(store, ISOLATE_API_BROKEN),
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[("NetworkPolicy", "default", "isolate-api")],
            hint: None,
        },
        Row {
            rule: "a policy that failed to load in the source's namespace is listed",
            policies: &[],
            setup: |store| {
                broken_policy(
                    store,
                    (
                        "frontend",
                        "egress-only-dns",
                        "{podSelector: {}, policyTypes: [Egress, Sideways]}",
                    ),
                )
            },
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[("NetworkPolicy", "frontend", "egress-only-dns")],
            hint: None,
        },
        Row {
            rule: "a policy that failed to load in an unrelated namespace is not listed",
            policies: &[],
            setup: |store| {
                broken_policy(store, ("backend", "isolate-worker", ISOLATE_API_BROKEN.2))
            },
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[],
            hint: Some(HintCode::PolicyAllows),
        },
        Row {
            rule: "a denied flow keeps its verdict and its hints, and lists the missing policy that might allow it",
            policies: &[(
                "default",
                "deny-all",
                "{podSelector: {}, policyTypes: [Ingress]}",
            )],
            setup: |store| {
                broken_policy(
                    store,
                    (
                        "default",
                        "allow-web",
                        "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: in, values: [web]}]}}]}]}",
                    ),
                )
            },
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: DenyIngress,
            incomplete: &[("NetworkPolicy", "default", "allow-web")],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "a namespace whose labels are unknown is listed when a namespaceSelector is evaluated on it",
            policies: &[(
                "default",
                "from-team-web",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}}]}]}",
            )],
            setup: |store| {
                store.note_skipped(
                    Kind::Namespace,
                    "",
                    "frontend",
                    "metadata.labels: invalid type: sequence, expected a map".into(),
                )
            },
            from: "frontend/client",
            to: "default/api",
            port: 8080,
            verdict: DenyIngress,
            incomplete: &[("Namespace", "", "frontend")],
            hint: None,
        },
        Row {
            rule: "a namespace whose labels are unknown is not listed when no namespaceSelector needs them",
            policies: &[(
                "default",
                "from-pods",
                "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {}}]}]}",
            )],
            setup: |store| store.note_skipped(Kind::Namespace, "", "frontend", "bad labels".into()),
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[],
            hint: Some(HintCode::PolicyAllows),
        },
        Row {
            rule: "a pod that failed to load with the source's address is listed",
            policies: &[],
            setup: |store| broken_pod(store, "backend", "batch", Some("10.244.1.99")),
            from: "10.244.1.99",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[("Pod", "backend", "batch")],
            hint: Some(HintCode::UnknownAddress),
        },
        Row {
            rule: "a pod without an IP that failed to load may be an end no loaded pod is",
            policies: &[],
            setup: |store| broken_pod(store, "backend", "batch", None),
            from: "10.244.1.99",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[("Pod", "backend", "batch")],
            hint: Some(HintCode::UnknownAddress),
        },
        Row {
            rule: "a pod that failed to load is not listed when both ends are loaded pods",
            policies: &[],
            setup: |store| broken_pod(store, "backend", "batch", None),
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[],
            hint: Some(HintCode::PolicyAllows),
        },
        Row {
            rule: "a kind that could not be listed at all is listed as a whole",
            policies: &[],
            setup: |store| {
                store.note_unavailable(
                    Kind::NetworkPolicy,
                    "RBAC forbids listing NetworkPolicy".into(),
                )
            },
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[("NetworkPolicy", "", "")],
            hint: None,
        },
        Row {
            rule: "a pod sending to itself is allowed whatever is missing",
            policies: &[],
            setup: |store| broken_policy(store, ISOLATE_API_BROKEN),
            from: "default/api",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[],
            hint: Some(HintCode::TrafficToSelf),
        },
        Row {
            rule: "a valid version of the policy clears it",
            policies: &[],
            setup: |store| {
                broken_policy(store, ISOLATE_API_BROKEN);
                store
                    .apply(WatchEvent::Apply(mk_policy(
                        "default",
                        "isolate-api",
                        "{podSelector: {matchExpressions: [{key: app, operator: In, values: [api]}]}, policyTypes: [Ingress]}",
                    )))
                    .expect("the fixed policy");
            },
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: DenyIngress,
            incomplete: &[],
            hint: Some(HintCode::DefaultDeny),
        },
        Row {
            rule: "deleting the policy clears it",
            policies: &[],
            setup: |store| {
                broken_policy(store, ISOLATE_API_BROKEN);
                store
                    .apply(WatchEvent::Delete(mk_policy(
                        "default",
                        "isolate-api",
                        "{podSelector: {}}",
                    )))
                    .expect("delete");
            },
            from: "default/web",
            to: "default/api",
            port: 8080,
            verdict: Allow,
            incomplete: &[],
            hint: Some(HintCode::PolicyAllows),
        },
    ]
}

#[test]
fn what_failed_to_load_and_could_decide_the_verdict_is_listed() {
    for row in rows() {
        let mut store = cluster(row.policies);
        (row.setup)(&mut store);
        let explanation = run(&store, row.from, row.to, row.port, TCP);
        let rule = row.rule;
        assert_eq!(explanation.verdict, row.verdict, "{rule}");
        let listed: Vec<(&str, &str, &str)> = explanation
            .incomplete
            .iter()
            .map(|object| {
                (
                    object.kind.as_str(),
                    object.namespace.as_str(),
                    object.name.as_str(),
                )
            })
            .collect();
        assert_eq!(listed, row.incomplete, "{rule}: {explanation:#?}");
        assert_eq!(explanation.incomplete_unlisted, 0, "{rule}");
        for object in &explanation.incomplete {
            assert!(
                !object.reason.is_empty() && !object.relevance.is_empty(),
                "{rule}: {object:?}"
            );
        }
        let first = explanation.hints.first().map(|hint| hint.code);
        if row.incomplete.is_empty() {
            assert!(explanation.is_complete(), "{rule}");
            assert!(
                !explanation.has_hint(HintCode::ExplanationIncomplete),
                "{rule}"
            );
        } else {
            assert!(!explanation.is_complete(), "{rule}");
            assert_eq!(
                first,
                Some(HintCode::ExplanationIncomplete),
                "{rule}: {:#?}",
                explanation.hints
            );
            assert!(
                !explanation.has_hint(HintCode::PolicyAllows),
                "{rule}: an incomplete allow is never presented as policy_allows"
            );
        }
        if let Some(hint) = row.hint {
            assert!(
                explanation.has_hint(hint),
                "{rule}: {hint} missing in {:#?}",
                explanation.hints
            );
        }
    }
}

/// The bug as reported: before, `allow` with `policy_allows`; the reason
/// names the field and the bad operator.
#[test]
fn the_lower_case_in_operator_no_longer_yields_a_bare_allow() {
    let mut store = cluster(&[]);
    broken_policy(&mut store, ISOLATE_API_BROKEN);
    let explanation = run(&store, "default/web", "default/api", 8080, TCP);
    assert_eq!(explanation.verdict, Verdict::Allow);
    assert!(!explanation.has_hint(HintCode::PolicyAllows));
    let [missing] = explanation.incomplete.as_slice() else {
        panic!("one missing policy: {explanation:#?}");
    };
    assert!(
        missing
            .reason
            .contains("spec.podSelector.matchExpressions[0].operator"),
        "{missing:?}"
    );
    assert!(missing.reason.contains("\"in\""), "{missing:?}");
    let hint = &explanation.hints[0];
    assert!(
        hint.message.contains("default/isolate-api") && hint.message.contains("may be wrong"),
        "{hint:?}"
    );
}

/// Namespaces carry `kubernetes.io/metadata.name` even when the snapshot
/// leaves it out, so a namespaceSelector on it selects them.
#[test]
fn a_namespace_selector_on_metadata_name_works_without_the_label_in_the_snapshot() {
    let mut store = cluster(&[(
        "default",
        "from-frontend",
        "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: frontend}}}]}]}",
    )]);
    let unlabelled = K8sNamespace {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("frontend".into()),
            labels: Some([("team".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    store
        .apply(WatchEvent::Apply(Object::Namespace(Box::new(unlabelled))))
        .expect("valid");
    let explanation = run(&store, "frontend/client", "default/api", 8080, TCP);
    assert_eq!(explanation.verdict, Verdict::Allow, "{explanation:#?}");
    assert!(explanation.is_complete());
}

/// Naming a pod or Service that failed to load says so, with the reason.
#[test]
fn a_named_end_that_failed_to_load_is_an_error_with_the_reason() {
    let mut store = cluster(&[]);
    broken_pod(&mut store, "default", "batch", None);
    reject(
        &mut store,
        mk_service(
            "default",
            "broken",
            "10.96.0.99",
            &[(
                "http",
                0,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80),
                TCP,
            )],
        ),
    );
    let flow = |from: &str, to: &str| Flow {
        from: from.parse().expect("from"),
        to: to.parse().expect("to"),
        port: 80,
        protocol: TCP,
        original: None,
    };
    let view = View::new(&store);
    let error = explain(&view, &flow("default/batch", "default/api")).expect_err("not loaded");
    assert!(
        matches!(&error, Error::PodNotLoaded { name, reason, .. } if name == "batch" && reason.contains("port 0")),
        "{error}"
    );
    let error = explain(&view, &flow("default/web", "default/svc/broken")).expect_err("not loaded");
    assert!(
        matches!(&error, Error::ServiceNotLoaded { name, .. } if name == "broken"),
        "{error}"
    );
}

/// What the store does not remember by name (beyond its cap) still makes
/// an explanation incomplete, counted.
#[test]
fn skipped_objects_beyond_the_cap_are_counted() {
    let mut store = Store::with_skipped_cap(1);
    for object in [
        mk_namespace("default", &[]),
        pod(mk_pod("default", "web", "10.244.1.11", &[("app", "web")])),
        pod(mk_pod("default", "api", "10.244.1.10", &[("app", "api")])),
    ] {
        store.apply(WatchEvent::Apply(object)).expect("valid");
    }
    for name in ["first", "second", "third"] {
        broken_policy(&mut store, ("default", name, ISOLATE_API_BROKEN.2));
    }
    let explanation = run(&store, "default/web", "default/api", 8080, TCP);
    assert_eq!(explanation.incomplete.len(), 1);
    assert_eq!(explanation.incomplete[0].name, "first");
    assert_eq!(explanation.incomplete_unlisted, 2);
    assert!(!explanation.is_complete());
    assert!(
        explanation.hints[0].message.contains("3 objects"),
        "{:?}",
        explanation.hints[0]
    );
}

/// The snapshot loader feeds the same `apply`: what it skips makes the
/// explanation incomplete the same way.
#[test]
fn the_snapshot_path_reports_what_it_skipped() {
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: default}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: default, labels: {app: web}}
  spec: {containers: [{name: main}]}
  status: {phase: Running, podIP: 10.244.1.11}
- apiVersion: v1
  kind: Pod
  metadata: {name: api, namespace: default, labels: {app: api}}
  spec: {containers: [{name: main}]}
  status: {phase: Running, podIP: 10.244.1.10}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: isolate-api, namespace: default}
  spec:
    podSelector:
      matchExpressions: [{key: app, operator: in, values: [api]}]
"#;
    let mut store = Store::new();
    let loaded =
        crate::enrich::snapshot::load_str(text, std::path::Path::new("s.yaml"), &mut store)
            .expect("a List");
    assert_eq!(loaded.skipped.len(), 1);
    let explanation = run(&store, "default/web", "default/api", 8080, TCP);
    assert_eq!(explanation.incomplete.len(), 1, "{explanation:#?}");
    assert_eq!(explanation.incomplete[0].name, "isolate-api");
    assert!(!explanation.has_hint(HintCode::PolicyAllows));
}

/// Live drops are explained by the same engine: the event carries the
/// incomplete explanation.
#[test]
fn a_live_drop_carries_the_incomplete_explanation() {
    use crate::{
        explain::step::Explainer,
        model::{EventKind, Protocol},
    };
    let mut store = cluster(&[]);
    broken_policy(&mut store, ISOLATE_API_BROKEN);
    let drop = mk_drop_event(
        1,
        EventKind::New,
        mk_tuple(
            [10, 244, 1, 11],
            40000,
            [10, 244, 1, 10],
            8080,
            Protocol::Tcp,
        ),
    );
    let annotated = Explainer::new(None).annotate(&View::new(&store), drop);
    let explanation = annotated.explanation.as_ref().expect("explained");
    assert_eq!(explanation.incomplete.len(), 1, "{explanation:#?}");
    assert_eq!(
        explanation.hints.first().map(|hint| hint.code),
        Some(HintCode::ExplanationIncomplete)
    );
}
