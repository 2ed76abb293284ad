//! Label selector strings: one row per operator and rule of the Kubernetes
//! syntax, and the errors for what does not parse.

use std::collections::BTreeMap;

use crate::serve::filter::{LabelSelector, SelectorError};

/// Labels from pairs.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// A rule, the selector, the labels, whether it selects them.
type Row = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
);

const WEB: &[(&str, &str)] = &[("app", "web"), ("env", "prod"), ("example.com/team", "a")];

const ROWS: &[Row] = &[
    ("= with the value", "app=web", WEB, true),
    ("= with another value", "app=db", WEB, false),
    ("= with the key absent", "tier=db", WEB, false),
    ("== is =", "app==web", WEB, true),
    ("!= with another value", "app!=db", WEB, true),
    ("!= with the value", "app!=web", WEB, false),
    ("!= holds when the key is absent", "tier!=db", WEB, true),
    ("in: one of the values", "env in (dev,prod)", WEB, true),
    ("in: none of the values", "env in (dev,test)", WEB, false),
    ("in: the key absent", "tier in (a)", WEB, false),
    (
        "notin: none of the values",
        "env notin (dev,test)",
        WEB,
        true,
    ),
    (
        "notin: one of the values",
        "env notin (dev,prod)",
        WEB,
        false,
    ),
    (
        "notin holds when the key is absent",
        "tier notin (a)",
        WEB,
        true,
    ),
    ("exists", "app", WEB, true),
    ("exists: absent", "tier", WEB, false),
    ("!key: absent", "!tier", WEB, true),
    ("!key: present", "!app", WEB, false),
    ("every requirement must hold", "app=web,env=dev", WEB, false),
    (
        "several requirements holding",
        "app=web,env in (prod),!tier",
        WEB,
        true,
    ),
    (
        "whitespace between tokens",
        "  app = web ,  env  in(prod) , ! tier ",
        WEB,
        true,
    ),
    ("a key with a DNS prefix", "example.com/team=a", WEB, true),
    ("key= is the empty value", "app=", WEB, false),
    ("key= matches the empty value", "app=", &[("app", "")], true),
    (
        "in and notin are values after =",
        "app=in",
        &[("app", "in")],
        true,
    ),
];

/// Every row of [`ROWS`].
#[test]
fn selector_rules() {
    let mut failures = Vec::new();
    for &(rule, input, pairs, selects) in ROWS {
        match input.parse::<LabelSelector>() {
            Ok(selector) if selector.matches(&labels(pairs)) == selects => {}
            Ok(_) => failures.push(format!("{rule}: {input:?} should select: {selects}")),
            Err(error) => failures.push(format!("{rule}: {input:?} does not parse: {error}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A rule, the selector, the message.
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "empty",
        " ",
        "empty selector: write at least one requirement (app=web, !canary, …)",
    ),
    (
        "unclosed list",
        "env in (a,b",
        "expected ')' after \"env in (a,b\" at 11",
    ),
    (
        "a list needs '('",
        "env in a",
        "expected '(' after \"env in\" at 7, found \"a\"",
    ),
    (
        "empty list",
        "env notin ()",
        "empty value list for label \"env\" at 10: in and notin need at least one value",
    ),
    (
        "trailing comma",
        "app=web,",
        "expected a label key or '!' after \"app=web,\" at 8",
    ),
    (
        "an operator is needed between words",
        "app web",
        "expected an operator (=, ==, !=, in, notin), ',' or the end of the selector after \"app\" at 4, found \"web\"",
    ),
    (
        "!key takes no value",
        "!app=web",
        "expected ',' or the end of the selector after \"!app\" at 4, found '='",
    ),
    (
        "a key starts alphanumeric",
        "-app=web",
        "invalid label key \"-app\" at 0: the name must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric",
    ),
    (
        "an uppercase prefix is no DNS subdomain",
        "Example.com/team",
        "invalid label key \"Example.com/team\" at 0: the prefix must be a DNS subdomain: \
         lowercase alphanumeric, '-' and '.', starting and ending alphanumeric, at most 253 characters",
    ),
    (
        "one '/' at most",
        "a/b/c",
        "invalid label key \"a/b/c\" at 0: a key has at most one '/'",
    ),
    (
        "a value is a label value",
        "app in (web, -db)",
        "invalid value \"-db\" for label \"app\" at 13: a value must be alphanumeric, '-', '_' \
         or '.', starting and ending alphanumeric",
    ),
    (
        "no second operator",
        "app==web==db",
        "expected ',' or the end of the selector after \"app==web\" at 8, found '=='",
    ),
];

/// Every row of [`ERRORS`].
#[test]
fn selector_errors() {
    let mut failures = Vec::new();
    for &(rule, input, message) in ERRORS {
        match input.parse::<LabelSelector>() {
            Ok(selector) => failures.push(format!("{rule}: {input:?} parsed as {selector:?}")),
            Err(error) if error.to_string() == message => {}
            Err(error) => failures.push(format!("{rule}: {input:?}: {error}\n  want {message}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Positions are byte offsets of the token in the input.
#[test]
fn selector_error_positions() {
    let error = "app=web, env in (a b)".parse::<LabelSelector>();
    assert_eq!(
        error,
        Err(SelectorError::Unexpected {
            expected: "',' or ')'",
            found: "\"b\"".into(),
            after: "app=web, env in (a".into(),
            at: 19,
        })
    );
}

#[test]
fn mutated_selectors_parse_or_fail_never_panic() {
    // Deterministic xorshift: reproducible without a property-testing crate.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<char> = "az09=!(),. -_/in notin"
        .chars()
        .chain(['é', '\0', '\u{2028}'])
        .collect();
    let seeds = [
        "app=web",
        "env in (dev,prod),tier!=db",
        "!canary,example.com/team notin (a,b)",
        "app==web,env",
    ];
    let mut parsed = 0;
    for round in 0..20_000 {
        let seed = seeds[round % seeds.len()];
        let mut text: Vec<char> = seed.chars().collect();
        for _ in 0..1 + next() % 4 {
            let at = (next() % (text.len() as u64 + 1)) as usize;
            let with = alphabet[(next() % alphabet.len() as u64) as usize];
            match next() % 3 {
                0 if at < text.len() => text[at] = with,
                1 if at < text.len() => {
                    text.remove(at);
                }
                _ => text.insert(at, with),
            }
        }
        let input: String = text.into_iter().collect();
        match input.parse::<LabelSelector>() {
            Ok(selector) => {
                parsed += 1;
                let _ = selector.matches(&labels(WEB));
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
    assert!(parsed > 0, "some mutations still parse");
}
