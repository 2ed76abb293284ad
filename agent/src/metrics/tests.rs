//! Typed events and counters in, encoded samples asserted.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::SystemTime,
};

use ipnet::IpNet;

use super::*;
use crate::{
    model::{DirectionReport, DropEvent, DropReason, Explanation, FlowEnd, Protocol, Verdict},
    testkit::{mk_drop_event, mk_tuple},
};

fn metrics() -> Metrics {
    Metrics::new(MetricsConfig::default())
}

/// The encoded text, checked for the OpenMetrics end marker.
fn encoded(metrics: &Metrics) -> String {
    let text = metrics.encode().expect("encodes");
    assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
    text
}

/// The value of the sample `series` (name and labels as encoded), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a numeric sample value"))
    })
}

/// Asserts the sample `series` has `value`.
#[track_caller]
fn assert_sample(text: &str, series: &str, value: f64) {
    assert_eq!(sample(text, series), Some(value), "{series} in:\n{text}");
}

fn drops_series(reason: &str, verdict: &str, namespace: &str) -> String {
    format!(
        r#"dropscope_drops_total{{reason="{reason}",verdict="{verdict}",namespace="{namespace}"}}"#
    )
}

fn tuple() -> crate::model::Tuple {
    mk_tuple([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, Protocol::Tcp)
}

/// A drop event of `kind` adding `new_packets`.
fn drop_event(kind: EventKind, new_packets: u64) -> DropEvent {
    let mut event = DropEvent::clone(&mk_drop_event(1, kind, tuple()));
    event.new_packets = new_packets;
    event
}

fn publish(metrics: &Metrics, event: DropEvent) {
    metrics.record(&Event::Drop(Arc::new(event)));
}

fn pod(namespace: &str, name: &str) -> Identity {
    Identity::Pod {
        namespace: namespace.into(),
        name: name.into(),
        uid: format!("uid-{namespace}-{name}"),
        labels: BTreeMap::new(),
        workload: None,
        node: Some("node-1".into()),
        host_network: false,
    }
}

fn service(namespace: &str, name: &str) -> Identity {
    Identity::Service {
        namespace: namespace.into(),
        name: name.into(),
        port_name: None,
        backend: None,
    }
}

fn external(ip: [u8; 4]) -> Identity {
    Identity::External {
        cidr: IpNet::from(IpAddr::V4(Ipv4Addr::from(ip))),
    }
}

/// An explanation with these ends, Service and verdict.
fn explanation(
    verdict: Verdict,
    source: Identity,
    destination: Identity,
    service: Option<Identity>,
) -> Arc<Explanation> {
    Arc::new(Explanation {
        verdict,
        source: FlowEnd {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            identity: source,
        },
        destination: FlowEnd {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            identity: destination,
        },
        service,
        port: 80,
        protocol: Protocol::Tcp,
        egress: DirectionReport::default(),
        ingress: DirectionReport::default(),
        closest_miss: None,
        hints: Vec::new(),
        hints_unlisted: 0,
        suggested_policy: None,
        incomplete: Vec::new(),
        incomplete_unlisted: 0,
        stale: Vec::new(),
    })
}

fn explained(new_packets: u64, explanation: Arc<Explanation>) -> DropEvent {
    let mut event = drop_event(EventKind::Update, new_packets);
    event.explanation = Some(explanation);
    event
}

fn kernel_loss(source: LossSource, lost_drops: u64, total_drops: u64) -> Event {
    Event::Loss(LossEvent {
        source,
        lost: 0,
        total: 0,
        lost_drops,
        total_drops,
        time: SystemTime::UNIX_EPOCH,
    })
}

#[test]
fn fresh_metrics_start_at_zero_with_build_info() {
    let text = encoded(&metrics());
    assert_sample(&text, r#"dropscope_events_total{kind="drop_new"}"#, 0.0);
    assert_sample(&text, r#"dropscope_events_total{kind="loss"}"#, 0.0);
    assert_sample(
        &text,
        r#"dropscope_lost_drops_total{source="kernel_ring_full"}"#,
        0.0,
    );
    assert_sample(
        &text,
        r#"dropscope_lost_events_total{source="subscriber"}"#,
        0.0,
    );
    assert_sample(
        &text,
        r#"dropscope_kernel_hook_calls_total{outcome="read_error"}"#,
        0.0,
    );
    assert_sample(&text, "dropscope_kernel_recursion_misses_total", 0.0);
    assert_sample(&text, "dropscope_active_flows", 0.0);
    assert_sample(&text, "dropscope_metadata_synced", 0.0);
    assert_sample(&text, "dropscope_subscribers", 0.0);
    assert_sample(
        &text,
        &format!(
            r#"dropscope_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
}

#[test]
fn drop_events_count_packets_flows_and_events() {
    let metrics = metrics();
    publish(&metrics, drop_event(EventKind::New, 1));
    publish(&metrics, drop_event(EventKind::Update, 4));
    publish(&metrics, drop_event(EventKind::Update, 0));
    publish(&metrics, drop_event(EventKind::End, 2));
    let text = encoded(&metrics);

    assert_sample(&text, &drops_series("NETFILTER_DROP", "none", "none"), 7.0);
    assert_sample(
        &text,
        r#"dropscope_drop_flows_total{reason="NETFILTER_DROP"}"#,
        1.0,
    );
    assert_sample(&text, r#"dropscope_events_total{kind="drop_new"}"#, 1.0);
    assert_sample(&text, r#"dropscope_events_total{kind="drop_update"}"#, 2.0);
    assert_sample(&text, r#"dropscope_events_total{kind="drop_end"}"#, 1.0);
    assert_sample(&text, r#"dropscope_events_total{kind="loss"}"#, 0.0);
    assert!(
        text.contains("# HELP dropscope_drops Dropped packets, "),
        "{text}"
    );
    assert!(text.contains("# TYPE dropscope_drops counter\n"), "{text}");
    assert!(
        !text.contains(".."),
        "help texts end with one period:\n{text}"
    );
}

#[test]
fn an_unnamed_reason_is_labelled_by_its_number() {
    let metrics = metrics();
    let mut event = drop_event(EventKind::New, 1);
    event.reason = DropReason {
        code: 999,
        name: None,
    };
    publish(&metrics, event);
    let text = encoded(&metrics);
    assert_sample(&text, &drops_series("UNKNOWN_999", "none", "none"), 1.0);
    assert_sample(
        &text,
        r#"dropscope_drop_flows_total{reason="UNKNOWN_999"}"#,
        1.0,
    );
}

#[test]
fn verdict_and_namespace_come_from_the_explanation() {
    let metrics = metrics();
    // The source pod's namespace first.
    publish(
        &metrics,
        explained(
            1,
            explanation(
                Verdict::DenyEgress,
                pod("client", "a"),
                pod("server", "b"),
                Some(service("svc", "s")),
            ),
        ),
    );
    // Not a pod at the source: the destination pod's.
    publish(
        &metrics,
        explained(
            2,
            explanation(
                Verdict::DenyIngress,
                external([192, 0, 2, 1]),
                pod("server", "b"),
                None,
            ),
        ),
    );
    // Neither end a pod: the Service's.
    publish(
        &metrics,
        explained(
            3,
            explanation(
                Verdict::DenyBoth,
                external([192, 0, 2, 1]),
                external([192, 0, 2, 2]),
                Some(service("svc", "s")),
            ),
        ),
    );
    // The destination is the Service VIP itself.
    publish(
        &metrics,
        explained(
            4,
            explanation(
                Verdict::DenyBoth,
                external([192, 0, 2, 1]),
                service("vip", "s"),
                None,
            ),
        ),
    );
    // Nobody known: none.
    publish(
        &metrics,
        explained(
            5,
            explanation(
                Verdict::Allow,
                external([192, 0, 2, 1]),
                external([192, 0, 2, 2]),
                None,
            ),
        ),
    );
    let text = encoded(&metrics);
    for (verdict, namespace, packets) in [
        ("deny_egress", "client", 1.0),
        ("deny_ingress", "server", 2.0),
        ("deny_both", "svc", 3.0),
        ("deny_both", "vip", 4.0),
        ("allow", "none", 5.0),
    ] {
        assert_sample(
            &text,
            &drops_series("NETFILTER_DROP", verdict, namespace),
            packets,
        );
    }
}

#[test]
fn namespaces_past_the_bound_count_as_other() {
    let metrics = Metrics::new(MetricsConfig { max_namespaces: 2 });
    let in_namespace = |namespace: &str, packets| {
        explained(
            packets,
            explanation(
                Verdict::DenyIngress,
                pod(namespace, "a"),
                external([192, 0, 2, 2]),
                None,
            ),
        )
    };
    publish(&metrics, in_namespace("one", 1));
    publish(&metrics, in_namespace("two", 2));
    publish(&metrics, in_namespace("three", 4));
    publish(&metrics, in_namespace("four", 8));
    publish(&metrics, in_namespace("one", 16));
    publish(&metrics, drop_event(EventKind::New, 32));
    let text = encoded(&metrics);

    assert_sample(
        &text,
        &drops_series("NETFILTER_DROP", "deny_ingress", "one"),
        17.0,
    );
    assert_sample(
        &text,
        &drops_series("NETFILTER_DROP", "deny_ingress", "two"),
        2.0,
    );
    assert_sample(
        &text,
        &drops_series("NETFILTER_DROP", "deny_ingress", "other"),
        12.0,
    );
    assert_sample(&text, &drops_series("NETFILTER_DROP", "none", "none"), 32.0);
    assert!(!text.contains(r#"namespace="three""#), "{text}");
    assert!(!text.contains(r#"namespace="four""#), "{text}");
    assert!(
        text.contains("at most 2 namespaces, later ones counted as other"),
        "the help text states the bound:\n{text}"
    );
}

#[test]
fn losses_count_by_source_from_deltas() {
    let metrics = metrics();
    metrics.record(&kernel_loss(LossSource::KernelRingFull, 7, 7));
    metrics.record(&kernel_loss(LossSource::KernelRingFull, 3, 10));
    metrics.record(&kernel_loss(LossSource::KernelRecursion, 2, 2));
    metrics.record(&Event::Loss(LossEvent {
        source: LossSource::Pipeline,
        lost: 5,
        total: 5,
        lost_drops: 9,
        total_drops: 9,
        time: SystemTime::UNIX_EPOCH,
    }));
    // Per-subscription losses that pass through `record` are not counted
    // again: they reach the metrics through `subscriber_lost`.
    for source in [LossSource::Subscriber, LossSource::History] {
        metrics.record(&Event::Loss(LossEvent {
            source,
            lost: 100,
            total: 100,
            lost_drops: 100,
            total_drops: 100,
            time: SystemTime::UNIX_EPOCH,
        }));
    }
    metrics.subscriber_lost(3, 11);
    metrics.subscriber_lost(1, 1);
    let text = encoded(&metrics);

    for (source, events, drops) in [
        ("kernel_ring_full", 0.0, 10.0),
        ("kernel_recursion", 0.0, 2.0),
        ("pipeline", 5.0, 9.0),
        ("subscriber", 4.0, 12.0),
    ] {
        assert_sample(
            &text,
            &format!(r#"dropscope_lost_events_total{{source="{source}"}}"#),
            events,
        );
        assert_sample(
            &text,
            &format!(r#"dropscope_lost_drops_total{{source="{source}"}}"#),
            drops,
        );
    }
    assert_sample(&text, r#"dropscope_events_total{kind="loss"}"#, 6.0);
}

#[test]
fn kernel_counters_stay_monotonic() {
    let metrics = metrics();
    let stats = KernelStats {
        seen: 100,
        filtered: 50,
        not_ip: 1,
        aggregated: 30,
        new_flows: 10,
        overflow: 4,
        ring_full: 0,
        lost_ring_full: 3,
        read_errors: 2,
        recursion_misses: 5,
        undecodable: 0,
    };
    metrics.set_kernel(&stats, 7);
    metrics.set_kernel(&stats, 6);
    let outcome =
        |outcome: &str| format!(r#"dropscope_kernel_hook_calls_total{{outcome="{outcome}"}}"#);

    let text = encoded(&metrics);
    assert_sample(&text, &outcome("filtered"), 50.0);
    assert_sample(&text, &outcome("not_ip"), 1.0);
    assert_sample(&text, &outcome("aggregated"), 30.0);
    assert_sample(&text, &outcome("new_flow"), 10.0);
    assert_sample(&text, &outcome("overflow"), 4.0);
    assert_sample(&text, &outcome("lost_ring_full"), 3.0);
    assert_sample(&text, &outcome("read_error"), 2.0);
    assert_sample(&text, "dropscope_kernel_recursion_misses_total", 5.0);
    assert_sample(&text, "dropscope_active_flows", 6.0);

    metrics.set_kernel(
        &KernelStats {
            filtered: 80,
            recursion_misses: 6,
            ..stats
        },
        2,
    );
    let text = encoded(&metrics);
    assert_sample(&text, &outcome("filtered"), 80.0);
    assert_sample(&text, &outcome("aggregated"), 30.0);
    assert_sample(&text, "dropscope_kernel_recursion_misses_total", 6.0);
    assert_sample(&text, "dropscope_active_flows", 2.0);

    // The programs were reloaded: counters restart from zero and the new
    // values are added, never subtracted.
    metrics.set_kernel(
        &KernelStats {
            filtered: 4,
            ..KernelStats::default()
        },
        0,
    );
    let text = encoded(&metrics);
    assert_sample(&text, &outcome("filtered"), 84.0);
    assert_sample(&text, &outcome("aggregated"), 30.0);
    assert_sample(&text, "dropscope_kernel_recursion_misses_total", 6.0);
}

#[test]
fn program_runtime_is_counted_in_runs_and_seconds() {
    let metrics = metrics();
    metrics.set_program_runtime("kfree_skb", 10, 1_500_000_000);
    metrics.set_program_runtime("kfree_skb", 30, 2_000_000_000);
    metrics.set_program_runtime("tc_egress", 1, 250_000_000);
    let text = encoded(&metrics);
    assert_sample(
        &text,
        r#"dropscope_bpf_program_runs_total{program="kfree_skb"}"#,
        30.0,
    );
    assert_sample(
        &text,
        r#"dropscope_bpf_program_run_time_seconds_total{program="kfree_skb"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"dropscope_bpf_program_run_time_seconds_total{program="tc_egress"}"#,
        0.25,
    );
    assert!(
        text.contains("# UNIT dropscope_bpf_program_run_time_seconds seconds"),
        "{text}"
    );
}

#[test]
fn gauges_hold_the_latest_value() {
    let metrics = metrics();
    metrics.set_metadata(&[("pods", 12), ("services", 3)], false);
    metrics.set_metadata(&[("pods", 10), ("services", 3)], true);
    metrics.set_subscribers(4);
    metrics.set_subscribers(2);
    let text = encoded(&metrics);
    assert_sample(&text, r#"dropscope_metadata_objects{kind="pods"}"#, 10.0);
    assert_sample(&text, r#"dropscope_metadata_objects{kind="services"}"#, 3.0);
    assert_sample(&text, "dropscope_metadata_synced", 1.0);
    assert_sample(&text, "dropscope_subscribers", 2.0);
}

#[test]
fn metrics_are_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Metrics>();
    let metrics = Arc::new(metrics());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let metrics = Arc::clone(&metrics);
            scope.spawn(move || {
                for _ in 0..100 {
                    publish(&metrics, drop_event(EventKind::Update, 1));
                }
            });
        }
    });
    assert_sample(
        &encoded(&metrics),
        &drops_series("NETFILTER_DROP", "none", "none"),
        400.0,
    );
}

#[test]
fn the_classic_encoding_names_every_sample_in_its_help_and_type() {
    let metrics = metrics();
    publish(&metrics, drop_event(EventKind::New, 3));
    metrics.record(&kernel_loss(LossSource::KernelRingFull, 1, 1));
    metrics.set_program_runtime("kfree_skb", 10, 1_500_000_000);
    metrics.set_metadata(&[("pods", 12)], true);
    let openmetrics = encoded(&metrics);
    let classic = metrics.encode_classic().expect("encodes");

    assert!(!classic.contains("# EOF"), "{classic}");
    assert!(!classic.contains("# UNIT"), "{classic}");
    // What the classic parsers (promtool, Prometheus' text parser) check:
    // every sample's name has a HELP and a TYPE line of its own, of a type
    // the classic format knows, before it.
    let mut described: BTreeMap<&str, (bool, Option<&str>)> = BTreeMap::new();
    let mut samples = 0;
    for line in classic.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().expect("a name");
            described.entry(name).or_default().0 = true;
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').expect("a name and a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{kind} is not a classic type: {line}"
            );
            described.entry(name).or_default().1 = Some(kind);
        } else {
            let name = line.split(['{', ' ']).next().expect("a sample has a name");
            assert_eq!(
                described
                    .get(name)
                    .map(|(help, kind)| (*help, kind.is_some())),
                Some((true, true)),
                "sample {line:?} has no HELP and TYPE of its name in:\n{classic}"
            );
            samples += 1;
        }
    }
    assert_eq!(
        samples,
        openmetrics
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count(),
        "every sample is kept"
    );
    assert_eq!(
        described.get("dropscope_drops_total"),
        Some(&(true, Some("counter")))
    );
    assert_eq!(
        described.get("dropscope_bpf_program_run_time_seconds_total"),
        Some(&(true, Some("counter")))
    );
    assert_eq!(
        described.get("dropscope_active_flows"),
        Some(&(true, Some("gauge")))
    );
    assert_sample(
        &classic,
        &drops_series("NETFILTER_DROP", "none", "none"),
        3.0,
    );
}
