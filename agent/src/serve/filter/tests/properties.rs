//! Properties over generated input: any selector string parses or fails
//! naming a position inside it; a generated selector, however it is
//! spaced and spelled, parses to the same thing and selects exactly the
//! label sets its requirements describe; any filter values compile or fail
//! naming the field path and the value.

use std::collections::BTreeMap;

use dropscope_proto::v1::EventFilter;
use proptest::prelude::*;

use super::known_reasons;
use crate::serve::filter::{Filters, LabelSelector, SelectorError};

/// Cases per property.
const CASES: u32 = 256;

/// Keys and values from small pools, so that generated labels meet
/// generated requirements.
const KEYS: &[&str] = &["app", "env", "example.com/team", "tier", "a.b-c_d"];
const VALUES: &[&str] = &["web", "db", "prod", "", "v1.2-x_y"];

/// A requirement as generated: key, operator (0 `=`, 1 `!=`, 2 `in`,
/// 3 `notin`, 4 exists, 5 `!key`) and values.
type Requirement = (&'static str, u8, Vec<&'static str>);

fn requirement() -> impl Strategy<Value = Requirement> {
    (
        proptest::sample::select(KEYS),
        0u8..6,
        proptest::collection::vec(proptest::sample::select(VALUES), 1..4),
    )
        // `key in ()` is an error; `key in (,)` is the empty value.
        .prop_filter("a list of one empty value", |(_, operator, values)| {
            !(matches!(operator, 2 | 3) && values == &[""])
        })
}

/// Blanks between tokens: none, spaces or a tab.
fn blank() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&["", " ", "  ", "\t"][..])
}

/// The requirement written out, with `blanks` between its tokens and `=`
/// spelled `==` when `double`.
fn write(requirement: &Requirement, blanks: &[&str], double: bool) -> String {
    let (key, operator, values) = requirement;
    let [a, b, c] = [blanks[0], blanks[1], blanks[2]];
    let list = values.join(&format!("{c},{c}"));
    match operator {
        0 if double => format!("{a}{key}{b}=={c}{}", values[0]),
        0 => format!("{a}{key}{b}={c}{}", values[0]),
        1 => format!("{a}{key}{b}!={c}{}", values[0]),
        2 => format!("{a}{key} in{b}({c}{list}{c}){a}"),
        3 => format!("{a}{key} notin{b}({c}{list}{c}){a}"),
        4 => format!("{a}{key}{b}"),
        _ => format!("{a}!{b}{key}{c}"),
    }
}

/// Whether the requirement holds for `labels`, by the Kubernetes rules.
fn holds(requirement: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    let (key, operator, values) = requirement;
    let value = labels.get(*key).map(String::as_str);
    match operator {
        0 => value == Some(values[0]),
        1 => value != Some(values[0]),
        2 => value.is_some_and(|value| values.contains(&value)),
        3 => !value.is_some_and(|value| values.contains(&value)),
        4 => value.is_some(),
        _ => value.is_none(),
    }
}

/// Where a selector error says the problem is.
fn position(error: &SelectorError) -> Option<usize> {
    match error {
        SelectorError::Empty => None,
        SelectorError::UnexpectedEnd { at, .. }
        | SelectorError::Unexpected { at, .. }
        | SelectorError::InvalidKey { at, .. }
        | SelectorError::InvalidValue { at, .. }
        | SelectorError::EmptyList { at, .. } => Some(*at),
    }
}

/// Strings made of the selector's tokens, words and blanks.
fn selectorish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("app"),
            Just("example.com/x"),
            Just("="),
            Just("=="),
            Just("!="),
            Just("!"),
            Just("("),
            Just(")"),
            Just(","),
            Just(" in "),
            Just(" notin "),
            Just(" "),
            Just("é"),
            Just("\u{3000}"),
            Just("-x-"),
        ],
        0..16,
    )
    .prop_map(|parts| parts.concat())
}

/// Any one `EventFilter` field set to `values`, and the field's name;
/// the numeric fields get numbers made from the values' lengths.
fn filter_with(field: u8, values: Vec<String>) -> (EventFilter, &'static str) {
    let mut filter = EventFilter::default();
    let lengths = values.iter().map(String::len);
    let name = match field % 12 {
        0 => {
            filter.namespace = values;
            "namespace"
        }
        1 => {
            filter.pod = values;
            "pod"
        }
        2 => {
            filter.label = values;
            "label"
        }
        3 => {
            filter.workload = values;
            "workload"
        }
        4 => {
            filter.service = values;
            "service"
        }
        5 => {
            filter.ip = values;
            "ip"
        }
        6 => {
            filter.tcp_flags = values;
            "tcp_flags"
        }
        7 => {
            filter.reason = values;
            "reason"
        }
        8 => {
            filter.dns_name = values;
            "dns_name"
        }
        9 => {
            filter.verdict = lengths.map(|len| len as i32 - 2).collect();
            "verdict"
        }
        10 => {
            filter.port = lengths.map(|len| len as u32 * 7000).collect();
            "port"
        }
        _ => {
            filter.policy = values;
            "policy"
        }
    };
    (filter, name)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any string parses or fails with an error whose position is a
    /// character boundary inside it; never a panic.
    #[test]
    fn any_selector_string_parses_or_names_a_position(
        text in prop_oneof![any::<String>(), selectorish()],
    ) {
        if let Err(error) = text.parse::<LabelSelector>() {
            prop_assert!(!error.to_string().is_empty());
            if let Some(at) = position(&error) {
                prop_assert!(at <= text.len() && text.is_char_boundary(at), "{error:?} in {text:?}");
            }
        }
    }

    /// A generated selector parses however it is spaced and spelled, to
    /// the same selector as its plainest writing, and selects exactly the
    /// label sets every requirement holds for.
    #[test]
    fn a_generated_selector_parses_and_selects_as_written(
        requirements in proptest::collection::vec(requirement(), 1..5),
        blanks in proptest::collection::vec(blank(), 3),
        double in any::<bool>(),
        label_sets in proptest::collection::vec(
            proptest::collection::btree_map(
                proptest::sample::select(KEYS).prop_map(str::to_owned),
                proptest::sample::select(VALUES).prop_map(str::to_owned),
                0..5,
            ),
            1..8,
        ),
    ) {
        let spaced: Vec<String> = requirements.iter().map(|r| write(r, &blanks, double)).collect();
        let plain: Vec<String> = requirements.iter().map(|r| write(r, &["", "", ""], false)).collect();
        let selector: LabelSelector = spaced.join(",").parse().expect("a generated selector parses");
        let canonical: LabelSelector = plain.join(",").parse().expect("its plain writing parses");
        prop_assert_eq!(&selector, &canonical);
        for labels in &label_sets {
            let expected = requirements.iter().all(|r| holds(r, labels));
            prop_assert_eq!(selector.matches(labels), expected, "{:?} on {:?}", spaced, labels);
        }
    }

    /// Any values in any field of any allow or deny filter compile, or fail
    /// naming the field path of one of them (`allow[1].ip[0]`) and, for
    /// a text field, that value as sent.
    #[test]
    fn any_filter_values_compile_or_name_the_field_and_value(
        filters in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(prop_oneof![any::<String>(), selectorish()], 1..3)),
            1..4,
        ),
        deny in any::<bool>(),
    ) {
        let built: Vec<(EventFilter, &str)> = filters
            .iter()
            .map(|(field, values)| filter_with(*field, values.clone()))
            .collect();
        let compiled: Vec<EventFilter> = built.iter().map(|(filter, _)| filter.clone()).collect();
        let (allow, denied) = if deny { (&[][..], &compiled[..]) } else { (&compiled[..], &[][..]) };
        let list = if deny { "deny" } else { "allow" };
        if let Err(error) = Filters::compile(allow, denied, &known_reasons) {
            let named = built.iter().enumerate().find_map(|(index, (_, name))| {
                let prefix = format!("{list}[{index}].{name}[");
                let value = error.field.strip_prefix(&prefix)?.strip_suffix(']')?.parse::<usize>().ok()?;
                Some((index, *name, value))
            });
            let Some((index, name, value)) = named else {
                return Err(TestCaseError::fail(format!("{error} names no value sent")));
            };
            if !matches!(name, "verdict" | "port") {
                prop_assert_eq!(&error.value, &filters[index].1[value]);
            }
            prop_assert!(error.to_string().starts_with(&error.field));
        }
    }
}
