//! What the store could not use, through its one entry point `apply` (the
//! live watch path and the snapshot loader alike): remembered by kind and
//! namespace/name with the reason, forgotten when a valid version arrives,
//! when deleted or when a relist no longer has it, and bounded. Also the
//! label every namespace carries.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace as K8sNamespace;

use crate::{
    enrich::{
        object::{Key, NAMESPACE_NAME_LABEL},
        skipped::MAX_REASON,
        store::{Kind, Object, Store, WatchEvent},
        view::View,
    },
    testkit::*,
};

const BROKEN: &str = "{podSelector: {matchExpressions: [{key: app, operator: in, values: [api]}]}}";
const FIXED: &str = "{podSelector: {matchExpressions: [{key: app, operator: In, values: [api]}]}}";

fn key(namespace: &str, name: &str) -> Key {
    Key {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn policy(name: &str, spec: &str) -> Object {
    mk_policy("default", name, spec)
}

/// The remembered skipped policies, by name.
fn skipped_policies(store: &Store) -> Vec<String> {
    store
        .skipped()
        .of_kind(Kind::NetworkPolicy)
        .map(|(key, _)| key.to_string())
        .collect()
}

/// One row per rule: events applied in order, then the policies the
/// store remembers as skipped and how many it holds.
#[test]
fn skipped_objects_are_remembered_until_fixed_deleted_or_relisted_away() {
    type Row = (
        &'static str,
        Vec<WatchEvent>,
        &'static [&'static str],
        usize,
    );
    let rows: Vec<Row> = vec![
        (
            "an invalid object is remembered with its namespace and name",
            vec![WatchEvent::Apply(policy("p", BROKEN))],
            &["default/p"],
            0,
        ),
        (
            "a later valid version of the same object forgets it",
            vec![
                WatchEvent::Apply(policy("p", BROKEN)),
                WatchEvent::Apply(policy("p", FIXED)),
            ],
            &[],
            1,
        ),
        (
            "a later invalid version replaces the entry (one per object)",
            vec![
                WatchEvent::Apply(policy("p", BROKEN)),
                WatchEvent::Apply(policy("p", "{podSelector: {}, policyTypes: [Sideways]}")),
            ],
            &["default/p"],
            0,
        ),
        (
            "deleting the object forgets it",
            vec![
                WatchEvent::Apply(policy("p", BROKEN)),
                WatchEvent::Delete(policy("p", "{podSelector: {}}")),
            ],
            &[],
            0,
        ),
        (
            "a relist that no longer has it forgets it",
            vec![
                WatchEvent::Apply(policy("p", BROKEN)),
                WatchEvent::Apply(policy("q", BROKEN)),
                WatchEvent::RelistStart(Kind::NetworkPolicy),
                WatchEvent::Apply(policy("q", BROKEN)),
                WatchEvent::RelistDone(Kind::NetworkPolicy),
            ],
            &["default/q"],
            0,
        ),
        (
            "a relist of another kind keeps it",
            vec![
                WatchEvent::Apply(policy("p", BROKEN)),
                WatchEvent::RelistStart(Kind::Pod),
                WatchEvent::RelistDone(Kind::Pod),
            ],
            &["default/p"],
            0,
        ),
    ];
    for (rule, events, want, stored) in rows {
        let mut store = Store::new();
        for event in events {
            let _ = store.apply(event);
        }
        assert_eq!(skipped_policies(&store), want, "{rule}");
        assert_eq!(store.skipped().unlisted(Kind::NetworkPolicy), 0, "{rule}");
        assert_eq!(store.counts().policies, stored, "{rule}");
    }
}

#[test]
fn the_reason_names_the_field_and_is_bounded() {
    let mut store = Store::new();
    let _ = store.apply(WatchEvent::Apply(policy("p", BROKEN)));
    let long = format!(
        "{{podSelector: {{matchExpressions: [{{key: app, operator: {}, values: [api]}}]}}}}",
        "x".repeat(4 * MAX_REASON)
    );
    let _ = store.apply(WatchEvent::Apply(policy("long", &long)));
    let skipped = store.skipped();
    let entry = skipped
        .get(Kind::NetworkPolicy, &key("default", "p"))
        .expect("remembered");
    assert!(
        entry
            .reason
            .starts_with("spec.podSelector.matchExpressions[0].operator: unknown operator \"in\""),
        "{entry:?}"
    );
    let entry = skipped
        .get(Kind::NetworkPolicy, &key("default", "long"))
        .expect("remembered");
    assert!(
        entry.reason.len() <= MAX_REASON + '…'.len_utf8(),
        "{entry:?}"
    );
}

/// Beyond the cap only a count is kept; a relist of the kind recounts.
#[test]
fn the_memory_of_skipped_objects_is_capped_with_a_count_of_the_rest() {
    let mut store = Store::with_skipped_cap(2);
    for name in ["a", "b", "c", "d"] {
        let _ = store.apply(WatchEvent::Apply(policy(name, BROKEN)));
    }
    assert_eq!(skipped_policies(&store), ["default/a", "default/b"]);
    assert_eq!(store.skipped().unlisted(Kind::NetworkPolicy), 2);

    // The same object again is an update of its entry, not one more.
    let _ = store.apply(WatchEvent::Apply(policy("a", BROKEN)));
    assert_eq!(store.skipped().unlisted(Kind::NetworkPolicy), 2);

    // A relist that still has a, b and c: c is counted again, d is gone.
    for event in [
        WatchEvent::RelistStart(Kind::NetworkPolicy),
        WatchEvent::Apply(policy("a", BROKEN)),
        WatchEvent::Apply(policy("b", BROKEN)),
        WatchEvent::Apply(policy("c", BROKEN)),
        WatchEvent::RelistDone(Kind::NetworkPolicy),
    ] {
        let _ = store.apply(event);
    }
    assert_eq!(skipped_policies(&store), ["default/a", "default/b"]);
    assert_eq!(store.skipped().unlisted(Kind::NetworkPolicy), 1);

    // Fixed objects make room; what was only counted stays counted until
    // the next relist.
    let _ = store.apply(WatchEvent::Apply(policy("a", FIXED)));
    assert_eq!(skipped_policies(&store), ["default/b"]);
    assert_eq!(store.skipped().unlisted(Kind::NetworkPolicy), 1);
}

#[test]
fn an_invalid_pod_is_remembered_with_the_addresses_it_claims() {
    let mut store = Store::new();
    let broken = with_port(
        mk_pod("default", "batch", "10.244.1.99", &[]),
        "bad",
        0,
        crate::model::Protocol::Tcp,
    );
    store
        .apply(WatchEvent::Apply(pod(broken.clone())))
        .expect_err("port 0");
    let ip: IpAddr = "10.244.1.99".parse().expect("ip");
    let skipped = View::new(&store).skipped();
    let entry = skipped
        .get(Kind::Pod, &key("default", "batch"))
        .expect("remembered");
    assert_eq!(&*entry.ips, [ip]);
    assert!(View::new(&store).pod_by_ip(ip).is_none());

    store
        .apply(WatchEvent::Apply(pod(host_network(broken))))
        .expect_err("port 0");
    let skipped = store.skipped();
    let entry = skipped
        .get(Kind::Pod, &key("default", "batch"))
        .expect("remembered");
    assert!(entry.ips.is_empty(), "a host-network pod claims no pod IP");
}

/// Items the snapshot loader cannot even read as their kind, and kinds
/// RBAC forbids, are recorded beside what `apply` rejects.
#[test]
fn unreadable_objects_and_unavailable_kinds_are_recorded() {
    let mut store = Store::new();
    store
        .apply(WatchEvent::Apply(policy("p", FIXED)))
        .expect("valid");
    store.note_skipped(
        Kind::NetworkPolicy,
        "default",
        "p",
        "spec.ingress[0].ports[1].port: invalid type".into(),
    );
    assert_eq!(store.counts().policies, 0, "the readable version is gone");
    assert_eq!(skipped_policies(&store), ["default/p"]);

    store.note_unavailable(Kind::NetworkPolicy, "RBAC forbids it".into());
    assert_eq!(
        store.skipped().unavailable(Kind::NetworkPolicy),
        Some("RBAC forbids it")
    );
    for event in [
        WatchEvent::RelistStart(Kind::NetworkPolicy),
        WatchEvent::RelistDone(Kind::NetworkPolicy),
    ] {
        store.apply(event).expect("relist");
    }
    assert_eq!(store.skipped().unavailable(Kind::NetworkPolicy), None);
    assert!(store.skipped().is_empty());
}

/// The API server sets `kubernetes.io/metadata.name` on every namespace:
/// the store adds it when a snapshot lacks it, and corrects a wrong value.
#[test]
fn namespaces_carry_their_metadata_name_label() {
    let namespace = |name: &str, labels: &[(&str, &str)]| {
        Object::Namespace(Box::new(K8sNamespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                labels: (!labels.is_empty()).then(|| {
                    labels
                        .iter()
                        .map(|(key, value)| (key.to_string(), value.to_string()))
                        .collect()
                }),
                ..Default::default()
            },
            ..Default::default()
        }))
    };
    let rows = [
        ("no labels at all", namespace("shop", &[])),
        ("other labels only", namespace("shop", &[("team", "web")])),
        (
            "the label already set",
            namespace("shop", &[(NAMESPACE_NAME_LABEL, "shop")]),
        ),
        (
            "a wrong value is what the API server would overwrite",
            namespace("shop", &[(NAMESPACE_NAME_LABEL, "other")]),
        ),
    ];
    for (rule, object) in rows {
        let store = store([object]);
        let view = View::new(&store);
        let found = view.namespace("shop").expect("stored");
        assert_eq!(
            found.labels.get(NAMESPACE_NAME_LABEL),
            Some("shop"),
            "{rule}"
        );
        assert_eq!(
            view.namespaces_maybe_selected(&selector(&[(NAMESPACE_NAME_LABEL, "shop")], &[]))
                .count(),
            1,
            "{rule}: indexed under the label"
        );
    }
}
