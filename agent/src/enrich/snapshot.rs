//! Snapshot files: a Kubernetes `List` in YAML or JSON, exactly what
//! `kubectl get namespaces,pods,services,endpointslices,networkpolicies,nodes
//! -A -o yaml` prints. Receives a path or text; emits [`WatchEvent`]s fed to
//! the same [`Store::apply`] as the live watch. A bad item is skipped with a
//! warning naming `items[N]`, its kind, namespace, name and field path; a
//! file that is not a List is an error naming the file and the field.

use std::path::Path;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    Error,
    store::{Kind, Object, Store, WatchEvent},
};

/// An item the loader skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Field path of the problem, starting at `items[N]`.
    pub field: String,
    /// The item's kind, as written.
    pub kind: String,
    /// Its namespace (empty when none).
    pub namespace: String,
    /// Its name (empty when none).
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// What loading a snapshot did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Objects stored.
    pub applied: usize,
    /// Items skipped, each also logged as a warning.
    pub skipped: Vec<Skipped>,
}

/// Parsed snapshot items: events with their item index, and skipped items.
pub type Parsed = (Vec<(usize, WatchEvent)>, Vec<Skipped>);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListDocument {
    kind: String,
    #[serde(default)]
    items: Vec<Value>,
}

/// Reads a snapshot file into the store.
pub fn load(path: &Path, store: &mut Store) -> Result<Loaded, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::SnapshotRead {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path, store)
}

/// Parses snapshot text (`path` only names it in errors) into the store.
pub fn load_str(text: &str, path: &Path, store: &mut Store) -> Result<Loaded, Error> {
    let (events, mut skipped) = parse(text, path)?;
    let mut loaded = Loaded::default();
    for (index, event) in events {
        match store.apply(event) {
            Ok(()) => loaded.applied += 1,
            Err(error) => skipped.push(skip_invalid(index, error)),
        }
    }
    for skip in &skipped {
        tracing::warn!(
            path = %path.display(),
            field = %skip.field,
            kind = %skip.kind,
            namespace = %skip.namespace,
            name = %skip.name,
            reason = %skip.reason,
            "snapshot item skipped"
        );
    }
    loaded.skipped = skipped;
    Ok(loaded)
}

fn skip_invalid(index: usize, error: Error) -> Skipped {
    match error {
        Error::Invalid {
            kind,
            namespace,
            name,
            reason,
        } => {
            let (field, reason) = match reason.split_once(": ") {
                Some((field, rest)) if field.contains('.') || field.contains('[') => {
                    (format!("items[{index}].{field}"), rest.to_string())
                }
                _ => (format!("items[{index}]"), reason),
            };
            Skipped {
                field,
                kind: kind.to_string(),
                namespace,
                name,
                reason,
            }
        }
        other => Skipped {
            field: format!("items[{index}]"),
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
            reason: other.to_string(),
        },
    }
}

fn parse_error(path: &Path, field: String, reason: impl ToString) -> Error {
    Error::SnapshotParse {
        path: path.to_path_buf(),
        field: if field.is_empty() { ".".into() } else { field },
        reason: reason.to_string(),
    }
}

/// Parses snapshot text into events, each with its item index, and the
/// items skipped because they do not parse as their kind.
pub fn parse(text: &str, path: &Path) -> Result<Parsed, Error> {
    let document: Value = if text.trim_start().starts_with('{') {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| parse_error(path, error.path().to_string(), error.inner()))?
    } else {
        let deserializer = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer)
            .map_err(|error| parse_error(path, error.path().to_string(), error.inner()))?
    };
    let list: ListDocument = serde_path_to_error::deserialize(&document)
        .map_err(|error| parse_error(path, error.path().to_string(), error.inner()))?;
    if !list.kind.ends_with("List") {
        return Err(parse_error(
            path,
            "kind".into(),
            format!(
                "expected a List (kubectl get ... -o yaml), found kind {:?}",
                list.kind
            ),
        ));
    }
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for (index, item) in list.items.into_iter().enumerate() {
        match object(&item) {
            Ok(object) => events.push((index, WatchEvent::Apply(object))),
            Err((field, reason)) => {
                let text = |pointer: &str| {
                    item.pointer(pointer)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                skipped.push(Skipped {
                    field: if field.is_empty() || field == "." {
                        format!("items[{index}]")
                    } else {
                        format!("items[{index}].{field}")
                    },
                    kind: text("/kind"),
                    namespace: text("/metadata/namespace"),
                    name: text("/metadata/name"),
                    reason,
                });
            }
        }
    }
    Ok((events, skipped))
}

fn typed<K: DeserializeOwned>(item: &Value) -> Result<Box<K>, (String, String)> {
    serde_path_to_error::deserialize(item)
        .map(Box::new)
        .map_err(|error| (error.path().to_string(), error.inner().to_string()))
}

fn object(item: &Value) -> Result<Object, (String, String)> {
    let kind = item.get("kind").and_then(Value::as_str).unwrap_or_default();
    let kind = Kind::ALL
        .into_iter()
        .find(|candidate| candidate.as_str() == kind)
        .ok_or_else(|| {
            (
                "kind".to_string(),
                format!("kind {kind:?} is not used by dropscope"),
            )
        })?;
    Ok(match kind {
        Kind::Namespace => Object::Namespace(typed(item)?),
        Kind::Pod => Object::Pod(typed(item)?),
        Kind::Service => Object::Service(typed(item)?),
        Kind::EndpointSlice => Object::EndpointSlice(typed(item)?),
        Kind::NetworkPolicy => Object::NetworkPolicy(typed(item)?),
        Kind::Node => Object::Node(typed(item)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(store.counts().pods, 1);
        assert_eq!(store.counts().policies, 0);
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
        ];
        for (name, text, want_field) in cases {
            let error =
                load_str(text, Path::new("/tmp/snap.yaml"), &mut Store::new()).expect_err(name);
            match &error {
                Error::SnapshotParse { path, field, .. } => {
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

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let error =
            load(Path::new("/nonexistent/snap.yaml"), &mut Store::new()).expect_err("no file");
        assert!(matches!(error, Error::SnapshotRead { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/snap.yaml"));
    }
}
