//! `docs/reference/metrics.md`: every metric the agent and the collector
//! serve on `/metrics`, with its type and help text, from the catalogs
//! their registries were built with.

use std::fmt::Write as _;

use super::{cell, check_page, generated_from};
use crate::{
    collector::metrics::CollectorMetrics,
    metrics::{Metrics, MetricsConfig, catalog::MetricInfo},
};

fn table(out: &mut String, catalog: &[MetricInfo]) {
    out.push_str("| metric | type | what it counts |\n|---|---|---|\n");
    for metric in catalog {
        let _ = writeln!(
            out,
            "| `{}` | {} | {}. |",
            metric.name,
            metric.kind,
            cell(&metric.help)
        );
    }
}

fn render() -> String {
    let mut out = generated_from("the agent's and the collector's metric registries");
    out.push_str(
        "# Metrics\n\n\
         Both serve OpenMetrics text on `/metrics` of `--metrics-listen` (the classic Prometheus text \
         format to scrapers that ask for it), next to `/healthz` and `/readyz`. Label names are in each \
         metric's help; a labelled family appears on the wire once it has a sample.\n\n## `dropscope agent`\n\n",
    );
    table(&mut out, Metrics::new(MetricsConfig::default()).catalog());
    out.push_str("\n## `dropscope collector`\n\n");
    table(&mut out, CollectorMetrics::new().catalog());
    out
}

#[test]
fn metrics_page_is_current() {
    check_page("metrics.md", &render());
}

#[test]
fn the_catalog_names_what_the_registry_encodes() {
    let metrics = Metrics::new(MetricsConfig::default());
    let text = metrics.encode().expect("encoding");
    assert!(
        metrics
            .catalog()
            .iter()
            .any(|metric| metric.name == "dropscope_drops_total")
    );
    for metric in metrics.catalog() {
        assert!(!metric.help.is_empty(), "{} has no help", metric.name);
        let family = metric.name.trim_end_matches("_total");
        // Families without samples are not encoded; those that are must
        // carry the catalog's type.
        if text.contains(&format!("# TYPE {family} ")) {
            assert!(
                text.contains(&format!("# TYPE {family} {}", metric.kind)),
                "{}",
                metric.name
            );
        }
    }
}
