//! Tests of the Observe filters, one table per topic, each row naming the
//! rule it checks: how filters combine (`lists`), packet fields (`packet`),
//! explanation fields (`metadata`), those fields on incidents
//! (`incidents`), the incident-only fields and lists mixing event kinds
//! (`incident_only`), compile errors (`compile`) and label selector
//! strings (`selector`), and properties over generated input
//! (`properties`). Event builders are in `events`.

mod compile;
mod events;
mod incident_only;
mod incidents;
mod lists;
mod metadata;
mod packet;
mod properties;
mod selector;

use dropscope_proto::v1::{Event, EventFilter as F};

use super::Filters;

/// Drop reason names of the pretend running kernel.
fn known_reasons(name: &str) -> bool {
    ["NETFILTER_DROP", "NO_SOCKET", "TCP_INVALID_SEQUENCE"].contains(&name)
}

/// Owned strings.
fn s(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// A filter with the fields `set` sets.
fn filter(set: impl FnOnce(&mut F)) -> F {
    let mut filter = F::default();
    set(&mut filter);
    filter
}

/// A filter on nodes.
fn node(values: &[&str]) -> F {
    filter(|f| f.node = s(values))
}

/// A filter on ports.
fn port(values: &[u32]) -> F {
    filter(|f| f.port = values.to_vec())
}

/// A filter on label selectors.
fn label(values: &[&str]) -> F {
    filter(|f| f.label = s(values))
}

/// A rule, the allow and deny lists, the event, whether it passes.
struct Row {
    rule: &'static str,
    allow: Vec<F>,
    deny: Vec<F>,
    event: Event,
    passes: bool,
}

/// An allow-only row.
fn allow(rule: &'static str, allow: Vec<F>, event: Event, passes: bool) -> Row {
    both(rule, allow, vec![], event, passes)
}

/// A row with both lists.
fn both(rule: &'static str, allow: Vec<F>, deny: Vec<F>, event: Event, passes: bool) -> Row {
    Row {
        rule,
        allow,
        deny,
        event,
        passes,
    }
}

/// Compiles and matches every row; fails naming every row that disagrees.
fn check(rows: Vec<Row>) {
    let failures: Vec<String> = rows
        .into_iter()
        .filter_map(|row| {
            let filters = match Filters::compile(&row.allow, &row.deny, &known_reasons) {
                Ok(filters) => filters,
                Err(error) => return Some(format!("{}: does not compile: {error}", row.rule)),
            };
            let passes = filters.matches(&row.event);
            (passes != row.passes)
                .then(|| format!("{}: passes is {passes}, want {}", row.rule, row.passes))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
