//! Counters as OTLP metrics, read from the OpenMetrics text the Prometheus
//! endpoint serves (one source of truth for both): a `counter` family
//! becomes a cumulative, monotonic Sum named after its `_total` samples,
//! a `gauge` family a Gauge; other families (`info`) are left out. Labels
//! become data point attributes.

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric::Data,
        number_data_point,
    },
};

/// What a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// The metrics of `text` at `now` (ns since the epoch), counters counted
/// from `start`.
pub fn metrics(text: &str, start: u64, now: u64) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    let mut family: Option<(String, Kind, String)> = None;
    let mut help = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').map_or("", |(_, text)| text).to_owned();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            family = match kind {
                "counter" => Some((name.to_owned(), Kind::Counter, help.clone())),
                "gauge" => Some((name.to_owned(), Kind::Gauge, help.clone())),
                _ => None,
            };
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((name, kind, description)) = &family else {
            continue;
        };
        let Some((sample, labels, value)) = sample(line) else {
            continue;
        };
        let wanted = match kind {
            Kind::Counter => format!("{name}_total"),
            Kind::Gauge => name.clone(),
        };
        if sample != wanted {
            continue;
        }
        let point = NumberDataPoint {
            attributes: labels,
            start_time_unix_nano: if *kind == Kind::Counter { start } else { 0 },
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        };
        if out.last().is_none_or(|metric| metric.name != wanted) {
            out.push(Metric {
                name: wanted.clone(),
                description: description.clone(),
                data: Some(match kind {
                    Kind::Counter => Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    }),
                    Kind::Gauge => Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    }),
                }),
                ..Default::default()
            });
        }
        if let Some(metric) = out.last_mut() {
            match &mut metric.data {
                Some(Data::Sum(sum)) => sum.data_points.push(point),
                Some(Data::Gauge(gauge)) => gauge.data_points.push(point),
                _ => {}
            }
        }
    }
    out
}

/// A sample line: `name{key="value",…} value` or `name value`.
fn sample(line: &str) -> Option<(&str, Vec<KeyValue>, f64)> {
    let (name, rest) = line.split_at(line.find(['{', ' '])?);
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inside) => labels(inside)?,
        None => (Vec::new(), rest),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The labels from just after `{`, and what follows the closing `}`.
fn labels(mut text: &str) -> Option<(Vec<KeyValue>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (at, '"') => break at,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        labels.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            }),
            ..Default::default()
        });
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP dropscope_drops Dropped packets.
# TYPE dropscope_drops counter
dropscope_drops_total{reason="NETFILTER_DROP",verdict="deny_ingress",namespace="a \"b\""} 3
dropscope_drops_total{reason="NO_SOCKET",verdict="none",namespace="none"} 1
# HELP dropscope_subscribers Open streams.
# TYPE dropscope_subscribers gauge
dropscope_subscribers 2
# HELP dropscope_build_info Build.
# TYPE dropscope_build_info info
dropscope_build_info{version="0.1.0"} 1
# EOF
"#;

    #[test]
    fn counters_become_cumulative_sums_and_gauges_gauges() {
        let metrics = metrics(TEXT, 10, 20);
        assert_eq!(metrics.len(), 2, "{metrics:#?}");
        assert_eq!(metrics[0].name, "dropscope_drops_total");
        assert_eq!(metrics[0].description, "Dropped packets.");
        let Some(Data::Sum(sum)) = &metrics[0].data else {
            panic!("a sum: {metrics:#?}");
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points.len(), 2);
        let first = &sum.data_points[0];
        assert_eq!(first.value, Some(number_data_point::Value::AsDouble(3.0)));
        assert_eq!((first.start_time_unix_nano, first.time_unix_nano), (10, 20));
        let namespace = first
            .attributes
            .iter()
            .find(|kv| kv.key == "namespace")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref());
        assert_eq!(
            namespace,
            Some(&any_value::Value::StringValue("a \"b\"".into()))
        );
        assert_eq!(metrics[1].name, "dropscope_subscribers");
        let Some(Data::Gauge(gauge)) = &metrics[1].data else {
            panic!("a gauge: {metrics:#?}");
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(2.0))
        );
    }
}
