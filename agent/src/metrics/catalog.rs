//! A metric registry that remembers what was registered: the name a
//! scraper sees, the type and the help text of every metric, whether or not
//! it has samples yet (the text encoder leaves out families without any).
//! The reference page of the metrics is generated from it.

use prometheus_client::registry::{Metric, Registry, Unit};

/// One registered metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    /// The name on the wire: prefix, name, unit, and `_total` for counters.
    pub name: String,
    /// `counter`, `gauge`, `histogram`, …
    pub kind: &'static str,
    /// The help text.
    pub help: String,
}

/// A [`Registry`] and the list of what went into it.
#[derive(Debug)]
pub struct Catalog {
    prefix: &'static str,
    registry: Registry,
    entries: Vec<MetricInfo>,
}

impl Catalog {
    /// An empty registry whose metric names start with `prefix_`.
    pub fn with_prefix(prefix: &'static str) -> Self {
        Self {
            prefix,
            registry: Registry::with_prefix(prefix),
            entries: Vec::new(),
        }
    }

    /// Registers `metric` as `name` ([`Registry::register`]).
    pub fn register(&mut self, name: &str, help: impl Into<String>, metric: impl Metric) {
        let help = help.into();
        self.note(name, None, &help, &metric);
        self.registry.register(name, help, metric);
    }

    /// Registers `metric` as `name` in `unit` ([`Registry::register_with_unit`]).
    pub fn register_with_unit(
        &mut self,
        name: &str,
        help: impl Into<String>,
        unit: Unit,
        metric: impl Metric,
    ) {
        let help = help.into();
        self.note(name, Some(&unit), &help, &metric);
        self.registry.register_with_unit(name, help, unit, metric);
    }

    fn note(&mut self, name: &str, unit: Option<&Unit>, help: &str, metric: &impl Metric) {
        let kind = match metric.metric_type() {
            prometheus_client::metrics::MetricType::Counter => "counter",
            prometheus_client::metrics::MetricType::Gauge => "gauge",
            prometheus_client::metrics::MetricType::Histogram => "histogram",
            prometheus_client::metrics::MetricType::Info => "info",
            prometheus_client::metrics::MetricType::Unknown => "unknown",
        };
        let mut full = format!("{}_{name}", self.prefix);
        if let Some(unit) = unit {
            full.push('_');
            full.push_str(unit.as_str());
        }
        if kind == "counter" {
            full.push_str("_total");
        }
        self.entries.push(MetricInfo {
            name: full,
            kind,
            help: help.to_owned(),
        });
    }

    /// The registry, and what it holds.
    pub fn into_parts(self) -> (Registry, Vec<MetricInfo>) {
        (self.registry, self.entries)
    }
}
