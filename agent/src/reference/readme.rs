//! The README's "Reading the output" examples, held to the contract and to
//! the printer: its JSON is a `dropscope.v1.Event` in the proto3 JSON
//! mapping (an unknown field or enum value is refused, as the API's
//! clients would), and its drop line is what the compact printer makes of
//! that same event. The incident line above them is checked against the
//! demo's real output by `tests/tests/demo.rs`.

use dropscope_proto::v1;

use super::root;
use crate::print::events::{Format, Style, render};

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("reading README.md")
}

/// The first block of 4-space-indented lines after the paragraph that
/// contains `marker`, without the indentation.
fn block_after(readme: &str, marker: &str) -> Vec<String> {
    let block: Vec<String> = readme
        .lines()
        .skip_while(|line| !line.contains(marker))
        .skip_while(|line| !line.starts_with("    "))
        .take_while(|line| line.starts_with("    ") || line.trim().is_empty())
        .filter(|line| !line.trim().is_empty())
        .map(|line| line[4..].to_owned())
        .collect();
    assert!(
        !block.is_empty(),
        "README.md has no example after {marker:?}"
    );
    block
}

/// The README's commented, trimmed JSON made plain JSON: `// …` comments
/// dropped, and each `…` outside a string removed with the comma before it
/// (`, … }` → ` }`, `{ … }` → `{  }`).
fn plain_json(example: &[String]) -> String {
    let mut out = String::new();
    for line in example {
        let mut in_string = false;
        let mut escaped = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_string {
                out.push(c);
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                '/' if chars.peek() == Some(&'/') => break,
                '…' => {
                    let kept = out.trim_end().len();
                    out.truncate(kept);
                    if out.ends_with(',') {
                        out.pop();
                    }
                }
                _ => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// The README's example event.
fn example_event() -> v1::Event {
    let json = plain_json(&block_after(&readme(), "**The JSON**"));
    serde_json::from_str(&json).unwrap_or_else(|error| {
        panic!("README.md's JSON example is not a dropscope.v1.Event: {error}\n{json}")
    })
}

/// Whether `line` is `pattern`, where each `[…]` or `…` of the pattern
/// stands for any text.
fn matches_elided(pattern: &str, line: &str) -> bool {
    let pattern = pattern.replace("[…]", "…");
    let pieces: Vec<&str> = pattern.split('…').collect();
    let (first, rest) = pieces.split_first().expect("split yields a piece");
    let Some(mut remaining) = line.strip_prefix(first) else {
        return false;
    };
    for (index, piece) in rest.iter().enumerate() {
        if index + 1 == rest.len() {
            return remaining.ends_with(piece);
        }
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.is_empty()
}

#[test]
fn the_json_example_is_an_event_of_the_contract() {
    let event = example_event();
    let Some(v1::event::Event::Drop(drop)) = &event.event else {
        panic!("README.md's JSON example is not a drop event: {event:?}");
    };
    let explanation = drop.explanation.as_ref().expect("an explanation");
    assert!(
        !explanation.hints.is_empty() && explanation.suggested_policy.contains("NetworkPolicy")
    );
}

#[test]
fn the_drop_line_is_the_json_example_printed() {
    let readme = readme();
    let line = block_after(&readme, "**The drop line**").concat();
    let printed = render(&example_event(), Format::Compact, Style { color: false });
    assert!(
        matches_elided(&line, &printed),
        "README.md's drop line is not what `observe` prints for its JSON example:\nREADME:  {line}\nprinted: {printed}"
    );
}

#[test]
fn the_checks_can_fail() {
    assert!(matches_elided("a […] c", "a b c"));
    assert!(!matches_elided("a […] c", "a b d"));
    assert!(!matches_elided("a b", "a b c"));
    let json = plain_json(&["{ \"kind\": \"EVENT_KIND_DROP\", \"nodee\": \"x\", … }".to_owned()]);
    assert!(serde_json::from_str::<v1::Event>(&json).is_err(), "{json}");
    let json = plain_json(&["{ \"kind\": \"EVENT_KIND_DROPPED\" } // …".to_owned()]);
    assert!(serde_json::from_str::<v1::Event>(&json).is_err(), "{json}");
}
