//! End-to-end: the `dropscope.v1.Observer` API of a real agent, read with a
//! tonic client over the agent's Unix socket and with the real
//! `dropscope observe`. Each test makes its own lab and agent and looks only
//! at events with its own addresses (an agent sees the drops of the whole
//! host, other tests' included), except where it accounts for a whole
//! stream.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Cluster, DropView, TcpOutcome,
        client::{self, Drained, ObserveChild},
        connect_tcp, send_udp,
    },
};
use dropscope_proto::v1::{
    DropEvent, DropEventKind, Endpoint, Event, EventFilter, EventKind, LossEvent, ObserveRequest,
    Protocol, Verdict, identity::Identity as Who, observer_client::ObserverClient,
};
use serde_json::{Value, json};
use tonic::{Code, transport::Channel};

/// How long the agent may take to report what the kernel dropped.
const WAIT: Duration = Duration::from_secs(20);
/// How long a request that ends by itself may take to be answered.
const ANSWER: Duration = Duration::from_secs(10);
/// The node name the harness gives every agent.
const NODE: &str = "lab-node";

fn ours(lab: &Lab) -> impl Fn(&DropView) -> bool + '_ {
    |drop| lab.owns(drop.src.ip) || lab.owns(drop.dst.ip)
}

/// The lab's /24 (pods, node, VIPs), as an `ip` filter value.
fn lab_cidr(lab: &Lab) -> String {
    format!("{}/24", lab.gateway_v4())
}

/// An endpoint of a tuple as (address, port).
fn address_of(end: Option<&Endpoint>) -> Option<(IpAddr, u16)> {
    let end = end?;
    Some((end.ip.parse().ok()?, u16::try_from(end.port).ok()?))
}

/// True for a drop whose packet has one of this lab's addresses.
fn is_lab_drop(lab: &Lab, drop: &DropEvent) -> bool {
    drop.packet.as_ref().is_some_and(|packet| {
        [packet.source.as_ref(), packet.destination.as_ref()]
            .into_iter()
            .filter_map(address_of)
            .any(|(ip, _)| lab.owns(ip))
    })
}

/// The drops among `events` that belong to this lab.
fn lab_drops(lab: &Lab, events: &[Event]) -> Vec<DropView> {
    events
        .iter()
        .filter_map(client::drop_view)
        .filter(ours(lab))
        .collect()
}

/// Every drop among `events`, whatever its lab.
fn all_drops(events: &[Event]) -> Vec<DropView> {
    events.iter().filter_map(client::drop_view).collect()
}

#[test]
fn a_real_drop_reaches_an_observe_subscriber_with_both_tuples_the_explanation_and_the_node()
-> Result<()> {
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let web = lab.add_pod("web")?;
    let vip = IpAddr::V4(lab.vip(50));
    lab.nft()
        .service("web", vip, 80, "tcp", web.ipv4.into(), 8080)?;
    lab.nft()
        .drop_forward("deny_web", web.ipv4.into(), 8080, "tcp")?;
    let snapshot = Cluster::new()
        .node(NODE, lab.gateway_v4().into())
        .namespace("shop", &[])
        .pod(
            "shop",
            "client",
            client_pod.ipv4.into(),
            NODE,
            &[("app", "client")],
            &[],
        )
        .pod(
            "shop",
            "web",
            web.ipv4.into(),
            NODE,
            &[("app", "web")],
            &[("http", 8080, "TCP")],
        )
        .service(
            "shop",
            "web",
            vip,
            ("http", 80, 8080, "TCP"),
            &[("app", "web")],
            &[("web", web.ipv4.into())],
        )
        .policy(
            "shop",
            "web-deny-ingress",
            json!({ "podSelector": { "matchLabels": { "app": "web" } }, "policyTypes": ["Ingress"] }),
        )
        .write(lab.id())?;
    let agent = Agent::start(&["--snapshot", snapshot.path()])?;
    let server = agent.server();
    let runtime = client::runtime()?;
    // Subscribed before the traffic: the event must arrive live.
    let (_observer, mut stream) = runtime.block_on(client::follow(&server, client::endpoint()))?;

    let outcome = connect_tcp(
        &client_pod.netns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(3500),
    )?;
    ensure!(
        outcome == TcpOutcome::TimedOut,
        "the connect must time out, got {outcome:?}"
    );
    let is_ours_new = |event: &Event| {
        client::drop_view(event)
            .is_some_and(|drop| ours(&lab)(&drop) && drop.dst.port == 8080 && drop.kind == "new")
    };
    let received = runtime.block_on(client::collect_until(
        &mut stream,
        WAIT,
        "this lab's NEW drop on the follow stream",
        |events| events.iter().any(is_ours_new),
    ))?;
    let event = received
        .into_iter()
        .find(is_ours_new)
        .context("the NEW drop")?;

    assert_eq!(event.node, NODE, "the event names the agent's node");
    assert_eq!(event.kind, EventKind::Drop as i32);
    assert!(event.time.is_some(), "the event has its publication time");
    let reported = client::drop_of(&event).context("a drop event")?;
    assert_eq!(reported.kind, DropEventKind::New as i32);
    assert_eq!(
        reported.reason.as_ref().map(|reason| reason.name.as_str()),
        Some("NETFILTER_DROP")
    );
    assert_eq!(
        reported.new_packets, 1,
        "a NEW event stands for its first drop"
    );
    let packet = reported.packet.as_ref().context("packet tuple")?;
    assert_eq!(packet.protocol, Protocol::Tcp as i32);
    let client_end = address_of(packet.source.as_ref()).context("packet source")?;
    assert_eq!(client_end.0, IpAddr::V4(client_pod.ipv4));
    assert_eq!(
        address_of(packet.destination.as_ref()),
        Some((IpAddr::V4(web.ipv4), 8080)),
        "the packet tuple is post-DNAT: the backend"
    );
    let conntrack = reported.conntrack.as_ref().context("conntrack")?;
    assert!(conntrack.dnat, "the Service DNAT is flagged: {conntrack:?}");
    assert!(!conntrack.snat, "no SNAT in this lab: {conntrack:?}");
    let original = conntrack.original.as_ref().context("original tuple")?;
    assert_eq!(address_of(original.source.as_ref()), Some(client_end));
    assert_eq!(
        address_of(original.destination.as_ref()),
        Some((vip, 80)),
        "the original tuple: the VIP as the client sent it"
    );
    let reply = conntrack.reply.as_ref().context("reply tuple")?;
    assert_eq!(
        address_of(reply.source.as_ref()),
        Some((IpAddr::V4(web.ipv4), 8080))
    );
    let explanation = reported.explanation.as_ref().context("an explanation")?;
    assert_eq!(
        explanation.verdict,
        Verdict::DenyIngress as i32,
        "{explanation:#?}"
    );
    let who = |end: Option<&dropscope_proto::v1::FlowEnd>| {
        end.and_then(|end| end.identity.as_ref())
            .and_then(|identity| identity.identity.clone())
    };
    match who(explanation.source.as_ref()) {
        Some(Who::Pod(pod)) => assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("shop", "client")
        ),
        other => bail!("the source is the client pod, got {other:?}"),
    }
    match who(explanation.destination.as_ref()) {
        Some(Who::Pod(pod)) => {
            assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("shop", "web"))
        }
        other => bail!("the destination is the web pod, got {other:?}"),
    }
    match explanation
        .service
        .as_ref()
        .and_then(|identity| identity.identity.clone())
    {
        Some(Who::Service(service)) => assert_eq!(service.name, "web"),
        other => bail!("the flow went through the web Service, got {other:?}"),
    }

    // The same event, three ways: the agent's stdout, `dropscope observe -o
    // json` and the tonic message in its proto3 JSON form.
    let flow_id = reported.flow_id;
    let is_this_new = |value: &Value| {
        DropView::parse(value).is_some_and(|drop| drop.flow_id == flow_id && drop.kind == "new")
    };
    let printed = agent.wait_for(WAIT, "the agent printing the NEW event", |agent| {
        agent.events().into_iter().find(is_this_new)
    })?;
    // The agent sees the whole host: the last 1000 of this lab's events.
    let cidr = lab_cidr(&lab);
    let observed = client::observe_once(
        &server,
        &["-o", "json", "--last", "1000", "--ip", &cidr],
        ANSWER,
    )?;
    let observed = observed
        .iter()
        .find(|value| is_this_new(value))
        .cloned()
        .with_context(|| {
            format!("dropscope observe --last 1000 --ip CIDR prints the NEW event of flow {flow_id}; it printed {observed:#?}")
        })?;
    assert_eq!(
        observed, printed,
        "dropscope observe -o json prints what the agent prints"
    );
    assert_eq!(
        observed,
        client::json(&event),
        "the JSON is the proto3 JSON mapping of the message the API sent"
    );
    drop(stream);
    agent.stop()?;
    Ok(())
}

/// A history request (the last 1000 events) with these filters.
fn last_with(
    runtime: &tokio::runtime::Runtime,
    observer: &mut ObserverClient<Channel>,
    allow: Vec<EventFilter>,
    deny: Vec<EventFilter>,
) -> Result<Vec<Event>> {
    runtime.block_on(client::history(
        observer,
        ObserveRequest {
            number: 1000,
            allow,
            deny,
            ..Default::default()
        },
        ANSWER,
    ))
}

#[test]
fn filters_select_by_vip_reason_and_port_and_deny_wins() -> Result<()> {
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let dns = lab.add_pod("dns")?;
    let vip = IpAddr::V4(lab.vip(10));
    let unused_vip = IpAddr::V4(lab.vip(99));
    lab.nft()
        .service("dns", vip, 53, "udp", dns.ipv4.into(), 5353)?;
    lab.nft()
        .drop_forward("deny_dns", dns.ipv4.into(), 5353, "udp")?;
    let agent = Agent::start(&[])?;
    send_udp(&client_pod.netns, vec![0], SocketAddr::new(vip, 53), 2)?;
    let dropped = lab.nft().counter("deny_dns")?;
    assert_eq!(dropped, 2);
    agent.wait_for(WAIT, "both drops", |agent| {
        let flows = agent.flows(|drop| ours(&lab)(drop) && drop.dst.port == 5353);
        (flows.values().map(|flow| flow.packets).sum::<u64>() == dropped).then_some(())
    })?;

    let server = agent.server();
    let runtime = client::runtime()?;
    let mut observer = runtime.block_on(client::connect(&server))?;
    let cidr = lab_cidr(&lab);
    let lab_only = |more: EventFilter| EventFilter {
        ip: vec![cidr.clone()],
        ..more
    };
    let mut ask = |allow: Vec<EventFilter>, deny: Vec<EventFilter>| {
        last_with(&runtime, &mut observer, allow, deny)
    };

    // The VIP is only in the conntrack original tuple: the packet went to
    // the backend.
    let by_vip = ask(
        vec![EventFilter {
            destination_ip: vec![vip.to_string()],
            ..Default::default()
        }],
        vec![],
    )?;
    let ours_by_vip = lab_drops(&lab, &by_vip);
    ensure!(
        !ours_by_vip.is_empty(),
        "destination_ip = the VIP finds the DNATed drop"
    );
    for drop in &ours_by_vip {
        assert_eq!(
            (drop.dst.ip, drop.dst.port),
            (IpAddr::V4(dns.ipv4), 5353),
            "the packet went to the backend"
        );
        let (_, original_dst) = drop.original.context("conntrack original")?;
        assert_eq!((original_dst.ip, original_dst.port), (vip, 53));
    }
    for drop in all_drops(&by_vip) {
        ensure!(
            drop.dst.ip == vip || drop.original.is_some_and(|(_, dst)| dst.ip == vip),
            "only drops to the VIP pass: {:#}",
            drop.raw
        );
    }
    let by_backend = ask(
        vec![EventFilter {
            destination_ip: vec![dns.ipv4.to_string()],
            ..Default::default()
        }],
        vec![],
    )?;
    assert_eq!(
        lab_drops(&lab, &by_backend).len(),
        ours_by_vip.len(),
        "the packet's destination finds the same events"
    );
    let elsewhere = ask(
        vec![EventFilter {
            ip: vec![unused_vip.to_string()],
            ..Default::default()
        }],
        vec![],
    )?;
    let found = all_drops(&elsewhere);
    assert!(
        found.is_empty(),
        "no drop involves {unused_vip}: {found:#?}"
    );

    let reason = |name: &str| EventFilter {
        reason: vec![name.to_owned()],
        ..Default::default()
    };
    let port = |port: u32| EventFilter {
        port: vec![port],
        ..Default::default()
    };
    let netfilter = ask(vec![lab_only(reason("NETFILTER_DROP"))], vec![])?;
    let ours_netfilter = lab_drops(&lab, &netfilter);
    ensure!(
        !ours_netfilter.is_empty(),
        "the reason filter finds the drop"
    );
    assert!(
        all_drops(&netfilter)
            .iter()
            .all(|drop| drop.reason == "NETFILTER_DROP")
    );
    let no_socket = ask(vec![lab_only(reason("NO_SOCKET"))], vec![])?;
    assert!(lab_drops(&lab, &no_socket).is_empty(), "{no_socket:#?}");
    for (port_value, what) in [
        (53, "the Service port, in the original tuple"),
        (5353, "the target port, in the packet"),
    ] {
        let by_port = ask(vec![lab_only(port(port_value))], vec![])?;
        assert_eq!(
            lab_drops(&lab, &by_port).len(),
            ours_by_vip.len(),
            "port {port_value} ({what}) finds the drop"
        );
    }
    let other_port = ask(vec![lab_only(port(9))], vec![])?;
    assert!(lab_drops(&lab, &other_port).is_empty(), "{other_port:#?}");

    // Deny wins over allow.
    let denied = ask(
        vec![lab_only(reason("NETFILTER_DROP"))],
        vec![reason("NETFILTER_DROP")],
    )?;
    let found = all_drops(&denied);
    assert!(
        found.is_empty(),
        "allow and deny on the same reason: {found:#?}"
    );
    let denied = ask(
        vec![EventFilter {
            destination_ip: vec![vip.to_string()],
            ..Default::default()
        }],
        vec![EventFilter {
            ip: vec![cidr.clone()],
            ..Default::default()
        }],
    )?;
    let found = all_drops(&denied);
    assert!(
        found.is_empty(),
        "the VIP allowed, the lab denied: {found:#?}"
    );

    // The same through the CLI's flags.
    let vip_text = vip.to_string();
    let cli = |args: &[&str]| -> Result<Vec<DropView>> {
        let mut full = vec!["-o", "json", "--last", "1000"];
        full.extend(args);
        Ok(client::observe_once(&server, &full, ANSWER)?
            .iter()
            .filter_map(DropView::parse)
            .collect())
    };
    let to_vip = cli(&["--to-ip", &vip_text])?;
    let ours_to_vip: Vec<&DropView> = to_vip.iter().filter(|drop| ours(&lab)(drop)).collect();
    assert_eq!(ours_to_vip.len(), ours_by_vip.len(), "--to-ip VIP");
    assert!(
        ours_to_vip
            .iter()
            .all(|drop| drop.original.is_some_and(|(_, dst)| dst.ip == vip))
    );
    let selected = cli(&[
        "--to-ip",
        &vip_text,
        "--reason",
        "NETFILTER_DROP",
        "--port",
        "53",
    ])?;
    assert_eq!(
        selected.iter().filter(|drop| ours(&lab)(drop)).count(),
        ours_by_vip.len(),
        "--to-ip VIP --reason NETFILTER_DROP --port 53"
    );
    let negated = cli(&["--to-ip", &vip_text, "--not", "--reason", "NETFILTER_DROP"])?;
    assert!(
        negated.is_empty(),
        "--not --reason NETFILTER_DROP excludes it: {negated:#?}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn history_requests_first_last_since_until_are_answered_from_the_agent() -> Result<()> {
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 6400);
    lab.nft().drop_input("history", target.ip(), 6400, "udp")?;
    // No END events while the test runs: one event per flow.
    let agent = Agent::start(&["--idle-timeout", "60s"])?;
    let before = SystemTime::now();
    let ports = [41_001, 41_002, 41_003, 41_004];
    for port in ports {
        send_udp(&client_pod.netns, vec![port], target, 1)?;
        // One at a time: each flow's event is published after the previous.
        agent.wait_for(WAIT, &format!("the drop from port {port}"), |agent| {
            (!agent
                .drops(|drop| ours(&lab)(drop) && drop.src.port == port)
                .is_empty())
            .then_some(())
        })?;
    }

    let server = agent.server();
    let runtime = client::runtime()?;
    let mut observer = runtime.block_on(client::connect(&server))?;
    let lab_filter = vec![EventFilter {
        ip: vec![lab_cidr(&lab)],
        ..Default::default()
    }];
    let mut ask = |request: ObserveRequest| -> Result<Vec<Event>> {
        let events = runtime.block_on(client::history(
            &mut observer,
            ObserveRequest {
                allow: lab_filter.clone(),
                ..request
            },
            ANSWER,
        ))?;
        Ok(events)
    };
    let source_ports = |events: &[Event]| -> Vec<u16> {
        lab_drops(&lab, events)
            .iter()
            .map(|drop| drop.src.port)
            .collect()
    };

    let everything = ask(ObserveRequest {
        number: 1000,
        ..Default::default()
    })?;
    assert_eq!(
        source_ports(&everything),
        ports,
        "one event per flow, oldest first"
    );
    let lab_events: Vec<&Event> = everything
        .iter()
        .filter(|event| client::drop_of(event).is_some_and(|drop| is_lab_drop(&lab, drop)))
        .collect();
    let third = lab_events[2].time.context("the third event's time")?;

    let first_two = ask(ObserveRequest {
        first: 2,
        ..Default::default()
    })?;
    assert_eq!(source_ports(&first_two), ports[..2], "first: 2");
    let last_two = ask(ObserveRequest {
        number: 2,
        ..Default::default()
    })?;
    assert_eq!(source_ports(&last_two), ports[2..], "number: 2");
    let since_third = ask(ObserveRequest {
        since: Some(third),
        ..Default::default()
    })?;
    assert_eq!(
        source_ports(&since_third),
        ports[2..],
        "since the third (at or after)"
    );
    let since_now = ask(ObserveRequest {
        since: Some(client::timestamp(SystemTime::now())),
        ..Default::default()
    })?;
    assert_eq!(source_ports(&since_now), [0u16; 0], "since after them all");
    let until_third = ask(ObserveRequest {
        first: 1000,
        until: Some(third),
        ..Default::default()
    })?;
    assert_eq!(
        source_ports(&until_third),
        ports[..2],
        "until the third (before it)"
    );
    let until_before = ask(ObserveRequest {
        first: 1000,
        until: Some(client::timestamp(before)),
        ..Default::default()
    })?;
    assert_eq!(
        source_ports(&until_before),
        [0u16; 0],
        "until before them all"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn invalid_requests_are_refused_naming_the_field() -> Result<()> {
    let agent = Agent::start(&[])?;
    let runtime = client::runtime()?;
    let mut observer = runtime.block_on(client::connect(&agent.server()))?;
    let allow = |filter: EventFilter| vec![filter];
    let cases = [
        (
            "first",
            ObserveRequest {
                first: 5,
                follow: true,
                ..Default::default()
            },
        ),
        (
            "number",
            ObserveRequest {
                number: 5,
                since: Some(client::timestamp(
                    SystemTime::now() - Duration::from_secs(60),
                )),
                ..Default::default()
            },
        ),
        (
            "allow[0].reason[0]",
            ObserveRequest {
                number: 5,
                allow: allow(EventFilter {
                    reason: vec!["NOT_A_DROP_REASON".to_owned()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "allow[0].ip[0]",
            ObserveRequest {
                number: 5,
                allow: allow(EventFilter {
                    ip: vec!["10.0.0.300/8".to_owned()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "allow[0].label[0]",
            ObserveRequest {
                number: 5,
                allow: allow(EventFilter {
                    label: vec!["app in (web".to_owned()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ];
    for (field, request) in cases {
        let status = runtime.block_on(client::refusal(&mut observer, request, ANSWER))?;
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{field}: {}",
            status.message()
        );
        assert!(
            status.message().contains(&format!("{field}:")),
            "the message names {field}: {}",
            status.message()
        );
    }
    // The same fields, valid, are answered.
    runtime.block_on(client::history(
        &mut observer,
        ObserveRequest {
            number: 5,
            allow: allow(EventFilter {
                reason: vec!["NETFILTER_DROP".to_owned()],
                ip: vec!["10.0.0.0/8".to_owned()],
                label: vec!["app in (web)".to_owned()],
                ..Default::default()
            }),
            ..Default::default()
        },
        ANSWER,
    ))?;
    agent.stop()?;
    Ok(())
}

#[test]
fn a_stalled_subscriber_is_told_exactly_what_it_missed_while_a_fast_one_gets_everything()
-> Result<()> {
    const FLOWS: u16 = 3000;
    const BATCH: u16 = 50;
    const FIRST_PORT: u16 = 42_000;
    // More drops than events (NEW stands for 1, the UPDATE for 2), so that
    // lost events and lost drops are different numbers.
    const PER_FLOW: usize = 3;
    const HISTORY: usize = 256;
    const RSS_GROWTH: u64 = 64 * 1024 * 1024;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 6500);
    lab.nft().drop_input("flood", target.ip(), 6500, "udp")?;
    // No END events while the test runs: NEW, then UPDATEs.
    let agent = Agent::start(&["--history", &HISTORY.to_string(), "--idle-timeout", "60s"])?;
    let server = agent.server();
    let pid = agent.pid();
    let runtime = client::runtime()?;

    // The fast subscriber, drained by a task as events come.
    let (fast_client, fast_stream) =
        runtime.block_on(client::follow(&server, client::endpoint()))?;
    let fast = Drained::spawn(&runtime, fast_client, fast_stream);
    // The stalled one, opened after the fast one (so everything it gets,
    // the fast one gets too) on a connection of its own with small HTTP/2
    // windows, and not read until the end.
    let small_windows = client::endpoint()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535);
    let (_stalled_client, mut stalled) =
        runtime.block_on(client::follow(&server, small_windows))?;
    let rss_before = client::rss_bytes(pid)?;

    let lab_new = |events: &[Event]| {
        events
            .iter()
            .filter_map(client::drop_of)
            .filter(|drop| drop.kind == DropEventKind::New as i32 && is_lab_drop(&lab, drop))
            .count()
    };
    let lab_packets = |events: &[Event]| -> u64 {
        events
            .iter()
            .filter_map(client::drop_of)
            .filter(|drop| is_lab_drop(&lab, drop))
            .map(|drop| drop.new_packets)
            .sum()
    };
    // Batches the fast subscriber can keep up with; far more than the
    // history in all.
    for start in (0..FLOWS).step_by(usize::from(BATCH)) {
        let ports: Vec<u16> = (FIRST_PORT + start..FIRST_PORT + start + BATCH).collect();
        send_udp(&client_pod.netns, ports, target, PER_FLOW)?;
        let sent = usize::from(start + BATCH);
        fast.wait_for(
            WAIT,
            &format!("the fast subscriber to see {sent} flows"),
            |events| (lab_new(events) >= sent).then_some(()),
        )?;
    }
    let dropped = lab.nft().counter("flood")?;
    assert_eq!(
        dropped,
        u64::from(FLOWS) * PER_FLOW as u64,
        "nft counted every datagram"
    );
    fast.wait_for(
        WAIT,
        "the fast subscriber to account for every drop",
        |events| (lab_packets(events) == dropped).then_some(()),
    )?;
    let rss_stalled = client::rss_bytes(pid)?;
    let fast_seen = fast.when_quiet(Duration::from_secs(1), WAIT)?;

    assert_eq!(
        lab_new(&fast_seen),
        usize::from(FLOWS),
        "the fast subscriber saw every flow once"
    );
    let fast_losses: Vec<&Event> = fast_seen
        .iter()
        .filter(|event| client::is_subscriber_loss(event))
        .collect();
    assert!(
        fast_losses.is_empty(),
        "the fast subscriber lost nothing: {fast_losses:#?}"
    );
    let last = fast_seen.last().context("the fast subscriber saw events")?;

    // The stalled subscriber now reads up to the same last event.
    let stalled_seen = runtime.block_on(client::collect_until(
        &mut stalled,
        WAIT,
        "the stalled subscriber to reach the fast one's last event",
        |events| events.last() == Some(last),
    ))?;
    let first = stalled_seen
        .first()
        .context("the stalled subscriber read")?;
    ensure!(
        !client::is_subscriber_loss(first),
        "the stalled stream starts with an event before falling behind: {first:?}"
    );
    let start = fast_seen
        .iter()
        .position(|event| event == first)
        .context("the stalled stream's first event is in the fast stream")?;
    // Over the same stretch of the hub: what the fast one read is what the
    // stalled one read plus what it was told it missed.
    let window = &fast_seen[start..];
    let window_packets: u64 = window
        .iter()
        .filter_map(client::drop_of)
        .map(|drop| drop.new_packets)
        .sum();
    let received: Vec<&Event> = stalled_seen
        .iter()
        .filter(|event| !client::is_subscriber_loss(event))
        .collect();
    let received_packets: u64 = received
        .iter()
        .filter_map(|event| client::drop_of(event))
        .map(|drop| drop.new_packets)
        .sum();
    let losses: Vec<&LossEvent> = stalled_seen
        .iter()
        .filter(|event| client::is_subscriber_loss(event))
        .filter_map(client::loss_of)
        .collect();
    ensure!(
        !losses.is_empty(),
        "the stalled subscriber was told it missed events ({} read of {})",
        received.len(),
        window.len()
    );
    let lost_events: u64 = losses.iter().map(|loss| loss.lost_events).sum();
    let lost_drops: u64 = losses.iter().map(|loss| loss.lost_drops).sum();
    assert!(
        lost_events > 0 && lost_drops > 0,
        "losses name what was lost: {losses:#?}"
    );
    assert_eq!(
        received.len() as u64 + lost_events,
        window.len() as u64,
        "events read + events lost = the events the fast subscriber read ({} read, {lost_events} lost)",
        received.len()
    );
    assert_eq!(
        received_packets + lost_drops,
        window_packets,
        "drops read + drops lost = the drops the fast subscriber read ({received_packets} read, {lost_drops} lost)"
    );
    let totals = losses
        .last()
        .map(|loss| (loss.total_events, loss.total_drops));
    assert_eq!(
        totals,
        Some((lost_events, lost_drops)),
        "the last loss carries the totals"
    );
    let stalled_lab_new = received
        .iter()
        .filter_map(|event| client::drop_of(event))
        .filter(|drop| drop.kind == DropEventKind::New as i32 && is_lab_drop(&lab, drop))
        .count() as u64;
    assert!(
        stalled_lab_new + lost_events >= u64::from(FLOWS),
        "{stalled_lab_new} NEW read + {lost_events} lost cover {FLOWS} flows"
    );
    assert!(
        rss_stalled <= rss_before + RSS_GROWTH,
        "the agent's RSS grew from {rss_before} to {rss_stalled} bytes while a subscriber stalled"
    );

    drop((fast, stalled));
    agent.stop()?;
    Ok(())
}

/// A file removed when dropped (also on panic).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn observe_follow_survives_an_agent_restart() -> Result<()> {
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("before", gateway, 7001, "udp")?;
    lab.nft().drop_input("after", gateway, 7002, "udp")?;
    let socket = RemoveOnDrop(std::env::temp_dir().join(format!(
        "dropscope-e2e-api-restart-{}-{}.sock",
        std::process::id(),
        lab.id()
    )));
    let listen = format!("unix:{}", socket.0.display());
    let first = Agent::start(&["--listen", &listen])?;
    // --last: history first, so a drop made before the stream is open is
    // still printed.
    let mut observe = ObserveChild::start(
        &listen,
        &[
            "--follow",
            "--last",
            "1000",
            "-o",
            "json",
            "--ip",
            &lab_cidr(&lab),
        ],
    )?;

    send_udp(
        &client_pod.netns,
        vec![0],
        SocketAddr::new(gateway, 7001),
        1,
    )?;
    observe.wait_for(WAIT, "the first agent's drop", |observe| {
        (!observe
            .drops(|drop| ours(&lab)(drop) && drop.dst.port == 7001)
            .is_empty())
        .then_some(())
    })?;
    first.stop()?;
    let second = Agent::start(&["--listen", &listen])?;
    send_udp(
        &client_pod.netns,
        vec![0],
        SocketAddr::new(gateway, 7002),
        1,
    )?;
    observe.wait_for(
        Duration::from_secs(30),
        "the restarted agent's drop",
        |observe| {
            (!observe
                .drops(|drop| ours(&lab)(drop) && drop.dst.port == 7002)
                .is_empty())
            .then_some(())
        },
    )?;
    let before =
        observe.drops(|drop| ours(&lab)(drop) && drop.dst.port == 7001 && drop.kind == "new");
    assert_eq!(
        before.len(),
        1,
        "the first agent's drop is printed once: {before:#?}"
    );
    assert!(
        observe.log().contains("reconnecting"),
        "the same observe process reconnected:\n{}",
        observe.log()
    );
    drop(observe);
    second.stop()?;
    Ok(())
}
