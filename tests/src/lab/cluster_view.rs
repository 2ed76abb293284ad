//! Shared by the cluster-view tests (`collector.rs`, `nats.rs`): how
//! agents reach collectors ([`Route`]), node names of a lab, the lab's
//! drops among a collector's events, copies, node states and metrics
//! samples.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use dropscope_proto::v1::{Event, Incident, NodeConnection, NodeState, event::Event as Payload};
use serde_json::Value;

use super::{
    Agent, DropView, Lab,
    client::{self, Drained},
    collector::{self, node_in, tells_gone},
};

/// How long a drop may take to reach the collector (agent, push or
/// stream, merge window), reconnect backoff included.
pub const WAIT: Duration = Duration::from_secs(20);
/// History of agents and collectors that must keep every event of a test
/// (the host's other drops included) until it ends.
pub const HISTORY: &str = "262144";

/// How agents send their events to the collectors.
#[derive(Clone, Debug)]
pub enum Route {
    /// Pushed to the collector at this address (`--collector`).
    Push(String),
    /// Published to this NATS server's JetStream stream (`--nats`).
    Nats {
        /// The server's URL.
        url: String,
        /// The stream, one per test.
        stream: String,
    },
}

impl Route {
    /// A push to `server`.
    pub fn push(server: &str) -> Self {
        Self::Push(server.to_owned())
    }

    /// The agent's arguments for this route.
    pub fn agent_args(&self) -> Vec<String> {
        match self {
            Self::Push(server) => vec!["--collector".to_owned(), server.clone()],
            Self::Nats { .. } => self.nats_args(),
        }
    }

    /// A collector's arguments for this route (none for a push).
    pub fn collector_args(&self) -> Vec<String> {
        match self {
            Self::Push(_) => Vec::new(),
            Self::Nats { .. } => self.nats_args(),
        }
    }

    fn nats_args(&self) -> Vec<String> {
        match self {
            Self::Push(_) => Vec::new(),
            Self::Nats { url, stream } => vec![
                "--nats".to_owned(),
                url.clone(),
                "--nats-stream".to_owned(),
                stream.clone(),
            ],
        }
    }
}

/// True for a drop to or from the lab's addresses.
pub fn ours(lab: &Lab) -> impl Fn(&DropView) -> bool + '_ {
    |drop| lab.owns(drop.src.ip) || lab.owns(drop.dst.ip)
}

/// The lab's /24, as an `--ip` filter value.
pub fn lab_cidr(lab: &Lab) -> String {
    format!("{}/24", lab.gateway_v4())
}

/// Two node names no other test (or test process) uses.
pub fn node_names(lab: &Lab) -> [String; 2] {
    ["a", "b"].map(|node| format!("ds{}-node-{node}", lab.id()))
}

/// An agent named `node` sending to the collectors by `route`, plus
/// `extra` arguments.
pub fn agent_of(node: &str, route: &Route, extra: &[&str]) -> Result<Agent> {
    // Every agent here sees the whole host's drops, the parallel tests'
    // storms included: a history that holds them all keeps this test's
    // events from being pushed out before they reach the collector.
    let mut args: Vec<String> = route.agent_args();
    args.extend(["--node-name", node, "--history", HISTORY].map(String::from));
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(&args).with_context(|| format!("starting the agent of {node}"))
}

/// The drops among `events` that belong to this lab (each names its node).
pub fn lab_drops(lab: &Lab, events: &[Event]) -> Vec<DropView> {
    events
        .iter()
        .filter_map(client::drop_view)
        .filter(ours(lab))
        .collect()
}

/// True when every node in `nodes` has a NEW drop from `source_port` of
/// this lab among `events`.
pub fn new_from_each(lab: &Lab, events: &[Event], nodes: &[String], source_port: u16) -> bool {
    let drops = lab_drops(lab, events);
    nodes.iter().all(|node| {
        drops
            .iter()
            .any(|drop| &drop.node == node && drop.src.port == source_port && drop.kind == "new")
    })
}

/// How many times each (node, flow, kind, cumulative packets) of this lab
/// is among `events`: an event of one agent run, whatever path it took.
pub fn copies(lab: &Lab, events: &[Event]) -> BTreeMap<(String, u64, String, u64), usize> {
    let mut copies = BTreeMap::new();
    for drop in lab_drops(lab, events) {
        *copies
            .entry((drop.node, drop.flow_id, drop.kind, drop.packets))
            .or_insert(0) += 1;
    }
    copies
}

/// Fails naming every event of this lab stored more than once.
pub fn ensure_no_copies(lab: &Lab, events: &[Event]) -> Result<()> {
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
pub fn new_by_node_and_port(lab: &Lab, events: &[Event]) -> Vec<(String, u16)> {
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
pub fn comparable(event: &Value) -> Value {
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
pub fn wait_for_node(
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

/// True when the node is connected.
pub fn is_connected(state: &NodeState) -> bool {
    state.connection == NodeConnection::Connected as i32
}

/// Stops `agents` (SIGTERM), each having had every event acknowledged by
/// the collector, then waits until `seen` (a stream of the collector)
/// tells each node gone: from then on the collector holds all they pushed.
pub fn stop_and_wait_gone(agents: Vec<Agent>, nodes: &[String], seen: &Drained) -> Result<()> {
    for agent in agents {
        let log = agent.stop()?;
        ensure!(
            log.contains("every event acknowledged by"),
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

/// The value of the sample `name` (with its labels) in a metrics text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The incident an event carries.
pub fn incident_of(event: &Event) -> Option<&Incident> {
    match &event.event {
        Some(Payload::Incident(incident)) => Some(incident),
        _ => None,
    }
}
