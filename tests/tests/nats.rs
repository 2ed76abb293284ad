//! End-to-end: agents publishing to a real `nats-server` with JetStream
//! (`dropscope agent --nats`), collector replicas reading it
//! (`dropscope collector --nats`), read with a tonic client. Each test has
//! its own NATS server (its own port and store), its own stream, lab and
//! node names.
//!
//! All agents on this machine share one kernel, so two agents with
//! distinct node names both report every drop: a lab drop reaches the
//! stream once per node. Each test looks only at drops with its own lab's
//! addresses.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Lab,
    lab::{
        Collector, LabClient, SocketPath,
        client::{self, Drained},
        cluster_view::{
            HISTORY, Route, WAIT, agent_of, ensure_no_copies, is_connected, lab_drops,
            new_from_each, node_names, ours, wait_for_node,
        },
        collector,
        join_scenario::{Transport, join_across_nodes},
        nats::NatsServer,
        send_udp,
    },
};
use dropscope_proto::v1::{Event, LossSource, ObserveRequest};

/// How long a collector may take to exit after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

/// A `lab-client` process (the tests' traffic in a pod's namespace and
/// cgroup).
fn lab_client() -> LabClient {
    LabClient::new(env!("CARGO_BIN_EXE_lab-client"))
}

/// The stream of this test's lab (one per test on a shared server too).
fn route(lab: &Lab, nats: &NatsServer) -> Route {
    Route::Nats {
        url: nats.url(),
        stream: format!("ds{}", lab.id()),
    }
}

/// A collector replica on `socket`, reading the stream of `route`.
fn replica(socket: &SocketPath, route: &Route) -> Result<Collector> {
    let mut args = route.collector_args();
    args.extend(["--history".to_owned(), HISTORY.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Collector::start(&socket.listen(), &args)
}

/// A reader of `server`'s whole history, then live.
fn follow(runtime: &tokio::runtime::Runtime, server: &str) -> Result<Drained> {
    let (observer, stream) = runtime.block_on(collector::follow_from_oldest(server))?;
    Ok(Drained::spawn(runtime, observer, stream))
}

/// The source ports of this lab's NEW drops of `node` among `events`,
/// sorted, one entry per event.
fn ports_of(lab: &Lab, events: &[Event], node: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = lab_drops(lab, events)
        .into_iter()
        .filter(|drop| drop.node == node && drop.kind == "new")
        .map(|drop| drop.src.port)
        .collect();
    ports.sort_unstable();
    ports
}

/// `observe --since TIME` (no follow) against `server`.
fn since(runtime: &tokio::runtime::Runtime, server: &str, time: SystemTime) -> Result<Vec<Event>> {
    runtime.block_on(async {
        let mut observer = client::connect(server).await?;
        client::history(
            &mut observer,
            ObserveRequest {
                since: Some(client::timestamp(time)),
                ..Default::default()
            },
            Duration::from_secs(10),
        )
        .await
    })
}

#[test]
fn a_join_through_nats_is_made_once_and_every_replica_shows_it() -> Result<()> {
    join_across_nodes(&lab_client(), false, Transport::Nats)
}

#[test]
fn replicas_serve_the_whole_stream_and_a_restarted_one_lost_nothing() -> Result<()> {
    const PORT: u16 = 7301;
    // Seen by both replicas; made while replica 1 was dead; made after it
    // came back.
    const BEFORE: u16 = 43_501;
    const WHILE_DEAD: u16 = 43_502;
    const AFTER: u16 = 43_503;
    let began = SystemTime::now();
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    let target = SocketAddr::new(gateway, PORT);
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let nats = NatsServer::start()?;
    let route = route(&lab, &nats);
    let sockets = [SocketPath::new("replica-1"), SocketPath::new("replica-2")];
    let first = replica(&sockets[0], &route)?;
    let second = replica(&sockets[1], &route)?;
    let nodes = node_names(&lab);
    let agents = nodes
        .iter()
        .map(|node| agent_of(node, &route, &[]))
        .collect::<Result<Vec<_>>>()?;
    let runtime = client::runtime()?;
    for server in [first.server(), second.server()] {
        for node in &nodes {
            wait_for_node(
                &runtime,
                &server,
                node,
                &format!("{node} on {server}"),
                is_connected,
            )?;
        }
    }

    send_udp(&client_pod.netns, vec![BEFORE], target, 1)?;
    for server in [first.server(), second.server()] {
        follow(&runtime, &server)?.wait_for(
            WAIT,
            &format!("the first drop on {server}"),
            |events| new_from_each(&lab, events, &nodes, BEFORE).then_some(()),
        )?;
    }
    first.kill()?;
    send_udp(&client_pod.netns, vec![WHILE_DEAD], target, 1)?;
    let seen_second = follow(&runtime, &second.server())?;
    seen_second.wait_for(WAIT, "the drop made while replica 1 was dead", |events| {
        new_from_each(&lab, events, &nodes, WHILE_DEAD).then_some(())
    })?;
    let restarted = replica(&sockets[0], &route)?;
    let seen_restarted = follow(&runtime, &restarted.server())?;
    send_udp(&client_pod.netns, vec![AFTER], target, 1)?;

    for (seen, name) in [
        (&seen_restarted, "the restarted replica"),
        (&seen_second, "replica 2"),
    ] {
        let events = seen.wait_for(WAIT, &format!("every drop on {name}"), |events| {
            [BEFORE, WHILE_DEAD, AFTER]
                .iter()
                .all(|port| new_from_each(&lab, events, &nodes, *port))
                .then(|| events.to_vec())
        })?;
        // Anything stored twice would be right behind.
        std::thread::sleep(Duration::from_secs(2));
        seen.with(|events| ensure_no_copies(&lab, events))?;
        for node in &nodes {
            assert_eq!(
                ports_of(&lab, &events, node),
                [BEFORE, WHILE_DEAD, AFTER],
                "{name}: each drop of {node} once"
            );
        }
    }
    drop((seen_restarted, seen_second));
    // What a user asks after the restart: everything since the test began.
    for (server, name) in [
        (restarted.server(), "the restarted replica"),
        (second.server(), "replica 2"),
    ] {
        let events = since(&runtime, &server, began)?;
        ensure_no_copies(&lab, &events)?;
        for node in &nodes {
            assert_eq!(
                ports_of(&lab, &events, node),
                [BEFORE, WHILE_DEAD, AFTER],
                "{name}: `observe --since` has each drop of {node} once"
            );
        }
    }
    for agent in agents {
        let log = agent.stop()?;
        ensure!(
            log.contains("every event acknowledged by JetStream"),
            "the agent exits with every event stored in the stream:\n{log}"
        );
    }
    restarted.stop(STOP)?;
    second.stop(STOP)?;
    Ok(())
}

#[test]
fn events_held_while_nats_was_down_arrive_and_the_overflow_is_counted() -> Result<()> {
    const PORT: u16 = 7302;
    /// More flows than the agent's history holds: the oldest are lost.
    const BURST: u16 = 200;
    const FIRST_OF_BURST: u16 = 43_600;
    /// Made last, after the burst: held until NATS is back.
    const LAST: u16 = 43_599;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    let target = SocketAddr::new(gateway, PORT);
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let mut nats = NatsServer::start()?;
    let route = route(&lab, &nats);
    let socket = SocketPath::new("replica");
    let collector = replica(&socket, &route)?;
    let [node, _] = node_names(&lab);
    // A history of 64 events is the agent's whole buffer while NATS is
    // away.
    let agent = {
        let mut args = route.agent_args();
        args.extend(["--node-name", &node, "--history", "64"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dropscope_e2e::Agent::start(&args)?
    };
    let runtime = client::runtime()?;
    wait_for_node(
        &runtime,
        &collector.server(),
        &node,
        "the node connected",
        is_connected,
    )?;

    nats.stop()?;
    let outage = SystemTime::now();
    client::wait_until(WAIT, "the agent noticing NATS gone", || {
        agent.log().contains("cannot publish to NATS").then_some(())
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
    nats.restart()?;

    let seen = follow(&runtime, &collector.server())?;
    let events = seen.wait_for(
        Duration::from_secs(60),
        "the held drop and the loss",
        |events| {
            let last = lab_drops(&lab, events)
                .iter()
                .any(|drop| drop.node == node && drop.src.port == LAST);
            let lost = events.iter().any(|event| {
                event.node == node
                    && client::loss_of(event).is_some_and(|loss| {
                        loss.source == LossSource::Subscriber as i32 && loss.lost_events > 0
                    })
                    && event
                        .time
                        .is_some_and(|time| client::timestamp(outage).seconds <= time.seconds)
            });
            (last && lost).then(|| events.to_vec())
        },
    );
    let events = events.with_context(|| {
        format!(
            "collector log:\n{}\nagent log:\n{}",
            collector.log(),
            agent.log()
        )
    })?;
    ensure_no_copies(&lab, &events)?;
    drop(seen);
    let log = agent.stop()?;
    ensure!(
        log.contains("every event acknowledged by JetStream"),
        "the agent exits with every event stored in the stream:\n{log}"
    );
    collector.stop(STOP)?;
    Ok(())
}

#[test]
fn since_further_back_than_a_replica_holds_is_answered_from_the_stream() -> Result<()> {
    const PORT: u16 = 7303;
    const FIRST: u16 = 43_800;
    /// More flows than the replica's history: most come from the stream.
    const FLOWS: u16 = 40;
    let mut lab = Lab::new()?;
    let client_pod = lab.add_pod("client")?;
    let gateway = IpAddr::V4(lab.gateway_v4());
    lab.nft().drop_input("to_nodes", gateway, PORT, "udp")?;
    let nats = NatsServer::start()?;
    let route = route(&lab, &nats);
    let [node, _] = node_names(&lab);
    let agent = agent_of(&node, &route, &[])?;
    // The agent publishes as soon as it runs: its first event is after
    // this.
    let began = SystemTime::now();
    let ports: Vec<u16> = (FIRST..FIRST + FLOWS).collect();
    send_udp(
        &client_pod.netns,
        ports.clone(),
        SocketAddr::new(gateway, PORT),
        1,
    )?;
    agent.wait_for(WAIT, "the agent printing every drop", |agent| {
        (agent
            .drops(|drop| ours(&lab)(drop) && drop.kind == "new")
            .len()
            >= usize::from(FLOWS))
        .then_some(())
    })?;
    // A replica started now with room for 8 events reads only the
    // stream's tail.
    let socket = SocketPath::new("replica-short");
    let mut args = route.collector_args();
    args.extend(["--history".to_owned(), "8".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = Collector::start(&socket.listen(), &args)?;
    let runtime = client::runtime()?;
    wait_for_node(
        &runtime,
        &replica.server(),
        &node,
        "the node heard of",
        is_connected,
    )?;
    let answered = client::wait_until(WAIT, "every drop since the start, once", || {
        let events = self::since(&runtime, &replica.server(), began).ok()?;
        (ports_of(&lab, &events, &node) == ports).then_some(events)
    });
    let events = answered.with_context(|| format!("the replica's log:\n{}", replica.log()))?;
    ensure_no_copies(&lab, &events)?;
    agent.stop()?;
    replica.stop(STOP)?;
    Ok(())
}
