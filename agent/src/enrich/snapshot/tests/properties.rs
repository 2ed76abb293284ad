//! Properties of the loader over generated input: any text reads or fails
//! with a positioned, typed error; a secret value never reaches an error or
//! a skipped item's reason; generated Lists read the same as YAML and as
//! JSON; bytes that are not UTF-8 are refused at their line and column.

use std::io::Write;

use proptest::prelude::*;

use super::super::*;

/// Cases per property: seconds, not minutes, in a debug build.
const CASES: u32 = 128;

/// A value that must never be printed.
const SECRET: &str = "ds-secret-proptest-4c1f";

/// Text made of YAML's and JSON's indicators, words, blanks and breaks.
fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("kind: List\n"),
            Just("items:\n"),
            Just("- "),
            Just("kind: Pod\n"),
            Just("metadata: {name: a, namespace: b}\n"),
            Just("spec: "),
            Just("  "),
            Just("\n"),
            Just(": "),
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just("\""),
            Just("'"),
            Just("&a "),
            Just("*a"),
            Just("!!str "),
            Just("? "),
            Just("|\n"),
            Just("#"),
            Just("---\n"),
            Just("\t"),
            Just("\u{feff}"),
            Just("1e999"),
            Just("x"),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// The number of lines of `text` as libyaml counts them (generously).
fn lines(text: &str) -> usize {
    text.chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
        + 2
}

/// Where a pod item of a List can hold the secret, each as the value of a
/// field (never a key: field paths name keys), some of the wrong type.
const SECRET_PLACES: &[&str] = &[
    "metadata: {name: a, namespace: b, labels: {app: SECRET}}",
    "metadata: {name: a, namespace: b}\n  spec: SECRET",
    "metadata: {name: a, namespace: b, uid: [SECRET]}",
    "metadata: {name: a, namespace: b}\n  status: {podIP: SECRET}",
    "metadata: {name: a, namespace: b}\n  spec: {containers: [{name: c, image: SECRET, ports: [{containerPort: SECRET}]}]}",
    "metadata: {name: a, namespace: b}\n  status: {phase: {x: SECRET}}",
    "metadata: SECRET",
];

/// The secret as YAML writes a scalar: plain, quoted, or a block.
const SECRET_STYLES: &[&str] = &["SECRET", "\"SECRET\"", "'SECRET'", "!!str SECRET"];

/// A generated pod: name, namespace, labels and IP.
type Pod = (String, String, Vec<(String, String)>, [u8; 4]);

/// Pods with names, namespaces and labels Kubernetes accepts.
fn pod() -> impl Strategy<Value = Pod> {
    (
        "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        "[a-z][a-z0-9]{0,10}",
        proptest::collection::vec(("[a-z]{1,10}", "[A-Za-z0-9]{0,10}"), 0..4),
        any::<[u8; 4]>(),
    )
}

/// A List of `pods` as a JSON value.
fn pod_list(pods: &[Pod]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = pods
        .iter()
        .map(|(name, namespace, labels, ip)| {
            let labels: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone().into()))
                .collect();
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"name": "main", "image": "nginx"}]},
                "status": {"podIP": std::net::Ipv4Addr::from(*ip).to_string()},
            })
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any text, from arbitrary characters or from YAML's own pieces,
    /// reads or fails with a parse error that has a field path and a line
    /// inside the text; never a panic.
    #[test]
    fn any_text_reads_or_fails_with_a_positioned_error(
        text in prop_oneof![any::<String>(), yamlish()],
    ) {
        match read_document(&text) {
            Ok((_, skipped)) => {
                for skip in skipped {
                    prop_assert!(skip.field.starts_with("items["), "{skip:?}");
                }
            }
            Err(Error::Parse { line, field, .. }) => {
                prop_assert!(!field.is_empty());
                if let Some(line) = line {
                    prop_assert!(line <= lines(&text), "line {line} in {text:?}");
                }
            }
            Err(other) => return Err(TestCaseError::fail(format!("not a parse error: {other}"))),
        }
    }

    /// A secret value anywhere an item holds a value, in any scalar style,
    /// with the document cut or broken after it or not, never appears in
    /// an error or a skipped item.
    #[test]
    fn a_secret_value_is_never_echoed(
        place in proptest::sample::select(SECRET_PLACES),
        style in proptest::sample::select(SECRET_STYLES),
        tail in prop_oneof![Just(""), Just("\n- kind: Pod\n  metadata: {name: b"), Just(" ]\n"), Just("\"")],
    ) {
        let item = place.replace("SECRET", &style.replace("SECRET", SECRET));
        let text = format!("apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  apiVersion: v1\n  {item}\n{tail}");
        match read_document(&text) {
            Ok((_, skipped)) => {
                for skip in skipped {
                    prop_assert!(!format!("{skip:?}").contains(SECRET), "{skip:?}");
                }
            }
            Err(error) => {
                let shown = format!("{error} {error:?}");
                prop_assert!(!shown.contains(SECRET), "{shown}");
            }
        }
    }

    /// A generated List of pods reads to one event per pod, nothing
    /// skipped, and reads the same as YAML and as JSON.
    #[test]
    fn a_generated_list_reads_the_same_as_yaml_and_json(
        pods in proptest::collection::vec(pod(), 0..6),
    ) {
        let list = pod_list(&pods);
        let json = serde_json::to_string_pretty(&list).expect("json");
        let yaml = serde_norway::to_string(&list).expect("yaml");
        let (from_json, skipped_json) = read_document(&json).expect("the JSON List reads");
        let (from_yaml, skipped_yaml) = read_document(&yaml).expect("the YAML List reads");
        prop_assert!(skipped_json.is_empty() && skipped_yaml.is_empty());
        prop_assert_eq!(from_json.len(), pods.len());
        prop_assert_eq!(format!("{from_json:?}"), format!("{from_yaml:?}"));
    }

    /// A file that is not UTF-8 is refused at the line and column of its
    /// first bad byte.
    #[test]
    fn a_file_that_is_not_utf8_is_refused_where_it_stops_being_text(
        before in "[a-z: \n-]{0,60}",
        bad in 0x80u8..=0xff,
    ) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(before.as_bytes()).expect("write");
        // 0xC0..0xFF never continue a sequence, 0x80..0xBF never start one;
        // followed by ASCII, either is invalid here.
        file.write_all(&[bad, b'x']).expect("write");
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        match read::read_capped(file.path(), MAX_SNAPSHOT_BYTES) {
            Err(Error::Parse { line: got_line, column: got_column, problem, .. }) => {
                prop_assert_eq!(problem, Problem::NotUtf8);
                prop_assert_eq!((got_line, got_column), (Some(line), Some(column)));
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }
}

/// Found by `any_text_reads_or_fails_with_a_positioned_error`: a mapping
/// left open at the top of the document failed with an empty field path.
#[test]
fn a_problem_before_any_field_names_the_document() {
    match read_document("{\"\"") {
        Err(Error::Parse { field, .. }) => assert_eq!(field, "."),
        other => panic!("expected a parse error, got {other:?}"),
    }
}
