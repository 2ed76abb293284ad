//! Reading the agent's proto3 JSON in tests: fields that proto3 JSON omits
//! when they hold their default read as that default.

use serde_json::Value;

/// The string at `path`; empty when absent.
pub fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The codes of an explanation's hints, in order.
pub fn hint_codes(explanation: &Value) -> Vec<String> {
    explanation["hints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|hint| hint["code"].as_str().map(str::to_owned))
        .collect()
}

/// The policies of a direction report, as `namespace/name`.
pub fn policy_names(report: &Value) -> Vec<String> {
    report["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|policy| {
            format!(
                "{}/{}",
                text(policy, &["namespace"]),
                text(policy, &["name"])
            )
        })
        .collect()
}
