//! Hostile snapshot files: billion-laughs bombs, anchors and aliases
//! wherever YAML allows them (and `&`/`*` wherever it does not make them
//! one), duplicate keys, secrets where parsing fails, oversized and
//! non-UTF-8 files.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use super::{super::*, parse_error, parsed, testdata};
use crate::enrich::{Error as EnrichError, store::Object};

/// Generous enough for a loaded CI machine running a debug build: the
/// bombs fail in about a millisecond; today's main took 4 s and 400 MB on
/// the 15 KB one and ran out of 12 GB on the 50 KB one.
const BOMB_DEADLINE: Duration = Duration::from_secs(5);

/// The billion-laughs fixtures are refused at their first anchor (line 13,
/// `lol0: &a0 [...]`), before anything expands.
#[test]
fn billion_laughs_fail_fast_at_the_first_anchor() {
    for name in ["billion-laughs-15k.yaml", "billion-laughs-50k.yaml"] {
        let path = testdata(&format!("hostile/{name}"));
        let started = Instant::now();
        let error = load(&path, &mut Store::new()).expect_err(name);
        let took = started.elapsed();
        assert!(took < BOMB_DEADLINE, "{name}: {took:?}");
        match &error {
            EnrichError::SnapshotParse {
                path: named,
                field,
                reason,
            } => {
                assert_eq!(named, &path);
                assert_eq!(field, "items[0].spec.lol0", "{name}");
                assert!(
                    reason.starts_with("line 13 column 11: a YAML anchor"),
                    "{name}: {reason}"
                );
            }
            other => panic!("{name}: {other}"),
        }
        let (line, _, problem) =
            parse_error(&std::fs::read_to_string(&path).expect("fixture"), name);
        assert_eq!((line, problem), (Some(13), Problem::Anchor), "{name}");
    }
}

/// The second line of defence: were the probe ever to miss an alias, the
/// real read stops at its budget (four units per byte of text), in bounded
/// time and memory, instead of expanding the bomb.
#[test]
fn the_budget_stops_an_expansion_the_probe_did_not_see() {
    for name in ["billion-laughs-15k.yaml", "billion-laughs-50k.yaml"] {
        let text = std::fs::read_to_string(testdata(&format!("hostile/{name}"))).expect("fixture");
        let started = Instant::now();
        let error = super::super::yaml::read_unprobed(&text).expect_err(name);
        let took = started.elapsed();
        assert!(took < BOMB_DEADLINE, "{name}: {took:?}");
        match error {
            Error::Parse {
                problem: Problem::Expansion { budget },
                field,
                ..
            } => {
                assert!(budget <= 4 * text.len() as u64 + 64, "{name}: {budget}");
                assert!(field.starts_with("items[0].spec.lol"), "{name}: {field}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Every place YAML allows an anchor or an alias is refused, naming its
/// line and column.
#[test]
fn anchors_and_aliases_are_refused_where_yaml_reads_them() {
    let head = "apiVersion: v1\nkind: List\nitems:\n";
    let rows: &[(&str, &str, usize, usize, Problem)] = &[
        (
            "anchor on a value",
            "- kind: Pod\n  metadata: &m {name: a}\n",
            5,
            13,
            Problem::Anchor,
        ),
        (
            "anchor on an item",
            "- &item {kind: Pod}\n",
            4,
            3,
            Problem::Anchor,
        ),
        (
            "anchor on a key",
            "- kind: Pod\n  &k metadata: {}\n",
            5,
            3,
            Problem::Anchor,
        ),
        (
            "anchor on a scalar",
            "- kind: &k Pod\n",
            4,
            9,
            Problem::Anchor,
        ),
        (
            "anchor in a flow sequence",
            "- {kind: Pod, x: [a, &b c]}\n",
            4,
            22,
            Problem::Anchor,
        ),
        (
            "anchor after a tag",
            "- kind: !!str &k Pod\n",
            4,
            15,
            Problem::Anchor,
        ),
        (
            "anchor in a flow mapping",
            "- {kind: Pod, x: {a: &b c}}\n",
            4,
            22,
            Problem::Anchor,
        ),
        (
            "alias as a value",
            "- kind: Pod\n  metadata: *m\n",
            5,
            13,
            Problem::Alias,
        ),
        ("alias as an item", "- *item\n", 4, 3, Problem::Alias),
        (
            "merge key",
            "- kind: Pod\n  metadata:\n    <<: *m\n",
            6,
            9,
            Problem::Alias,
        ),
        (
            "alias as a key",
            "- kind: Pod\n  *k : x\n",
            5,
            3,
            Problem::Alias,
        ),
        (
            "alias in a flow sequence",
            "- [a, *b]\n",
            4,
            7,
            Problem::Alias,
        ),
        (
            "alias that is not a name",
            "- host: *.example.com\n",
            4,
            9,
            Problem::Alias,
        ),
    ];
    for (what, items, line, column, problem) in rows {
        let text = format!("{head}{items}");
        match read_document(&text) {
            Err(Error::Parse {
                line: got_line,
                column: got_column,
                problem: got,
                ..
            }) => {
                assert_eq!(
                    (got_line, got_column, &got),
                    (Some(*line), Some(*column), problem),
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let (line, field, problem) = parse_error("--- &root\napiVersion: v1\nkind: List\n", "root");
    assert_eq!(
        (line, field.as_str(), problem),
        (Some(1), ".", Problem::Anchor)
    );
    let (line, field, problem) = parse_error("\u{feff}kind: List\nitems: [&a x]\n", "BOM");
    assert_eq!(
        (line, field.as_str(), problem),
        (Some(2), "items[0]", Problem::Anchor)
    );
}

/// `&` and `*` where YAML reads them as text (quoted, block and plain
/// scalars, comments, continuation lines) load, with their values intact.
#[test]
fn ampersands_and_stars_in_text_are_text() {
    let text = r#"apiVersion: v1
kind: List # &not-an-anchor *nor-an-alias
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: web
    namespace: default
    annotations:
      plain: a && b *c &d
      colon: a:&b c
      double: "*.example.com &x"
      single: '&y *z'
      folded: a long value that goes on
        *and on* & on
      block: |
        &literal
        *block
      flow: "[a&b, c*d]"
  spec: {containers: [{name: main, image: nginx, command: [sh, -c, "a && b || *"]}]}
"#;
    let (events, skipped) = parsed(text, "text");
    let in_flow = parsed("kind: List\nitems: [{a:&b c: d}]\n", "in a flow key");
    assert_eq!(in_flow.1.len(), 1, "one item, read (and skipped: no kind)");
    assert!(skipped.is_empty(), "{skipped:?}");
    let [(_, WatchEvent::Apply(Object::Pod(pod)))] = events.as_slice() else {
        panic!("{events:?}")
    };
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let get = |key: &str| annotations.get(key).map(String::as_str);
    assert_eq!(get("plain"), Some("a && b *c &d"));
    assert_eq!(get("colon"), Some("a:&b c"));
    assert_eq!(get("double"), Some("*.example.com &x"));
    assert_eq!(get("single"), Some("&y *z"));
    assert_eq!(
        get("folded"),
        Some("a long value that goes on *and on* & on")
    );
    assert_eq!(get("block"), Some("&literal\n*block\n"));
    assert_eq!(get("flow"), Some("[a&b, c*d]"));
}

/// A key written twice is refused with its field path and line, in YAML
/// and JSON, anywhere in the document.
#[test]
fn duplicate_keys_are_refused_with_their_path_and_line() {
    let policy = |labels: &str| {
        format!(
            "apiVersion: v1
kind: List
items:
- {{kind: Namespace, metadata: {{name: a}}}}
- {{kind: Namespace, metadata: {{name: b}}}}
- {{kind: Namespace, metadata: {{name: c}}}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {{name: p, namespace: a}}
  spec:
    podSelector:
      matchLabels:
{labels}"
        )
    };
    let yaml = policy("        app: web\n        tier: db\n        app: db\n");
    let (line, field, problem) = parse_error(&yaml, "yaml");
    assert_eq!(
        (line, field.as_str(), problem),
        (
            Some(15),
            "items[3].spec.podSelector.matchLabels.app",
            Problem::DuplicateKey
        )
    );
    let json = "{\"kind\": \"List\", \"items\": [{}, {}, {},\n {\"kind\": \"NetworkPolicy\", \"spec\": {\"podSelector\":\n  {\"matchLabels\": {\"app\": \"web\",\n   \"app\": \"db\"}}}}]}";
    let (line, field, problem) = parse_error(json, "json");
    assert_eq!(
        (line, field.as_str(), problem),
        (
            Some(4),
            "items[3].spec.podSelector.matchLabels.app",
            Problem::DuplicateKey
        )
    );
    let rows = [
        (
            "top level",
            "kind: List\nitems: []\nkind: List\n",
            "kind",
            3,
        ),
        (
            "in a skipped part",
            "kind: List\nmetadata: {a: 1, a: 2}\n",
            "metadata.a",
            2,
        ),
        (
            "in a sequence",
            "kind: List\nitems:\n- {kind: Pod, kind: Pod}\n",
            "items[0].kind",
            3,
        ),
        (
            "quoted and plain",
            "kind: List\nitems:\n- {\"kind\": Pod, kind: Pod}\n",
            "items[0].kind",
            3,
        ),
    ];
    for (what, text, want, want_line) in rows {
        let (line, field, problem) = parse_error(text, what);
        assert_eq!(
            (line, field.as_str(), problem),
            (Some(want_line), want, Problem::DuplicateKey),
            "{what}"
        );
    }
    let error = load_str(&yaml, Path::new("dup.yaml"), &mut Store::new()).expect_err("dup");
    assert_eq!(
        error.to_string(),
        "snapshot dup.yaml: at items[3].spec.podSelector.matchLabels.app: line 15 column 9: duplicate mapping key"
    );
}

const SECRET: &str = "ds-secret-TOKEN-123";

/// Wherever parsing fails, on a secret, the error (Display and Debug) and
/// the skipped items do not repeat it.
#[test]
fn a_secret_where_parsing_fails_is_never_echoed() {
    let s = SECRET;
    let fatal = [
        ("a token file", format!("{s}\n")),
        ("a token file with a newline", format!("{s}\n\n")),
        ("kind", format!("apiVersion: v1\nkind: {s}\nitems: []\n")),
        ("kind in quotes", format!("kind: \"{s}\"\nitems: []\n")),
        (
            "unterminated quote",
            format!("kind: List\nitems:\n- \"{s}\n"),
        ),
        ("unterminated flow", format!("kind: List\nitems: [{s}\n")),
        (
            "mapping value in a plain scalar",
            format!("kind: List\nitems: {s}: x: y\n"),
        ),
        ("items a string", format!("kind: List\nitems: {s}\n")),
        ("a tab", format!("kind: List\nitems:\n\t- {s}\n")),
        ("a bad tag", format!("kind: List\nitems: !!bool {s}\n")),
        ("a bad int tag", format!("kind: List\nitems: [!!int {s}]\n")),
        ("a custom tag", format!("kind: List\nitems: [!{s} x]\n")),
        ("an alias named so", format!("kind: List\nitems: [*{s}]\n")),
        (
            "an anchor named so",
            format!("kind: List\nitems: [&{s} x]\n"),
        ),
        ("a second document", format!("kind: List\n---\n{s}\n")),
        ("a bad escape", format!("kind: List\nitems: [\"{s}\\q\"]\n")),
        ("JSON token", format!("\"{s}\"")),
        ("JSON kind", format!("{{\"kind\": \"{s}\", \"items\": []}}")),
        (
            "JSON unquoted",
            format!("{{\"kind\": \"List\", \"items\": [{s}]}}"),
        ),
        (
            "JSON unterminated",
            format!("{{\"kind\": \"List\", \"items\": [\"{s}"),
        ),
        (
            "JSON trailing",
            format!("{{\"kind\": \"List\", \"items\": []}} {s}"),
        ),
        (
            "JSON items a string",
            format!("{{\"kind\": \"List\", \"items\": \"{s}\"}}"),
        ),
        (
            "JSON bad escape",
            format!("{{\"kind\": \"List\", \"items\": [\"{s}\\q\"]}}"),
        ),
    ];
    for (what, text) in &fatal {
        let error = load_str(text, Path::new("token"), &mut Store::new()).expect_err(what);
        for shown in [
            error.to_string(),
            format!("{error:?}"),
            format!("{error:#?}"),
        ] {
            assert!(!shown.contains(s), "{what}: {shown}");
            assert!(shown.contains("token"), "{what} names the file: {shown}");
        }
    }
    let skipped = [
        ("containers a string", format!("spec: {{containers: {s}}}")),
        (
            "a port",
            format!("spec: {{containers: [{{name: a, ports: [{{containerPort: {s}}}]}}]}}"),
        ),
        ("apiVersion", format!("apiVersion: {s}")),
        ("a timestamp", format!("status: {{startTime: {s}}}")),
        ("a bool", format!("spec: {{hostNetwork: {s}}}")),
    ];
    let cases = skipped
        .iter()
        .flat_map(|(what, field)| {
            [
                (*what, field.as_str(), "yaml"),
                (*what, field.as_str(), "json"),
            ]
        })
        .chain([(
            "a big integer",
            "spec: {priority: 99999999999999999999999999}",
            "yaml",
        )]);
    for (what, field, format) in cases {
        {
            let yaml = format!(
                "kind: List\nitems:\n- kind: Pod\n  metadata: {{name: web, namespace: default}}\n  {field}\n"
            );
            let text = match format {
                "json" => {
                    let value: serde_json::Value = serde_norway::from_str(&yaml).expect("yaml");
                    serde_json::to_string(&value).expect("json")
                }
                _ => yaml,
            };
            let mut store = Store::new();
            let loaded = load_str(&text, Path::new("token"), &mut store).expect(what);
            assert_eq!(loaded.skipped.len(), 1, "{what} ({format}): {loaded:?}");
            let shown = format!("{loaded:?}");
            assert!(!shown.contains(s), "{what} ({format}): {shown}");
            let remembered = format!("{:?}", store.skipped());
            assert!(!remembered.contains(s), "{what} ({format}): {remembered}");
        }
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), format!("{s}\n")).expect("write");
    let error = load(file.path(), &mut Store::new()).expect_err("a token file");
    assert!(!format!("{error} {error:?}").contains(s), "{error:?}");
}

/// A file over the cap is refused from its metadata, naming its size and
/// the cap; a file that says nothing of its size (a device, a pipe) is cut
/// at the cap while reading.
#[test]
fn files_over_the_cap_are_refused() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"kind: List\nitems: []\n").expect("write");
    let size = 21;
    match super::super::read::read_capped(file.path(), size - 1) {
        Err(Error::TooLarge {
            size: got,
            at_least: false,
            cap,
        }) => assert_eq!((got, cap), (size, size - 1)),
        other => panic!("{other:?}"),
    }
    let text = super::super::read::read_capped(file.path(), size).expect("exactly the cap");
    assert_eq!(text.len() as u64, size);

    match super::super::read::read_capped(Path::new("/dev/zero"), 4096) {
        Err(Error::TooLarge {
            size,
            at_least: true,
            cap: 4096,
        }) => assert_eq!(size, 4097),
        other => panic!("{other:?}"),
    }

    let error = Error::TooLarge {
        size: 300 << 20,
        at_least: false,
        cap: MAX_SNAPSHOT_BYTES,
    }
    .at(Path::new("/var/snap.yaml"));
    assert!(matches!(error, EnrichError::SnapshotRead { .. }));
    assert_eq!(
        error.to_string(),
        "cannot read snapshot /var/snap.yaml: 314572800 bytes, over the 268435456-byte limit on snapshot files (MAX_SNAPSHOT_BYTES)"
    );
}

#[test]
fn text_that_is_not_utf8_names_its_line() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"kind: List\nitems:\n- a\xffb\n")
        .expect("write");
    match super::super::read::read_capped(file.path(), MAX_SNAPSHOT_BYTES) {
        Err(Error::Parse {
            line: Some(3),
            column: Some(4),
            problem: Problem::NotUtf8,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// Other YAML that kubectl never writes: tags, several documents, nesting
/// past the parser's limit.
#[test]
fn other_yaml_kubectl_never_writes_is_refused() {
    let deep = format!(
        "kind: List\nitems: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let deep_json = format!(
        "{{\"kind\": \"List\", \"items\": {}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let rows = [
        (
            "a custom tag",
            "kind: List\nitems: [!custom x]\n".to_string(),
            Problem::Tag,
        ),
        (
            "two documents",
            "kind: List\n---\nkind: List\n".to_string(),
            Problem::MultipleDocuments,
        ),
        ("too deep", deep, Problem::TooDeep),
        ("too deep JSON", deep_json, Problem::TooDeep),
    ];
    for (what, text, want) in rows {
        let (_, _, problem) = parse_error(&text, what);
        assert_eq!(problem, want, "{what}");
    }
}

/// The budget leaves real snapshots far below it: a kubectl List costs
/// about one unit per byte.
#[test]
fn real_snapshots_stay_far_below_the_budget() {
    use serde::de::DeserializeSeed;

    use super::super::{
        document::DocumentSeed,
        walk::{Context, Pass},
    };

    for name in [
        "dns-default-deny-egress.yaml",
        "dns-dnat-5353.yaml",
        "cross-namespace-missing-label.yaml",
        "kubelet-probe-blocked.yaml",
    ] {
        let text = super::fixture(name);
        let ctx = Context::new(Pass::Read, text.len());
        DocumentSeed { ctx: &ctx }
            .deserialize(serde_norway::Deserializer::from_str(&text))
            .expect(name);
        assert!(
            ctx.spent() <= text.len() as u64,
            "{name}: {} for {} bytes",
            ctx.spent(),
            text.len()
        );
    }
}
