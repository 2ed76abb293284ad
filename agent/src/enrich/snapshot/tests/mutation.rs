//! Mutated snapshots: valid Lists (the fixtures, in YAML and JSON, and a
//! small one) cut, spliced and salted with YAML's indicators, anchors,
//! aliases, duplicated lines and odd scalars. The loader never panics,
//! answers with items or a typed error, and an anchor or alias it reports
//! is where it says.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{super::*, fixture};

/// How many mutated files each run reads.
const CASES: usize = 10_000;

/// A small, deterministic generator (xorshift64*): the same cases on
/// every run, so a failure names a case that can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound.max(1) as u64).unwrap_or(0)
    }
}

/// What gets spliced in: YAML's indicators and the shapes a hostile file
/// would use.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "&",
    "*",
    "&x [a, b]",
    "<<: *a\n",
    ": ",
    "- ",
    "-",
    "? ",
    "?",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "|",
    ">",
    "|-\n",
    "#",
    " #",
    "\n",
    "  ",
    "\t",
    "!!str ",
    "!!int ",
    "!x ",
    "!<tag:a> ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "~",
    "null",
    "true",
    "no",
    "0x1F",
    ".inf",
    "-.5e3",
    "99999999999999999999999",
    "-99999999999999999999999",
    "1e999",
    "\\",
    "\\u00",
    "\\L",
    "é",
    "日本",
    "\u{0}",
    "\u{85}",
    "kind: List\n",
    "items:\n",
    "kind: Pod\n",
    "metadata: {name: x}\n",
    "ds-secret-TOKEN-123",
    "\"ds-secret-TOKEN-123",
    "{\"a\": 1}",
];

/// The byte offset of a char boundary at or before `offset`.
fn boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn mutate(rng: &mut Rng, text: &mut String) {
    let at = boundary(text, rng.below(text.len() + 1));
    match rng.below(8) {
        0 | 1 => text.insert_str(at, TOKENS[rng.below(TOKENS.len())]),
        2 => {
            let end = boundary(text, at + 1 + rng.below(32));
            text.replace_range(at..end, "");
        }
        3 => {
            // A line copied under itself: duplicate keys, repeated items.
            let start = text[..at].rfind('\n').map_or(0, |newline| newline + 1);
            let end = text[at..]
                .find('\n')
                .map_or(text.len(), |newline| at + newline + 1);
            let line = text[start..end].to_string();
            text.insert_str(end, &line);
        }
        4 => {
            let end = boundary(text, at + 1);
            let printable = char::from(b' ' + u8::try_from(rng.below(95)).unwrap_or(0));
            text.replace_range(at..end, printable.encode_utf8(&mut [0; 4]));
        }
        5 => text.truncate(at),
        6 => {
            // Indentation changed: structure shifts.
            let start = text[..at].rfind('\n').map_or(0, |newline| newline + 1);
            if rng.below(2) == 0 {
                text.insert_str(start, "  ");
            } else if text[start..].starts_with("  ") {
                text.replace_range(start..start + 2, "");
            }
        }
        _ => {
            let other = boundary(text, rng.below(text.len() + 1));
            let (from, to) = (at.min(other), at.max(other));
            let span = text[from..to].chars().take(64).collect::<String>();
            text.insert_str(boundary(text, rng.below(text.len() + 1)), &span);
        }
    }
}

/// Whether `c` (followed by `next`) ends a line for libyaml: `\r\n`
/// counts once, at its `\n`.
fn is_break(c: char, next: Option<char>) -> bool {
    match c {
        '\r' => next != Some('\n'),
        '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

/// How many line breaks libyaml sees in `text`.
fn line_breaks(text: &str) -> usize {
    let mut chars = text.chars().peekable();
    let mut breaks = 0;
    while let Some(c) = chars.next() {
        breaks += usize::from(is_break(c, chars.peek().copied()));
    }
    breaks
}

/// The character at a 1-based line and column (in characters), with
/// libyaml's line breaks.
fn char_at(text: &str, line: usize, column: usize) -> Option<char> {
    let mut lines = 1;
    let mut columns = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if (lines, columns) == (line, column) {
            return Some(c);
        }
        if is_break(c, chars.peek().copied()) {
            lines += 1;
            columns = 1;
        } else {
            columns += 1;
        }
    }
    None
}

fn seeds() -> Vec<String> {
    let mut seeds: Vec<String> = [
        "dns-default-deny-egress.yaml",
        "dns-dnat-5353.yaml",
        "cross-namespace-missing-label.yaml",
        "kubelet-probe-blocked.yaml",
    ]
    .into_iter()
    .map(fixture)
    .collect();
    for yaml in seeds.clone().iter().take(2) {
        let value: serde_json::Value = serde_norway::from_str(yaml).expect("yaml");
        seeds.push(serde_json::to_string_pretty(&value).expect("json"));
    }
    seeds.push(
        "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a, namespace: b, labels: {app: a}}\n  spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}\n  status: {podIP: 10.0.0.1}\n- kind: NetworkPolicy\n  apiVersion: networking.k8s.io/v1\n  metadata: {name: p, namespace: b}\n  spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress]}\n"
            .to_string(),
    );
    seeds
}

#[test]
fn mutated_snapshots_load_or_fail_with_a_typed_error() {
    let seeds = seeds();
    let mut rng = Rng(0x5eed_0fd5_0c0e);
    let (mut read, mut refused, mut anchors) = (0, 0, 0);
    for case in 0..CASES {
        // Small files most of the time: more cases per second.
        let seed = if case % 4 == 0 {
            rng.below(seeds.len())
        } else {
            seeds.len() - 1
        };
        let mut text = seeds[seed].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut text);
        }
        let result = catch_unwind(AssertUnwindSafe(|| read_document(&text)))
            .unwrap_or_else(|_| panic!("case {case} (seed {seed}) panicked on:\n{text}"));
        match result {
            Ok((events, skipped)) => {
                read += 1;
                for (index, event) in &events {
                    assert!(
                        matches!(event, WatchEvent::Apply(_)),
                        "case {case}: items[{index}]"
                    );
                }
                for skip in &skipped {
                    assert!(skip.field.starts_with("items["), "case {case}: {skip:?}");
                }
            }
            Err(Error::Parse {
                line,
                column,
                field,
                problem,
            }) => {
                refused += 1;
                assert!(!field.is_empty(), "case {case}");
                if let Some(line) = line {
                    // libyaml ends the stream with a line break of its own.
                    assert!(
                        line <= line_breaks(&text) + 2,
                        "case {case}: line {line} in\n{text:?}"
                    );
                }
                if let (Problem::Anchor | Problem::Alias, Some(line), Some(column)) =
                    (&problem, line, column)
                {
                    anchors += 1;
                    let want = if problem == Problem::Anchor { '&' } else { '*' };
                    assert_eq!(
                        char_at(&text, line, column),
                        Some(want),
                        "case {case}: {problem} at {line}:{column} in\n{text}"
                    );
                }
            }
            Err(other) => panic!("case {case}: {other:?}"),
        }
    }
    // The mutations reach both outcomes and the anchor check.
    assert!(read > CASES / 10, "{read} read, {refused} refused");
    assert!(refused > CASES / 10, "{read} read, {refused} refused");
    assert!(anchors > 10, "{anchors} anchors or aliases");
}
