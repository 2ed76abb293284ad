//! Explanations of bounded size, whatever the cluster holds: a pod that
//! hundreds of policies select, or a flow that every one of them allows,
//! must not make every event of its flow megabytes long. Lists are cut to
//! their first entries, with how many more there were ("+N more"), and
//! repeats are removed in one pass each (hash sets, linear time), keeping
//! the first occurrence and the order.

use std::{collections::HashSet, hash::Hash};

use crate::model::{DirectionReport, Explanation};

/// Policies listed per direction.
pub const MAX_POLICIES: usize = 16;
/// Allowing rules listed per direction.
pub const MAX_RULES: usize = 16;
/// Hints listed.
pub const MAX_HINTS: usize = 16;

/// Removes repeats and cuts every list of `explanation` to its bound,
/// counting what was cut.
pub fn bound(explanation: &mut Explanation) {
    for report in [&mut explanation.egress, &mut explanation.ingress] {
        bound_report(report);
    }
    let hints = std::mem::take(&mut explanation.hints);
    let (hints, more) = first_unique(hints, |hint| (hint.code, hint.message.clone()), MAX_HINTS);
    explanation.hints = hints;
    explanation.hints_unlisted += more;
}

fn bound_report(report: &mut DirectionReport) {
    let (policies, more) = first_unique(
        std::mem::take(&mut report.policies),
        Clone::clone,
        MAX_POLICIES,
    );
    report.policies = policies;
    report.policies_unlisted += more;
    let (rules, more) = first_unique(
        std::mem::take(&mut report.allowed_by),
        Clone::clone,
        MAX_RULES,
    );
    report.allowed_by = rules;
    report.allowed_by_unlisted += more;
}

/// The first `limit` distinct items (by `key`), in order, and how many
/// distinct items were left out.
fn first_unique<T, K: Eq + Hash>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    limit: usize,
) -> (Vec<T>, u64) {
    let mut seen = HashSet::with_capacity(items.len());
    let mut kept = Vec::with_capacity(items.len().min(limit));
    let mut left_out = 0;
    for item in items {
        if !seen.insert(key(&item)) {
            continue;
        }
        if kept.len() < limit {
            kept.push(item);
        } else {
            left_out += 1;
        }
    }
    (kept, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HintCode, PolicyRef, RuleRef};

    fn policy(index: usize) -> PolicyRef {
        PolicyRef {
            namespace: "shop".into(),
            name: format!("allow-{index}"),
        }
    }

    #[test]
    fn long_lists_are_cut_with_a_count_and_repeats_go() {
        let mut report = DirectionReport {
            policies: (0..40).map(policy).chain((0..40).map(policy)).collect(),
            allowed_by: (0..3)
                .map(|index| RuleRef {
                    policy: policy(index),
                    rule: 0,
                })
                .chain(std::iter::once(RuleRef {
                    policy: policy(0),
                    rule: 0,
                }))
                .collect(),
            ..DirectionReport::default()
        };
        bound_report(&mut report);
        assert_eq!(report.policies.len(), MAX_POLICIES);
        assert_eq!(report.policies[0], policy(0));
        assert_eq!(report.policies[MAX_POLICIES - 1], policy(MAX_POLICIES - 1));
        assert_eq!(
            report.policies_unlisted,
            40 - MAX_POLICIES as u64,
            "repeats are not counted as more"
        );
        assert_eq!(report.allowed_by.len(), 3, "the repeated rule is gone");
        assert_eq!(report.allowed_by_unlisted, 0);
    }

    #[test]
    fn hints_keep_their_first_occurrence_and_order() {
        let hint = |code, message: &str| crate::model::Hint {
            code,
            message: message.into(),
        };
        let (kept, more) = first_unique(
            vec![
                hint(HintCode::PolicyAllows, "a"),
                hint(HintCode::PortMismatch, "b"),
                hint(HintCode::PolicyAllows, "a"),
                hint(HintCode::PolicyAllows, "c"),
            ],
            |hint| (hint.code, hint.message.clone()),
            2,
        );
        assert_eq!(
            kept.iter()
                .map(|hint| hint.message.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            more, 1,
            "one distinct hint left out, the repeat not counted"
        );
    }
}
