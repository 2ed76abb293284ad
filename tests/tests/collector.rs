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
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Cluster, Collector, DropView, LabClient, Relay, SocketPath,
        client::{self, Drained},
        collector::{self, node_in, node_state_of, tells_gone},
        send_udp,
    },
};
use dropscope_proto::v1::{
    Event, EventKind, FailurePlace, Incident, IncidentEventKind, NodeConnection, NodeState,
    TupleMatch, Verdict, event::Event as Payload,
};
use serde_json::{Value, json};

/// How long a drop may take to reach the collector (agent, push, merge
/// window), reconnect backoff included.
const WAIT: Duration = Duration::from_secs(20);
/// How long a request that ends by itself may take to be answered.
const ANSWER: Duration = Duration::from_secs(10);
/// History of agents and collectors that must keep every event of a test
/// (the host's other drops included) until it ends.
const HISTORY: &str = "262144";
/// How long a collector may take to exit after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

fn ours(lab: &Lab) -> impl Fn(&DropView) -> bool + '_ {
    |drop| lab.owns(drop.src.ip) || lab.owns(drop.dst.ip)
}

/// The lab's /24, as an `--ip` filter value.
fn lab_cidr(lab: &Lab) -> String {
    format!("{}/24", lab.gateway_v4())
}

/// Two node names no other test (or test process) uses.
fn node_names(lab: &Lab) -> [String; 2] {
    ["a", "b"].map(|node| format!("ds{}-node-{node}", lab.id()))
}

/// An agent named `node` pushing to `collector`, plus `extra` arguments.
fn agent_of(node: &str, collector: &str, extra: &[&str]) -> Result<Agent> {
    // Every agent here sees the whole host's drops, the parallel tests'
    // storms included: a history that holds them all keeps this test's
    // events from being pushed out before they reach the collector.
    let mut args = vec![
        "--collector",
        collector,
        "--node-name",
        node,
        "--history",
        HISTORY,
    ];
    args.extend(extra);
    Agent::start(&args).with_context(|| format!("starting the agent of {node}"))
}

/// The drops among `events` that belong to this lab (each names its node).
fn lab_drops(lab: &Lab, events: &[Event]) -> Vec<DropView> {
    events
        .iter()
        .filter_map(client::drop_view)
        .filter(ours(lab))
        .collect()
}

/// True when every node in `nodes` has a NEW drop from `source_port` of
/// this lab among `events`.
fn new_from_each(lab: &Lab, events: &[Event], nodes: &[String], source_port: u16) -> bool {
    let drops = lab_drops(lab, events);
    nodes.iter().all(|node| {
        drops
            .iter()
            .any(|drop| &drop.node == node && drop.src.port == source_port && drop.kind == "new")
    })
}

/// How many times each (node, flow, kind, cumulative packets) of this lab
/// is among `events`: an event of one agent run, whatever path it took.
fn copies(lab: &Lab, events: &[Event]) -> BTreeMap<(String, u64, String, u64), usize> {
    let mut copies = BTreeMap::new();
    for drop in lab_drops(lab, events) {
        *copies
            .entry((drop.node, drop.flow_id, drop.kind, drop.packets))
            .or_insert(0) += 1;
    }
    copies
}

/// Fails naming every event of this lab stored more than once.
fn ensure_no_copies(lab: &Lab, events: &[Event]) -> Result<()> {
    let twice: Vec<_> = copies(lab, events)
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .collect();
    ensure!(
        twice.is_empty(),
        "(node, flow, kind, packets) stored more than once: {twice:?}\nthe lab's drops: {:#?}",
        lab_drops(lab, events)
            .iter()
            .map(|drop| &drop.raw)
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The (node, source port) of this lab's NEW drops among `events`, one
/// entry per event.
fn new_by_node_and_port(lab: &Lab, events: &[Event]) -> Vec<(String, u16)> {
    let mut found: Vec<(String, u16)> = lab_drops(lab, events)
        .into_iter()
        .filter(|drop| drop.kind == "new")
        .map(|drop| (drop.node, drop.src.port))
        .collect();
    found.sort();
    found
}

/// An event's JSON without what may differ between the agent's copy and
/// the collector's: the node, the time and the flow id.
fn comparable(event: &Value) -> Value {
    let mut event = event.clone();
    if let Some(fields) = event.as_object_mut() {
        fields.remove("node");
        fields.remove("time");
    }
    if let Some(drop) = event.get_mut("drop").and_then(Value::as_object_mut) {
        drop.remove("flowId");
    }
    event
}

/// Waits for the state of `node` in the collector's status to satisfy
/// `check`; returns that status's node state.
fn wait_for_node(
    runtime: &tokio::runtime::Runtime,
    server: &str,
    node: &str,
    what: &str,
    check: impl Fn(&NodeState) -> bool,
) -> Result<NodeState> {
    let started = Instant::now();
    loop {
        let status = runtime.block_on(collector::status(server))?;
        if let Some(state) = node_in(&status, node).filter(|state| check(state)) {
            return Ok(state.clone());
        }
        ensure!(
            started.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}; nodes: {:#?}",
            status.nodes
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_connected(state: &NodeState) -> bool {
    state.connection == NodeConnection::Connected as i32
}

/// Stops `agents` (SIGTERM), each having had every event acknowledged by
/// the collector, then waits until `seen` (a stream of the collector)
/// tells each node gone: from then on the collector holds all they pushed.
fn stop_and_wait_gone(agents: Vec<Agent>, nodes: &[String], seen: &Drained) -> Result<()> {
    for agent in agents {
        let log = agent.stop()?;
        ensure!(
            log.contains("every event acknowledged by the collector"),
            "the agent exits with every event acknowledged:\n{log}"
        );
    }
    for node in nodes {
        seen.wait_for(
            WAIT,
            &format!("the collector telling {node} gone"),
            |events| {
                events
                    .iter()
                    .any(|event| tells_gone(event, node))
                    .then_some(())
            },
        )?;
    }
    Ok(())
}

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
        .map(|node| agent_of(node, &server, &["--idle-timeout", "60s"]))
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
fn a_killed_agent_shows_as_unavailable() -> Result<()> {
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
    let survivor = agent_of(node_a, &server, &[])?;
    let killed = agent_of(node_b, &server, &[])?;

    send_udp(
        &client_pod.netns,
        vec![43_201],
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    seen.wait_for(WAIT, "the first drop from both nodes", |events| {
        new_from_each(&lab, events, &nodes, 43_201).then_some(())
    })?;
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
    send_udp(
        &client_pod.netns,
        vec![43_202],
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    seen.wait_for(WAIT, "the survivor's drop after the kill", |events| {
        new_from_each(&lab, events, std::slice::from_ref(node_a), 43_202).then_some(())
    })?;
    drop(seen);
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
        .map(|node| agent_of(node, &socket.listen(), &[]))
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
        .map(|node| agent_of(node, &socket.listen(), &[]))
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
    let agent = agent_of(&node, &relay.address(), &[])?;

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
    let agent = agent_of(&node, &server, &[])?;
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

/// The value of the sample `name` (with its labels) in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The incident an event carries.
fn incident_of(event: &Event) -> Option<&Incident> {
    match &event.event {
        Some(Payload::Incident(incident)) => Some(incident),
        _ => None,
    }
}

#[test]
fn a_timeout_beyond_one_node_joins_the_policy_drop_on_another() -> Result<()> {
    join_across_nodes(false)
}

#[test]
fn a_service_dnat_on_the_client_node_still_joins_the_drop_on_another() -> Result<()> {
    join_across_nodes(true)
}

/// The client pod on node a connects to a pod on node b, whose policy
/// drops the SYNs silently; with `through_service`, to a Service VIP that
/// node a DNATs to that pod (kube-proxy-like), so node b never sees the
/// VIP. The collector joins node a's timeout with node b's drop: by the
/// original tuple when direct, by the client's socket through the Service.
fn join_across_nodes(through_service: bool) -> Result<()> {
    const PORT: u16 = 8080;
    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(PORT)?;
    let vip = IpAddr::V4(lab.vip(40));
    if through_service {
        lab.nft()
            .service("api", vip, 80, "tcp", far.pod_ip().into(), PORT)?;
    }
    let cgroup = lab.pod_cgroup(&web)?;
    let nodes = node_names(&lab);
    let [node_a, node_b] = &nodes;
    // What node b's agent knows: a default-deny ingress policy selects the
    // pod its kernel drops the SYNs to.
    let snapshot = Cluster::new()
        .node(node_a, lab.gateway_v4().into())
        .node(node_b, far.address().into())
        .web_and_api(
            (web.ipv4.into(), node_a),
            (far.pod_ip().into(), node_b),
            PORT,
            "TCP",
        )
        .policy(
            "backend",
            "deny-all",
            json!({
                "podSelector": { "matchLabels": { "app": "api" } },
                "policyTypes": ["Ingress"],
            }),
        )
        .write(lab.id())?;
    let socket = SocketPath::new("collector-join");
    let collector = Collector::start(&socket.listen(), &["--metrics-listen", "127.0.0.1:0"])?;
    let server = collector.server();
    let runtime = client::runtime()?;
    let (observer, stream) = runtime.block_on(collector::follow_from_oldest(&server))?;
    let seen = Drained::spawn(&runtime, observer, stream);
    // Node a, the client's node: its tc programs watch the uplink the SYNs
    // leave by. The remote node is a namespace on this very kernel, so
    // node a's agent would see its drop too, which an agent on another
    // machine never would: NETFILTER_DROP is left out of node a's reasons.
    let agent_a = Agent::start_in(
        &lab.node,
        &[
            "--drop-reasons",
            "default,-NETFILTER_DROP",
            "--collector",
            &server,
            "--node-name",
            node_a,
        ],
    )?;
    // Node b, where the policy drops: its agent sees the kernel drop and
    // explains it.
    let agent_b = agent_of(node_b, &server, &["--snapshot", snapshot.path()])?;
    for node in &nodes {
        wait_for_node(
            &runtime,
            &server,
            node,
            &format!("{node} connected"),
            is_connected,
        )?;
    }

    let to = if through_service {
        SocketAddr::new(vip, 80)
    } else {
        SocketAddr::new(far.pod_ip().into(), PORT)
    };
    let mut connect = lab_client().spawn_in(
        &web.netns,
        Some(cgroup.path()),
        &["connect", &to.to_string()],
    )?;
    let result = connect.wait(WAIT)?;
    ensure!(result["outcome"] == "timed_out", "{result}");
    let local: SocketAddr = result["local"]
        .as_str()
        .and_then(|local| local.parse().ok())
        .with_context(|| format!("the client's local address in {result}"))?;
    let dropped = far.dropped(PORT)?;
    ensure!(dropped >= 1, "node b's policy dropped the SYNs: {dropped}");

    let of_this_flow = |incident: &Incident| {
        incident.flow.as_ref().is_some_and(|flow| {
            let endpoint = |side: &Option<dropscope_proto::v1::Endpoint>| {
                side.as_ref().and_then(|side| {
                    Some(SocketAddr::new(
                        side.ip.parse().ok()?,
                        u16::try_from(side.port).ok()?,
                    ))
                })
            };
            endpoint(&flow.source).map(|source| source.ip()) == Some(local.ip())
                && endpoint(&flow.destination) == Some(to)
        })
    };
    let joined = seen.wait_for(WAIT, "the cluster incident", |events| {
        events
            .iter()
            .find(|event| {
                incident_of(event).is_some_and(|incident| {
                    of_this_flow(incident)
                        && incident.event_kind == IncidentEventKind::Joined as i32
                })
            })
            .cloned()
    })?;
    let incident = incident_of(&joined).context("an incident")?;
    assert_eq!(
        &joined.node, node_a,
        "the deciding node's incident: {incident:#?}"
    );
    assert_eq!(
        incident
            .flow
            .as_ref()
            .and_then(|flow| flow.source.as_ref())
            .map(|source| source.port),
        Some(u32::from(local.port())),
        "the client socket's flow: {incident:#?}"
    );
    assert_eq!(
        incident.place,
        FailurePlace::OtherNode as i32,
        "{incident:#?}"
    );
    let remote = incident.remote.as_ref().context("remote drops")?;
    assert_eq!(&remote.node, node_b, "{incident:#?}");
    let expected = if through_service {
        TupleMatch::Source
    } else {
        TupleMatch::Original
    };
    assert_eq!(remote.r#match, expected as i32, "{incident:#?}");
    let backend = SocketAddr::new(far.pod_ip().into(), PORT);
    for drop in &remote.drops {
        let destination = drop
            .packet
            .as_ref()
            .and_then(|packet| packet.destination.as_ref())
            .map(|destination| (destination.ip.clone(), destination.port));
        assert_eq!(
            destination,
            Some((backend.ip().to_string(), u32::from(backend.port()))),
            "node b dropped the packet to the backend: {incident:#?}"
        );
    }
    assert!(
        [FailurePlace::BeyondNode, FailurePlace::Unseen]
            .map(|place| place as i32)
            .contains(&remote.decided_place),
        "{incident:#?}"
    );
    ensure!(!remote.drops.is_empty(), "{incident:#?}");
    for drop in &remote.drops {
        assert_eq!(
            drop.reason.as_ref().map(|reason| reason.name.as_str()),
            Some("NETFILTER_DROP"),
            "{incident:#?}"
        );
    }
    let explanation = incident
        .explanation
        .as_ref()
        .context("node b's explanation")?;
    assert_eq!(
        explanation.verdict,
        Verdict::DenyIngress as i32,
        "{incident:#?}"
    );
    let ingress = explanation.ingress.as_ref().context("the ingress report")?;
    assert_eq!(
        ingress
            .policies
            .iter()
            .map(|policy| format!("{}/{}", policy.namespace, policy.name))
            .collect::<Vec<_>>(),
        ["backend/deny-all"],
        "{incident:#?}"
    );
    ensure!(
        incident
            .summary
            .contains(&format!("dropped on node {node_b}"))
            && incident.summary.contains("backend/deny-all"),
        "the summary names the node and the policy: {}",
        incident.summary
    );
    let joins = seen.with(|events| {
        events
            .iter()
            .filter_map(incident_of)
            .filter(|incident| {
                of_this_flow(incident) && incident.event_kind == IncidentEventKind::Joined as i32
            })
            .count()
    });
    assert_eq!(joins, 1, "one cluster incident for one connect");
    let metrics = collector.metrics_text()?;
    let label = if through_service {
        "source"
    } else {
        "original"
    };
    assert_eq!(
        sample(
            &metrics,
            &format!("dropscope_collector_joins_total{{match=\"{label}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );

    drop(seen);
    agent_a.stop()?;
    agent_b.stop()?;
    collector.stop(STOP)?;
    Ok(())
}
