//! Well-formed Lists: items read, bad items skipped with their field path,
//! files that are not a List refused naming file and field.

use std::path::Path;

use super::{super::*, parsed};
use crate::enrich::{Error as EnrichError, store::Object};

const GOOD_POD: &str = r#"
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: default, uid: 11111111-2222-3333-4444-555555555555, labels: {app: web}}
  spec: {containers: [{name: main, image: nginx}], nodeName: worker-1}
  status: {phase: Running, podIP: 10.244.1.11, podIPs: [{ip: 10.244.1.11}]}
"#;

fn list(items: &str) -> String {
    format!("apiVersion: v1\nkind: List\nitems:{items}")
}

#[test]
fn bad_items_are_skipped_naming_their_field_path() {
    let text = list(&format!(
        "{GOOD_POD}{}",
        r#"
- apiVersion: v1
  kind: Namespace
  metadata: {name: default}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: default}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: broken-port, namespace: default}
  spec:
    podSelector: {}
    ingress:
    - ports:
      - {port: 80}
      - {port: [not, a, port]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: end-port-without-port, namespace: default}
  spec:
    podSelector: {}
    egress:
    - ports: [{protocol: TCP, endPort: 90}]
"#
    ));
    let mut store = Store::new();
    let loaded =
        load_str(&text, Path::new("cluster.yaml"), &mut store).expect("the file is a List");
    assert_eq!(loaded.applied, 2, "{loaded:#?}");
    let fields: Vec<(&str, &str, &str)> = loaded
        .skipped
        .iter()
        .map(|skip| (skip.field.as_str(), skip.kind.as_str(), skip.name.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("items[2].kind", "ConfigMap", "settings"),
            (
                "items[3].spec.ingress[0].ports[1].port",
                "NetworkPolicy",
                "broken-port"
            ),
            (
                "items[4].spec.egress[0].ports[0].endPort",
                "NetworkPolicy",
                "end-port-without-port"
            ),
        ]
    );
    assert_eq!(
        loaded.skipped[1].reason, "invalid type: a sequence, expected IntOrString",
        "the reason names types, not values"
    );
    assert_eq!(store.counts().pods, 1);
    assert_eq!(store.counts().policies, 0);
    assert!(
        store
            .skipped()
            .get(
                Kind::NetworkPolicy,
                &crate::enrich::object::Key {
                    namespace: "default".into(),
                    name: "broken-port".into(),
                }
            )
            .is_some(),
        "an item that cannot be read as its kind is recorded in the store"
    );
}

#[test]
fn a_file_that_is_not_a_list_names_the_file_and_field() {
    let cases = [
        (
            "not a List",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
            "kind",
        ),
        (
            "items is not a sequence",
            "apiVersion: v1\nkind: List\nitems: {a: 1}\n",
            "items",
        ),
        ("no kind", "apiVersion: v1\nitems: []\n", "."),
        (
            "JSON items is not a sequence",
            r#"{"kind": "List", "items": 3}"#,
            "items",
        ),
        ("a scalar", "just text\n", "."),
        ("empty", "", "."),
        (
            "JSON kind is not a string",
            r#"{"kind": 5, "items": []}"#,
            "kind",
        ),
    ];
    for (name, text, want_field) in cases {
        let error = load_str(text, Path::new("/tmp/snap.yaml"), &mut Store::new()).expect_err(name);
        match &error {
            EnrichError::SnapshotParse { path, field, .. } => {
                assert_eq!(path, Path::new("/tmp/snap.yaml"), "{name}");
                assert_eq!(field, want_field, "{name}: {error}");
            }
            other => panic!("{name}: unexpected {other}"),
        }
        assert!(
            error.to_string().contains("/tmp/snap.yaml"),
            "{name}: {error}"
        );
    }
}

#[test]
fn yaml_and_json_lists_load_the_same() {
    let yaml = list(GOOD_POD);
    let value: serde_json::Value = serde_norway::from_str(&yaml).expect("yaml");
    let json = serde_json::to_string(&value).expect("json");
    let mut from_yaml = Store::new();
    let mut from_json = Store::new();
    load_str(&yaml, Path::new("a.yaml"), &mut from_yaml).expect("yaml loads");
    load_str(&json, Path::new("a.json"), &mut from_json).expect("json loads");
    assert_eq!(from_yaml.counts(), from_json.counts());
    assert_eq!(from_json.counts().pods, 1);
}

/// The streaming reader builds the same objects as deserializing each
/// item on its own, for every fixture, in YAML and in JSON.
#[test]
fn fixtures_read_as_their_items_deserialize() {
    for name in [
        "dns-default-deny-egress.yaml",
        "dns-dnat-5353.yaml",
        "cross-namespace-missing-label.yaml",
        "kubelet-probe-blocked.yaml",
    ] {
        let text = super::fixture(name);
        let value: serde_json::Value = serde_norway::from_str(&text).expect("yaml");
        let items = value["items"].as_array().expect("items");
        let json = serde_json::to_string_pretty(&value).expect("json");
        for (format, text) in [("yaml", text.as_str()), ("json", json.as_str())] {
            let (events, skipped) = parsed(text, name);
            assert!(skipped.is_empty(), "{name} ({format}): {skipped:?}");
            assert_eq!(events.len(), items.len(), "{name} ({format})");
            for (index, event) in events {
                let WatchEvent::Apply(object) = event else {
                    panic!("{name}: not an apply")
                };
                let item = &items[index];
                let same = match object {
                    Object::Namespace(object) => {
                        *object == serde_json::from_value(item.clone()).expect("typed")
                    }
                    Object::Pod(object) => {
                        *object == serde_json::from_value(item.clone()).expect("typed")
                    }
                    Object::Service(object) => {
                        *object == serde_json::from_value(item.clone()).expect("typed")
                    }
                    Object::EndpointSlice(object) => {
                        *object == serde_json::from_value(item.clone()).expect("typed")
                    }
                    Object::NetworkPolicy(object) => {
                        *object == serde_json::from_value(item.clone()).expect("typed")
                    }
                    Object::Node(object) => {
                        *object == serde_json::from_value(item.clone()).expect("typed")
                    }
                };
                assert!(same, "{name} ({format}): items[{index}] differs");
            }
        }
    }
}

#[test]
fn null_items_are_an_empty_list() {
    let (events, skipped) = parsed("apiVersion: v1\nkind: List\nitems:\n", "null items");
    assert!(events.is_empty() && skipped.is_empty());
    let (events, _) = parsed(r#"{"kind": "PodList", "items": null}"#, "JSON null items");
    assert!(events.is_empty());
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let error = load(Path::new("/nonexistent/snap.yaml"), &mut Store::new()).expect_err("no file");
    assert!(matches!(error, EnrichError::SnapshotRead { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent/snap.yaml"));
}
