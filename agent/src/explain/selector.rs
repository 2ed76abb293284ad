//! Label selector semantics (`metav1.LabelSelector`): every requirement must
//! hold; `matchLabels` entries are `In` one value; `In` needs the label set
//! to one of the values, `NotIn` holds when the label is unset or set to
//! none of them, `Exists` / `DoesNotExist` test presence; `{}` selects
//! everything. Receives compiled selectors and labels, emits booleans and
//! the first requirement that failed.

use crate::enrich::view::{Labels, Operator, Requirement, Selector};

/// True when one requirement holds for the labels (the compiled type
/// carries the evaluation so the store's indexes use the same code).
pub fn requirement_matches(requirement: &Requirement, labels: &Labels) -> bool {
    requirement.matches(labels)
}

/// True when the selector selects the labels.
pub fn matches(selector: &Selector, labels: &Labels) -> bool {
    selector.matches(labels)
}

/// The first requirement the labels fail, if any.
pub fn first_failure<'s>(selector: &'s Selector, labels: &Labels) -> Option<&'s Requirement> {
    selector
        .requirements
        .iter()
        .find(|requirement| !requirement_matches(requirement, labels))
}

/// Label keys the selector needs present (`In`, `Exists`).
pub fn required_keys(selector: &Selector) -> impl Iterator<Item = &str> {
    selector
        .requirements
        .iter()
        .filter(|requirement| matches!(requirement.operator, Operator::In | Operator::Exists))
        .map(|requirement| requirement.key.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{labels, selector};

    /// A row: the rule, the selector, the labels, whether it selects them.
    type Row = (
        &'static str,
        Selector,
        &'static [(&'static str, &'static str)],
        bool,
    );

    /// One row per rule of the LabelSelector reference.
    #[test]
    fn label_selector_rules() {
        let rows: [Row; 14] = [
            (
                "empty selector selects everything",
                selector(&[], &[]),
                &[("a", "1")],
                true,
            ),
            (
                "empty selector selects unlabelled",
                selector(&[], &[]),
                &[],
                true,
            ),
            (
                "matchLabels equal value",
                selector(&[("app", "api")], &[]),
                &[("app", "api")],
                true,
            ),
            (
                "matchLabels other value",
                selector(&[("app", "api")], &[]),
                &[("app", "web")],
                false,
            ),
            (
                "matchLabels missing key",
                selector(&[("app", "api")], &[]),
                &[],
                false,
            ),
            (
                "matchLabels are ANDed",
                selector(&[("app", "api"), ("tier", "be")], &[]),
                &[("app", "api")],
                false,
            ),
            (
                "In listed value",
                selector(&[], &[("env", "In", &["dev", "prod"])]),
                &[("env", "prod")],
                true,
            ),
            (
                "In unlisted value",
                selector(&[], &[("env", "In", &["dev", "prod"])]),
                &[("env", "qa")],
                false,
            ),
            (
                "NotIn absent key matches",
                selector(&[], &[("env", "NotIn", &["prod"])]),
                &[],
                true,
            ),
            (
                "NotIn listed value fails",
                selector(&[], &[("env", "NotIn", &["prod"])]),
                &[("env", "prod")],
                false,
            ),
            (
                "Exists present key",
                selector(&[], &[("env", "Exists", &[])]),
                &[("env", "")],
                true,
            ),
            (
                "Exists absent key",
                selector(&[], &[("env", "Exists", &[])]),
                &[],
                false,
            ),
            (
                "DoesNotExist absent key",
                selector(&[], &[("env", "DoesNotExist", &[])]),
                &[],
                true,
            ),
            (
                "matchLabels AND matchExpressions",
                selector(&[("app", "api")], &[("env", "DoesNotExist", &[])]),
                &[("app", "api"), ("env", "x")],
                false,
            ),
        ];
        for (rule, selector, pod_labels, want) in rows {
            assert_eq!(matches(&selector, &labels(pod_labels)), want, "{rule}");
        }
    }
}
