//! End-to-end: OpenTelemetry export. A real agent (and a real collector)
//! export with `--otlp` over a real socket to the OTLP/gRPC test receiver
//! (`dropscope_e2e::otlp_server`, built from the published OTLP service
//! definitions; no OpenTelemetry Collector is installable here). The
//! kernel drops a real packet (a policy-like nftables rule behind a
//! kube-proxy-like Service DNAT); the test reads the log record the
//! receiver got for it, and the counters exported as metrics.
//!
//! Each test has its own lab, receiver and node names, and looks only at
//! records of its own lab's addresses.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Collector, SocketPath, connect_tcp,
        pki::TestPki,
        send_udp,
        web_to_api::{WebToApi, deny_all_ingress},
    },
    otlp_server::{OtlpTestReceiver, ReceivedRecord, text_of},
};
use opentelemetry_proto::tonic::{
    logs::v1::SeverityNumber,
    metrics::v1::{AggregationTemporality, Metric, metric::Data, number_data_point},
};

/// How long a drop may take to reach the receiver.
const WAIT: Duration = Duration::from_secs(20);
/// How long a collector may take to exit after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

/// The sum of the data points of counter `name` whose attribute `key` is
/// `value`, when `metrics` has it as a cumulative, monotonic sum.
fn counted(metrics: &[Metric], name: &str, key: &str, value: &str) -> Option<f64> {
    let metric = metrics.iter().find(|metric| metric.name == name)?;
    let Some(Data::Sum(sum)) = &metric.data else {
        return None;
    };
    if !sum.is_monotonic || sum.aggregation_temporality != AggregationTemporality::Cumulative as i32
    {
        return None;
    }
    Some(
        sum.data_points
            .iter()
            .filter(|point| text_of(&point.attributes, key).as_deref() == Some(value))
            .filter_map(|point| match point.value {
                Some(number_data_point::Value::AsDouble(value)) => Some(value),
                Some(number_data_point::Value::AsInt(value)) => Some(value as f64),
                None => None,
            })
            .sum(),
    )
}

/// The first drop record from `source` to `destination` (after DNAT).
fn drop_record(
    receiver: &OtlpTestReceiver,
    source: IpAddr,
    destination: SocketAddr,
) -> Option<ReceivedRecord> {
    receiver.records().into_iter().find(|record| {
        record.record.event_name == "dropscope.drop"
            && record.text("source.address") == Some(source.to_string())
            && record.text("destination.address") == Some(destination.ip().to_string())
            && record.text("destination.port") == Some(destination.port().to_string())
    })
}

#[test]
fn an_agent_exports_a_denied_drop_with_its_pod_policy_and_both_tuples() -> Result<()> {
    const NODE: &str = "lab-node";
    let mut lab = Lab::new()?;
    let shape = WebToApi::new(&mut lab, 30)?;
    let (web, api, vip) = (&shape.web, &shape.api, shape.vip);
    let snapshot = shape
        .cluster(&lab, NODE)
        .policy("backend", "deny-all", deny_all_ingress())
        .write(lab.id())?;
    let receiver = OtlpTestReceiver::start()?;
    let agent = Agent::start(&[
        "--snapshot",
        snapshot.path(),
        "--node-name",
        NODE,
        "--otlp",
        &receiver.endpoint(),
        "--otlp-metrics-interval",
        "1s",
    ])?;
    connect_tcp(
        &web.netns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(1500),
    )?;
    let backend = SocketAddr::new(api.ipv4.into(), 8080);
    let record = receiver.wait_for(WAIT, "the drop's log record", |receiver| {
        drop_record(receiver, web.ipv4.into(), backend)
            .filter(|record| record.text("dropscope.verdict").is_some())
    })?;
    let dropped = lab.nft().counter("deny_api")?;
    ensure!(dropped >= 1, "the kernel dropped the SYN: {dropped}");

    let source_port = record.text("source.port").context("the client's port")?;
    let expected = [
        ("k8s.node.name", NODE.to_owned()),
        ("k8s.namespace.name", "frontend".to_owned()),
        ("k8s.pod.name", "web".to_owned()),
        ("dropscope.destination.namespace", "backend".to_owned()),
        ("dropscope.destination.pod", "api".to_owned()),
        ("dropscope.service", "backend/api".to_owned()),
        ("network.transport", "tcp".to_owned()),
        ("network.type", "ipv4".to_owned()),
        ("dropscope.event", "drop".to_owned()),
        ("dropscope.reason", "NETFILTER_DROP".to_owned()),
        ("dropscope.verdict", "DENY_INGRESS".to_owned()),
        ("dropscope.policy", "backend/deny-all".to_owned()),
        ("dropscope.nat.dnat", "true".to_owned()),
        (
            "dropscope.tuple.original",
            format!("tcp {}:{source_port} -> {vip}:80", web.ipv4),
        ),
        (
            "dropscope.tuple.packet",
            format!("tcp {}:{source_port} -> {backend}", web.ipv4),
        ),
    ];
    for (key, value) in expected {
        assert_eq!(
            record.text(key).as_deref(),
            Some(value.as_str()),
            "{key}: {record:#?}"
        );
    }
    ensure!(
        record.text("dropscope.hint").is_some(),
        "a hint: {record:#?}"
    );
    assert_eq!(
        record.resource_text("service.name").as_deref(),
        Some("dropscope-agent")
    );
    assert_eq!(record.resource_text("k8s.node.name").as_deref(), Some(NODE));
    assert_eq!(record.record.severity_number, SeverityNumber::Warn as i32);
    ensure!(record.record.time_unix_nano > 0, "{record:#?}");
    ensure!(
        format!("{:?}", record.record.body).contains("NETFILTER_DROP"),
        "the body names the reason: {record:#?}"
    );

    // The counters, as cumulative sums, count the drop too.
    receiver.wait_for(
        WAIT,
        "the drop counted in the exported metrics",
        |receiver| {
            let (resource, metrics) = receiver.latest_metrics();
            (text_of(&resource, "service.name").as_deref() == Some("dropscope-agent")
                && counted(
                    &metrics,
                    "dropscope_drops_total",
                    "reason",
                    "NETFILTER_DROP",
                )
                .is_some_and(|count| count >= 1.0))
            .then_some(())
        },
    )?;
    agent.stop()?;
    Ok(())
}

#[test]
fn a_collector_exports_its_nodes_events_and_its_counters() -> Result<()> {
    const PORT: u16 = 7301;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("otlp_drop", gateway, PORT, "tcp")?;
    let receiver = OtlpTestReceiver::start()?;
    let socket = SocketPath::new("collector-otlp");
    let collector = Collector::start(
        &socket.listen(),
        &[
            "--otlp",
            &receiver.endpoint(),
            "--otlp-metrics-interval",
            "1s",
        ],
    )?;
    let node = format!("ds{}-otlp-node", lab.id());
    let agent = Agent::start(&["--collector", &collector.server(), "--node-name", &node])?;
    connect_tcp(
        &client_pod.netns,
        SocketAddr::new(gateway, PORT),
        Duration::from_millis(1500),
    )?;
    let record = receiver.wait_for(WAIT, "the node's drop through the collector", |receiver| {
        drop_record(
            receiver,
            client_pod.ipv4.into(),
            SocketAddr::new(gateway, PORT),
        )
    })?;
    ensure!(
        lab.nft().counter("otlp_drop")? >= 1,
        "the kernel dropped the SYN"
    );
    assert_eq!(
        record.text("k8s.node.name"),
        Some(node.clone()),
        "{record:#?}"
    );
    assert_eq!(
        record.resource_text("service.name").as_deref(),
        Some("dropscope-collector")
    );
    assert_eq!(
        record.text("dropscope.reason").as_deref(),
        Some("NETFILTER_DROP")
    );
    receiver.wait_for(WAIT, "the collector's counters", |receiver| {
        let (_, metrics) = receiver.latest_metrics();
        metrics
            .iter()
            .any(|metric| metric.name == "dropscope_collector_joins_total")
            .then_some(())
    })?;
    agent.stop()?;
    collector.stop(STOP)?;
    Ok(())
}

#[test]
fn events_lost_while_the_receiver_was_away_are_counted_and_told() -> Result<()> {
    const PORT: u16 = 7302;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("otlp_away", gateway, PORT, "udp")?;
    // An address nothing listens on yet.
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    // A hub of 8 events: what the exporter cannot send waits there, and
    // the ring overtakes it.
    let agent = Agent::start(&["--otlp", &format!("http://{address}"), "--history", "8"])?;
    let ports: Vec<u16> = (44_001..44_041).collect();
    send_udp(
        &client_pod.netns,
        ports.clone(),
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    ensure!(
        lab.nft().counter("otlp_away")? >= ports.len() as u64,
        "the kernel dropped every datagram"
    );
    // The terminal output reads the same small hub and may miss some too:
    // wait for the last one, the newest event.
    agent.wait_for(WAIT, "the agent printing the last drop", |agent| {
        (!agent
            .drops(|drop| drop.src.ip == IpAddr::V4(client_pod.ipv4) && drop.src.port == 44_040)
            .is_empty())
        .then_some(())
    })?;
    ensure!(
        agent.log().contains("OTLP log export failed"),
        "the exporter tried the absent receiver:\n{}",
        agent.log()
    );

    let receiver = OtlpTestReceiver::start_on(address)?;
    let loss = receiver.wait_for(
        Duration::from_secs(40),
        "the loss told once the receiver is back",
        |receiver| {
            receiver.records().into_iter().find(|record| {
                record.record.event_name == "dropscope.loss"
                    && record.text("dropscope.loss.source").as_deref() == Some("SUBSCRIBER")
            })
        },
    )?;
    let lost: u64 = loss
        .text("dropscope.loss.lost_events")
        .and_then(|lost| lost.parse().ok())
        .context("lost_events")?;
    ensure!(lost >= 1, "{loss:#?}");
    // Ground truth: the agent's metrics count at least as much (they are
    // refreshed every few seconds).
    agent.wait_for(WAIT, "the loss in the agent's metrics", |agent| {
        let metrics = agent.metrics_text().ok()?;
        let counted: f64 = metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(r#"dropscope_lost_events_total{source="subscriber"} "#)
            })?
            .trim()
            .parse()
            .ok()?;
        (counted >= lost as f64).then_some(())
    })?;
    agent.stop()?;
    Ok(())
}

#[test]
fn an_agent_exports_over_tls_to_a_receiver_its_ca_signed() -> Result<()> {
    const PORT: u16 = 7303;
    // TLS needs the CA that signed the receiver: refused before anything
    // is attached without it.
    match Agent::start(&["--otlp", "https://127.0.0.1:4317"]) {
        Ok(agent) => anyhow::bail!(
            "the agent exported over TLS without a CA to check the receiver:\n{}",
            agent.log()
        ),
        Err(error) => {
            let error = format!("{error:#}");
            ensure!(
                error.contains("--otlp-tls-ca"),
                "the refusal names --otlp-tls-ca: {error}"
            );
        }
    }
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft()
        .drop_input("otlp_tls_drop", gateway, PORT, "udp")?;
    let pki = TestPki::new()?;
    let receiver = OtlpTestReceiver::start_tls(
        std::path::Path::new(&pki.server_cert),
        std::path::Path::new(&pki.server_key),
    )?;
    ensure!(receiver.endpoint().starts_with("https://"));
    let agent = Agent::start(&["--otlp", &receiver.endpoint(), "--otlp-tls-ca", &pki.ca])?;
    send_udp(
        &client_pod.netns,
        vec![43_701],
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    let record = receiver.wait_for(WAIT, "the drop over TLS", |receiver| {
        drop_record(
            receiver,
            client_pod.ipv4.into(),
            SocketAddr::new(gateway, PORT),
        )
    })?;
    assert_eq!(
        record.text("dropscope.reason").as_deref(),
        Some("NETFILTER_DROP"),
        "{record:#?}"
    );
    agent.stop()?;
    Ok(())
}
