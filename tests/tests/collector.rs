//! End-to-end: `dropscope collector` with real agents pushing to it
//! (`dropscope agent --collector`), read with a tonic client and with the
//! real `dropscope observe --server`. Each test makes its own lab, its own
//! collector (a unique Unix socket, or `127.0.0.1:0`) and its own agents
//! with node names of its own.
//!
//! All agents on this machine share one kernel, so two agents with distinct
//! node names both report every drop: a lab drop must reach the collector
//! once per node. Each test looks only at drops with its own lab's
//! addresses (and at node states of its own nodes).
//!
//! The cross-node join runs two agents on two "nodes" of one lab: the
//! client's (the lab node, where the connect times out after its SYNs left
//! by the uplink) and a remote node's, whose nftables policy drops them.
//!
//! A node's `NodeState` saying it is gone is the barrier for "everything it
//! pushed is stored": the collector publishes it after the node's stream
//! ended, through the same time-ordered merge as the node's events, which
//! were all published (by the agent) before it.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Lab,
    lab::{
        Collector, DropView, LabClient, Relay, SocketPath,
        client::{self, Drained},
        cluster_view::{
            HISTORY, Route, WAIT, agent_of, comparable, ensure_no_copies, is_connected, lab_cidr,
            lab_drops, new_by_node_and_port, new_from_each, node_names, ours, sample,
            stop_and_wait_gone, wait_for_node,
        },
        collector::{self, node_in, node_state_of, tells_gone},
        join_scenario::{Transport, join_across_nodes},
        pki::TestPki,
        send_udp,
    },
};
use dropscope_proto::v1::{Event, EventKind, LossSource, NodeConnection};
use serde_json::Value;

/// How long a request that ends by itself may take to be answered.
const ANSWER: Duration = Duration::from_secs(10);
/// How long a collector may take to exit after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

#[test]
fn observe_through_the_collector_sees_both_nodes() -> Result<()> {
    const PORT: u16 = 7201;
    const SOURCE_PORTS: [u16; 2] = [43_101, 43_102];
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let collector = Collector::start("127.0.0.1:0", &[])?;
    let server = collector.server();
    ensure!(
        server
            .parse::<SocketAddr>()
            .is_ok_and(|address| address.port() != 0),
        "the collector logs the port it bound: {server:?}"
    );
    let runtime = client::runtime()?;
    let (observer, stream) = runtime.block_on(client::follow(&server, client::endpoint()))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    let nodes = node_names(&lab);
    // No END events while the test runs: one NEW per flow and node.
    let agents = nodes
        .iter()
        .map(|node| agent_of(node, &Route::push(&server), &["--idle-timeout", "60s"]))
        .collect::<Result<Vec<_>>>()?;

    for port in SOURCE_PORTS {
        send_udp(
            &client_pod.netns,
            vec![port],
            SocketAddr::new(gateway, PORT),
            1,
        )?;
        // One flow at a time: the second is published after the first.
        seen.wait_for(
            WAIT,
            &format!("the drop from port {port} from both nodes"),
            |events| new_from_each(&lab, events, &nodes, port).then_some(()),
        )?;
    }
    assert_eq!(lab.nft().counter("to_nodes")?, 2, "nft dropped two");
    let streamed = seen.with(<[Event]>::to_vec);
    let mut expected: Vec<(String, u16)> = nodes
        .iter()
        .flat_map(|node| SOURCE_PORTS.map(|port| (node.clone(), port)))
        .collect();
    expected.sort();
    assert_eq!(
        new_by_node_and_port(&lab, &streamed),
        expected,
        "each drop once per node, nothing more"
    );
    for (agent, node) in agents.iter().zip(&nodes) {
        let connected = streamed
            .iter()
            .filter_map(node_state_of)
            .filter(|state| &state.node == node)
            .map(|state| state.connection)
            .collect::<Vec<_>>();
        assert_eq!(
            connected,
            [NodeConnection::Connected as i32],
            "the stream told {node} connected, once"
        );
        for port in SOURCE_PORTS {
            let is_this =
                |drop: &DropView| ours(&lab)(drop) && drop.src.port == port && drop.kind == "new";
            let own = agent.wait_for(WAIT, &format!("{node} printing port {port}"), |agent| {
                agent
                    .events()
                    .into_iter()
                    .find(|value| DropView::parse(value).is_some_and(|drop| is_this(&drop)))
            })?;
            let relayed = streamed
                .iter()
                .find(|event| {
                    client::drop_view(event)
                        .is_some_and(|drop| &drop.node == node && is_this(&drop))
                })
                .map(client::json)
                .context("the relayed drop")?;
            assert_eq!(relayed["node"], Value::from(node.as_str()));
            assert_eq!(
                comparable(&relayed),
                comparable(&own),
                "{node}'s drop from port {port} through the collector is what {node} printed"
            );
        }
    }

    // History across nodes, through the real CLI.
    let cidr = lab_cidr(&lab);
    // The last N lines matching the lab: drops, and node states (which
    // pass every filter).
    let last = |server: &str, number: &str, more: &[&str]| -> Result<(Vec<DropView>, usize)> {
        let mut args = vec!["-o", "json", "--last", number, "--ip", &cidr];
        args.extend(more);
        let lines = client::observe_once(server, &args, ANSWER)?;
        let drops: Vec<DropView> = lines.iter().filter_map(DropView::parse).collect();
        let others: Vec<&Value> = lines
            .iter()
            .filter(|line| DropView::parse(line).is_none())
            .filter(|line| line["kind"] != "EVENT_KIND_NODE_STATE")
            .collect();
        ensure!(
            others.is_empty(),
            "only drops and node states match the lab: {others:#?}"
        );
        Ok((drops, lines.len()))
    };
    let only_drops = |(drops, lines): (Vec<DropView>, usize)| -> Result<Vec<DropView>> {
        ensure!(
            drops.len() == lines,
            "the last lines are drops, after the node states: {drops:#?}"
        );
        Ok(drops)
    };
    let pairs = |drops: Vec<DropView>| -> Vec<(String, u16)> {
        let mut pairs: Vec<(String, u16)> = drops
            .into_iter()
            .map(|drop| (drop.node, drop.src.port))
            .collect();
        pairs.sort();
        pairs
    };
    let [node_a, node_b] = &nodes;
    assert_eq!(
        pairs(only_drops(last(&server, "2", &[])?)?),
        [
            (node_a.clone(), SOURCE_PORTS[1]),
            (node_b.clone(), SOURCE_PORTS[1])
        ],
        "the collector's last 2 are the second drop from both nodes"
    );
    assert_eq!(
        pairs(only_drops(last(&server, "4", &[])?)?),
        expected,
        "the collector's last 4 are both drops from both nodes"
    );
    assert_eq!(
        pairs(only_drops(last(&agents[0].server(), "2", &[])?)?),
        SOURCE_PORTS.map(|port| (node_a.clone(), port)),
        "an agent's last 2 are both drops from its node"
    );
    assert_eq!(
        pairs(last(&server, "1000", &["--node", node_b])?.0),
        SOURCE_PORTS.map(|port| (node_b.clone(), port)),
        "--node selects one node's drops"
    );

    let status = runtime.block_on(collector::status(&server))?;
    assert_eq!(status.hook, "collector");
    let listed: BTreeSet<&str> = status
        .nodes
        .iter()
        .map(|state| state.node.as_str())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([node_a.as_str(), node_b.as_str()]),
        "the status lists the nodes that pushed: {:#?}",
        status.nodes
    );
    for state in &status.nodes {
        assert!(is_connected(state), "{state:#?}");
        assert!(state.events > 0, "events stored from the node: {state:#?}");
        assert!(!state.version.is_empty(), "{state:#?}");
    }

    drop(seen);
    for agent in agents {
        agent.stop()?;
    }
    collector.stop(STOP)?;
    Ok(())
}

#[test]
fn a_killed_agent_shows_as_unavailable_until_it_comes_back() -> Result<()> {
    const PORT: u16 = 7202;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let socket = SocketPath::new("collector-kill");
    let collector = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let server = collector.server();
    let runtime = client::runtime()?;
    let (observer, stream) = runtime.block_on(client::follow(&server, client::endpoint()))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    let nodes = node_names(&lab);
    let [node_a, node_b] = &nodes;
    let survivor = agent_of(node_a, &Route::push(&server), &[])?;
    let killed = agent_of(node_b, &Route::push(&server), &[])?;
    // One datagram from `port`, dropped on the nodes' side; waits for the
    // flow's NEW event from each of `from`.
    let drop_seen_by = |port: u16, from: &[String], what: &str| -> Result<()> {
        send_udp(
            &client_pod.netns,
            vec![port],
            SocketAddr::new(gateway, PORT),
            1,
        )?;
        seen.wait_for(WAIT, what, |events| {
            new_from_each(&lab, events, from, port).then_some(())
        })
    };

    drop_seen_by(43_201, &nodes, "the first drop from both nodes")?;
    // Dropping the harness's agent kills it with SIGKILL: no goodbye.
    drop(killed);
    let gone = seen.wait_for(
        WAIT,
        &format!("the stream telling {node_b} gone"),
        |events| {
            events
                .iter()
                .find(|event| tells_gone(event, node_b))
                .cloned()
        },
    )?;
    assert_eq!(gone.kind, EventKind::NodeState as i32);
    assert_eq!(&gone.node, node_b, "the event names the node it is about");
    let state = node_state_of(&gone).context("a node state")?;
    assert!(state.since.is_some(), "{state:#?}");

    let status = runtime.block_on(collector::status(&server))?;
    let reported = node_in(&status, node_b).context("the killed node is still listed")?;
    assert!(
        [NodeConnection::Unavailable, NodeConnection::Error]
            .map(|connection| connection as i32)
            .contains(&reported.connection),
        "the status shows {node_b} unavailable: {reported:#?}"
    );
    assert!(
        reported.events > 0,
        "what it pushed still counts: {reported:#?}"
    );
    let other = node_in(&status, node_a).context("the survivor is listed")?;
    assert!(is_connected(other), "{other:#?}");
    let told_gone_a = seen.with(|events| events.iter().any(|event| tells_gone(event, node_a)));
    assert!(!told_gone_a, "{node_a} was never told gone");

    // The survivor's stream goes on.
    drop_seen_by(
        43_202,
        std::slice::from_ref(node_a),
        "the survivor's drop after the kill",
    )?;

    // The node's agent comes back (a DaemonSet restarts it): the stream
    // and the status say it is connected again, and its drops arrive.
    let restarted = agent_of(node_b, &Route::push(&server), &[])?;
    seen.wait_for(
        WAIT,
        &format!("the stream telling {node_b} connected again"),
        |events| {
            let gone_at = events.iter().position(|event| tells_gone(event, node_b))?;
            events[gone_at..]
                .iter()
                .filter_map(node_state_of)
                .any(|state| &state.node == node_b && is_connected(state))
                .then_some(())
        },
    )?;
    let status = runtime.block_on(collector::status(&server))?;
    let back = node_in(&status, node_b).context("the restarted node is listed")?;
    assert!(is_connected(back), "{back:#?}");
    drop_seen_by(43_203, &nodes, "a drop from both nodes after the restart")?;
    drop(seen);
    restarted.stop()?;
    survivor.stop()?;
    collector.stop(STOP)?;
    Ok(())
}

#[test]
fn events_made_while_the_collector_was_away_arrive_after_it_returns() -> Result<()> {
    const PORT: u16 = 7203;
    const SOURCE_PORT: u16 = 43_301;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    // Nothing listens there yet.
    let socket = SocketPath::new("collector-late");
    let nodes = node_names(&lab);
    let agents = nodes
        .iter()
        .map(|node| agent_of(node, &Route::push(&socket.listen()), &[]))
        .collect::<Result<Vec<_>>>()?;

    send_udp(
        &client_pod.netns,
        vec![SOURCE_PORT],
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    for (agent, node) in agents.iter().zip(&nodes) {
        agent.wait_for(WAIT, &format!("{node} printing the drop"), |agent| {
            (!agent
                .drops(|drop| ours(&lab)(drop) && drop.src.port == SOURCE_PORT)
                .is_empty())
            .then_some(())
        })?;
        ensure!(
            agent.log().contains("cannot push to the collector"),
            "{node} tried the collector while it was away:\n{}",
            agent.log()
        );
    }

    let collector = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let server = collector.server();
    let runtime = client::runtime()?;
    // History first: the agents may have pushed before this stream opens.
    let (observer, stream) = runtime.block_on(collector::follow_from_oldest(&server))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    seen.wait_for(
        WAIT,
        "the drop made while away, from both nodes",
        |events| new_from_each(&lab, events, &nodes, SOURCE_PORT).then_some(()),
    )?;

    stop_and_wait_gone(agents, &nodes, &seen)?;
    let stored = runtime.block_on(collector::everything(&server, ANSWER))?;
    ensure_no_copies(&lab, &stored)?;
    assert_eq!(
        new_by_node_and_port(&lab, &stored),
        nodes
            .iter()
            .map(|node| (node.clone(), SOURCE_PORT))
            .collect::<Vec<_>>(),
        "the drop once per node"
    );
    drop(seen);
    collector.stop(STOP)?;
    Ok(())
}

/// The set-up of `deploy/collector.yaml`: agents dial the collector by
/// name and check its certificate against that name; the collector
/// requires a client certificate its CA signed. An agent with one pushes;
/// an agent without one is refused at the handshake, says so, and nothing
/// of its node is stored.
#[test]
fn agents_push_by_name_over_mutual_tls_and_one_without_a_certificate_is_refused() -> Result<()> {
    const PORT: u16 = 7206;
    const SOURCE_PORT: u16 = 43_306;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let pki = TestPki::new()?;
    let collector = Collector::start(
        "127.0.0.1:0",
        &[
            "--history",
            HISTORY,
            "--tls-cert",
            &pki.server_cert,
            "--tls-key",
            &pki.server_key,
            "--tls-client-ca",
            &pki.ca,
        ],
    )?;
    let address = collector.server();
    let (_, port) = address
        .rsplit_once(':')
        .with_context(|| format!("no port in {address}"))?;
    // A DNS name, resolved at each connect, and the name the collector's
    // certificate is checked against.
    let by_name = Route::push(&format!("localhost:{port}"));
    let [trusted, anonymous] = node_names(&lab);
    let trusted_agent = agent_of(
        &trusted,
        &by_name,
        &[
            "--collector-tls-ca",
            &pki.ca,
            "--collector-tls-cert",
            &pki.client_cert,
            "--collector-tls-key",
            &pki.client_key,
        ],
    )?;
    let anonymous_agent = agent_of(&anonymous, &by_name, &["--collector-tls-ca", &pki.ca])?;

    send_udp(
        &client_pod.netns,
        vec![SOURCE_PORT],
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    let binary = std::env::var("DROPSCOPE_BIN").context(
        "DROPSCOPE_BIN is not set: run the end-to-end tests with `cargo xtask test --e2e`",
    )?;
    // What the collector stored of this drop, per node, read with the
    // real `dropscope observe` over mutual TLS.
    let stored_by_node = || -> Result<BTreeSet<String>> {
        // A request for history, which ends by itself.
        let output = Command::new(&binary)
            .args(["observe", "--server", &address, "--last", HISTORY])
            .args(["--output", "json", "--tls-ca", &pki.ca])
            .args(["--tls-cert", &pki.client_cert, "--tls-key", &pki.client_key])
            .output()
            .context("running dropscope observe")?;
        ensure!(
            output.status.success(),
            "observe over mutual TLS: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|event| DropView::parse(&event))
            .filter(|drop| ours(&lab)(drop) && drop.src.port == SOURCE_PORT)
            .map(|drop| drop.node)
            .collect())
    };
    client::wait_until(WAIT, "the trusted node's drop at the collector", || {
        stored_by_node()
            .is_ok_and(|nodes| nodes.contains(&trusted))
            .then_some(())
    })
    .with_context(|| {
        format!(
            "trusted agent:\n{}\ncollector:\n{}",
            trusted_agent.log(),
            collector.log()
        )
    })?;
    // With TLS 1.3 the refusal reaches the agent as a closed connection:
    // its warning says what to check.
    anonymous_agent.wait_for(WAIT, "the refused agent saying what to check", |agent| {
        agent
            .log()
            .lines()
            .any(|line| {
                line.contains("cannot push to the collector")
                    && line.contains("give --collector-tls-cert and --collector-tls-key")
            })
            .then_some(())
    })?;
    anonymous_agent.wait_for(WAIT, "the refused agent printing the drop", |agent| {
        (!agent
            .drops(|drop| ours(&lab)(drop) && drop.src.port == SOURCE_PORT)
            .is_empty())
        .then_some(())
    })?;
    let stored = stored_by_node()?;
    ensure!(
        stored == BTreeSet::from([trusted.clone()]),
        "only the node with a certificate is stored, got {stored:?}"
    );
    ensure!(
        !trusted_agent.log().contains("cannot push to the collector"),
        "the trusted agent was never refused:\n{}",
        trusted_agent.log()
    );
    drop(anonymous_agent);
    trusted_agent.stop()?;
    collector.stop(STOP)?;
    Ok(())
}

/// The agent's history is its buffer while the collector is away: what
/// it could not hold arrives as a counted `LossEvent` once the collector
/// is back, and the agent's loss metric says the same. Nothing is lost
/// silently: the lab's drops that arrived plus the losses cover every drop
/// the lab made.
#[test]
fn what_the_agent_could_not_hold_for_an_absent_collector_arrives_as_a_counted_loss() -> Result<()> {
    const PORT: u16 = 7207;
    /// More new flows than the agent's history holds.
    const BURST: u16 = 200;
    const FIRST_OF_BURST: u16 = 43_700;
    /// Made last, after the burst: held until the collector is back.
    const LAST: u16 = 43_699;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    let target = SocketAddr::new(gateway, PORT);
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    // Nothing listens there yet.
    let socket = SocketPath::new("collector-overflow");
    let [node, _] = node_names(&lab);
    // A history of 64 events is the agent's whole buffer.
    let agent = dropscope_e2e::Agent::start(&[
        "--collector",
        &socket.listen(),
        "--node-name",
        &node,
        "--history",
        "64",
    ])?;
    agent.wait_for(WAIT, "the agent trying the absent collector", |agent| {
        agent
            .log()
            .contains("cannot push to the collector")
            .then_some(())
    })?;
    send_udp(
        &client_pod.netns,
        (FIRST_OF_BURST..FIRST_OF_BURST + BURST).collect(),
        target,
        1,
    )?;
    send_udp(&client_pod.netns, vec![LAST], target, 1)?;
    agent.wait_for(WAIT, "the agent printing the last drop", |agent| {
        (!agent
            .drops(|drop| ours(&lab)(drop) && drop.src.port == LAST)
            .is_empty())
        .then_some(())
    })?;

    let collector = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let runtime = client::runtime()?;
    let (observer, stream) =
        runtime.block_on(collector::follow_from_oldest(&collector.server()))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    let losses_of_node = |events: &[Event]| -> Vec<(u64, u64)> {
        events
            .iter()
            .filter(|event| event.node == node)
            .filter_map(client::loss_of)
            .filter(|loss| loss.source == LossSource::Subscriber as i32)
            .map(|loss| (loss.lost_events, loss.total_events))
            .collect()
    };
    let events = seen
        .wait_for(WAIT, "the held drop and the loss", |events| {
            let last = lab_drops(&lab, events)
                .iter()
                .any(|drop| drop.node == node && drop.src.port == LAST);
            (last && !losses_of_node(events).is_empty()).then(|| events.to_vec())
        })
        .with_context(|| {
            format!(
                "collector log:\n{}\nagent log:\n{}",
                collector.log(),
                agent.log()
            )
        })?;
    ensure_no_copies(&lab, &events)?;
    let losses = losses_of_node(&events);
    let lost: u64 = losses.iter().map(|(lost, _)| lost).sum();
    let counted = losses.iter().map(|(_, total)| *total).max().unwrap_or(0);
    ensure!(
        lost == counted && lost > 0,
        "every loss the agent counted reached the collector: {losses:?}"
    );
    let arrived: BTreeSet<u16> = lab_drops(&lab, &events)
        .into_iter()
        .filter(|drop| drop.node == node && drop.kind == "new")
        .map(|drop| drop.src.port)
        .filter(|port| *port == LAST || (FIRST_OF_BURST..FIRST_OF_BURST + BURST).contains(port))
        .collect();
    ensure!(
        arrived.len() as u64 + lost > u64::from(BURST),
        "{} of the lab's {} drops arrived and {lost} events were counted lost: some went missing silently",
        arrived.len(),
        BURST + 1
    );
    let metric = sample(
        &agent.metrics_text()?,
        r#"dropscope_lost_events_total{source="subscriber"}"#,
    )
    .context("the agent's subscriber loss metric")?;
    ensure!(
        metric >= counted as f64,
        "the agent's metric ({metric}) counts the losses it reported ({counted})"
    );
    drop(seen);
    agent.stop()?;
    collector.stop(STOP)?;
    Ok(())
}

#[test]
fn a_collector_restart_does_not_duplicate() -> Result<()> {
    const PORT: u16 = 7204;
    // Stored by the first collector; pushed to it but never read (it is
    // frozen), so sent again to the second; made after the restart.
    const BEFORE: u16 = 43_401;
    const UNREAD: u16 = 43_402;
    const AFTER: u16 = 43_403;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    let target = SocketAddr::new(gateway, PORT);
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let socket = SocketPath::new("collector-restart");
    let first = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let runtime = client::runtime()?;
    let (observer, stream) = runtime.block_on(collector::follow_from_oldest(&first.server()))?;
    let seen_first = Drained::spawn(&runtime, observer, stream);
    let nodes = node_names(&lab);
    let agents = nodes
        .iter()
        .map(|node| agent_of(node, &Route::push(&socket.listen()), &[]))
        .collect::<Result<Vec<_>>>()?;

    send_udp(&client_pod.netns, vec![BEFORE], target, 1)?;
    seen_first.wait_for(WAIT, "the first drop from both nodes", |events| {
        new_from_each(&lab, events, &nodes, BEFORE).then_some(())
    })?;
    drop(seen_first);
    // Frozen, the first collector reads nothing more and acknowledges
    // nothing: what the agents push now stays unacknowledged.
    first.freeze()?;
    send_udp(&client_pod.netns, vec![UNREAD], target, 1)?;
    for (agent, node) in agents.iter().zip(&nodes) {
        agent.wait_for(WAIT, &format!("{node} printing the unread drop"), |agent| {
            (!agent
                .drops(|drop| ours(&lab)(drop) && drop.src.port == UNREAD)
                .is_empty())
            .then_some(())
        })?;
    }
    first.kill()?;
    let second = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let server = second.server();
    let (observer, stream) = runtime.block_on(collector::follow_from_oldest(&server))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    for node in &nodes {
        wait_for_node(
            &runtime,
            &server,
            node,
            &format!("{node} connected to the new collector"),
            is_connected,
        )?;
    }
    send_udp(&client_pod.netns, vec![AFTER], target, 1)?;
    seen.wait_for(
        WAIT,
        "the drop after the restart, from both nodes",
        |events| new_from_each(&lab, events, &nodes, AFTER).then_some(()),
    )?;

    stop_and_wait_gone(agents, &nodes, &seen)?;
    let stored = runtime.block_on(collector::everything(&server, ANSWER))?;
    ensure_no_copies(&lab, &stored)?;
    let news = new_by_node_and_port(&lab, &stored);
    for node in &nodes {
        for (port, what) in [
            (UNREAD, "the drop the first collector never read"),
            (AFTER, "the drop after the restart"),
        ] {
            assert!(
                news.contains(&(node.clone(), port)),
                "{node}: {what} is stored by the new collector: {news:?}"
            );
        }
    }
    drop(seen);
    second.stop(STOP)?;
    Ok(())
}

#[test]
fn a_reconnect_sends_again_what_was_not_acknowledged_and_it_is_stored_once() -> Result<()> {
    const PORT: u16 = 7205;
    // Acknowledged; stored but its acknowledgement held back; after the
    // reconnect.
    const ACKED: u16 = 43_501;
    const UNACKED: u16 = 43_502;
    const AFTER: u16 = 43_503;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    let target = SocketAddr::new(gateway, PORT);
    lab.nft().drop_input("to_node", gateway, PORT, "udp")?;
    let socket = SocketPath::new("collector-relayed");
    let collector = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let server = collector.server();
    let relay = Relay::start(&server)?;
    let runtime = client::runtime()?;
    let (observer, stream) = runtime.block_on(collector::follow_from_oldest(&server))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    let [node, _] = node_names(&lab);
    let nodes = std::slice::from_ref(&node);
    let agent = agent_of(&node, &Route::push(&relay.address()), &[])?;

    send_udp(&client_pod.netns, vec![ACKED], target, 1)?;
    seen.wait_for(WAIT, "the acknowledged drop", |events| {
        new_from_each(&lab, events, nodes, ACKED).then_some(())
    })?;
    relay.hold_replies();
    send_udp(&client_pod.netns, vec![UNACKED], target, 1)?;
    seen.wait_for(
        WAIT,
        "the collector storing the unacknowledged drop",
        |events| new_from_each(&lab, events, nodes, UNACKED).then_some(()),
    )?;
    relay.cut();
    let resent = agent.wait_for(WAIT, "the agent pushing again", |agent| {
        agent
            .log()
            .lines()
            .filter(|line| line.contains("pushing to the collector"))
            .nth(1)
            .map(str::to_owned)
    })?;
    let count = resent
        .split_whitespace()
        .find_map(|word| word.strip_prefix("resent="))
        .and_then(|count| count.parse::<u64>().ok())
        .with_context(|| format!("no resent= in {resent:?}"))?;
    ensure!(
        count > 0,
        "the agent sent again what was not acknowledged: {resent:?}"
    );
    send_udp(&client_pod.netns, vec![AFTER], target, 1)?;
    seen.wait_for(WAIT, "the drop after the reconnect", |events| {
        new_from_each(&lab, events, nodes, AFTER).then_some(())
    })?;

    stop_and_wait_gone(vec![agent], nodes, &seen)?;
    let stored = runtime.block_on(collector::everything(&server, ANSWER))?;
    ensure_no_copies(&lab, &stored)?;
    assert_eq!(
        new_by_node_and_port(&lab, &stored),
        [ACKED, UNACKED, AFTER].map(|port| (node.clone(), port)),
        "each drop once"
    );
    drop(seen);
    collector.stop(STOP)?;
    Ok(())
}

#[test]
fn a_collector_stops_on_sigterm_while_agents_push_and_readers_follow() -> Result<()> {
    let lab = Lab::new()?;
    let socket = SocketPath::new("collector-sigterm");
    let collector = Collector::start(&socket.listen(), &["--history", HISTORY])?;
    let server = collector.server();
    let runtime = client::runtime()?;
    let (observer, stream) = runtime.block_on(client::follow(&server, client::endpoint()))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    let [node, _] = node_names(&lab);
    let agent = agent_of(&node, &Route::push(&server), &[])?;
    wait_for_node(
        &runtime,
        &server,
        &node,
        "the agent connected",
        is_connected,
    )?;

    // A rollout sends SIGTERM and waits for the grace period: open push
    // and follow streams must not hold the collector.
    collector.stop(STOP)?;
    client::wait_until(WAIT, "the follow stream to end", || seen.ended())?;
    agent.wait_for(WAIT, "the agent noticing the collector gone", |agent| {
        agent
            .log()
            .contains("cannot push to the collector")
            .then_some(())
    })?;
    // Killed on drop: a graceful stop would wait for acknowledgements no
    // collector will send.
    drop(agent);
    Ok(())
}

/// A `lab-client` process (the tests' traffic in a pod's namespace and
/// cgroup).
fn lab_client() -> LabClient {
    LabClient::new(env!("CARGO_BIN_EXE_lab-client"))
}

#[test]
fn a_timeout_beyond_one_node_joins_the_policy_drop_on_another() -> Result<()> {
    join_across_nodes(&lab_client(), false, Transport::Push)
}

#[test]
fn a_service_dnat_on_the_client_node_still_joins_the_drop_on_another() -> Result<()> {
    join_across_nodes(&lab_client(), true, Transport::Push)
}
