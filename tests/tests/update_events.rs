//! End-to-end: a flow's explanation leaves the agent on its NEW and END
//! events only; its UPDATE events go without it, on every way out (the
//! agent's JSON lines, its `Observe` stream, the push to a collector and the
//! collector's own stream), while filters on the policy still select them,
//! at the agent and at the collector, which puts the explanation back from
//! the flow's NEW event before filtering and joining.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Collector, DropView, SocketPath, client,
        cluster_view::{WAIT, is_connected, node_names, wait_for_node},
        web_to_api::{WebToApi, deny_all_ingress},
    },
};
use dropscope_proto::v1::{Event, EventFilter, ObserveRequest};

/// How long a collector may take to exit after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

/// This lab's events of the flow to the api pod, kind by kind.
fn kinds(lab: &Lab, node: &str, events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(client::drop_view)
        .filter(|drop| drop.node == node && lab.owns(drop.dst.ip) && drop.dst.port == 8080)
        .map(|drop| (drop.kind.clone(), drop.raw.get("explanation").is_some()))
        .collect()
}

/// Every event selected by the policy `backend/deny-all`, history only.
fn by_policy(runtime: &tokio::runtime::Runtime, server: &str) -> Result<Vec<Event>> {
    runtime.block_on(async {
        let mut observer = client::connect(server).await?;
        client::history(
            &mut observer,
            ObserveRequest {
                number: 100_000,
                allow: vec![EventFilter {
                    policy: vec!["backend/deny-all".to_owned()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            Duration::from_secs(10),
        )
        .await
    })
}

/// NEW and END explained, at least one UPDATE, none explained.
fn ensure_light_updates(seen: &[(String, bool)], where_: &str) -> Result<()> {
    let kinds: BTreeSet<&str> = seen.iter().map(|(kind, _)| kind.as_str()).collect();
    ensure!(
        kinds == BTreeSet::from(["new", "update", "end"]),
        "{where_}: the flow's NEW, UPDATE and END events: {seen:?}"
    );
    for (kind, explained) in seen {
        ensure!(
            *explained == (kind != "update"),
            "{where_}: explanation on NEW and END only: {seen:?}"
        );
    }
    Ok(())
}

#[test]
fn a_flows_explanation_leaves_on_its_first_and_last_event_only() -> Result<()> {
    let mut lab = Lab::new()?;
    let shape = WebToApi::new(&mut lab, 30)?;
    let [node, _] = node_names(&lab);
    let snapshot = shape
        .cluster(&lab, &node)
        .policy("backend", "deny-all", deny_all_ingress())
        .write(lab.id())?;
    let socket = SocketPath::new("collector-updates");
    let collector = Collector::start(&socket.listen(), &["--history", "262144"])?;
    let agent = Agent::start(&[
        "--snapshot",
        snapshot.path(),
        "--node-name",
        &node,
        "--collector",
        &collector.server(),
        "--history",
        "262144",
        "--sample-interval",
        "200ms",
        "--idle-timeout",
        "1s",
    ])?;
    let runtime = client::runtime()?;
    wait_for_node(
        &runtime,
        &collector.server(),
        &node,
        "the node",
        is_connected,
    )?;
    // The SYN and its retransmits (1 s, 3 s later): NEW, then UPDATEs.
    shape.connect(Duration::from_millis(3500))?;
    let ended = |drops: &[DropView]| drops.iter().any(|drop| drop.kind == "end");
    agent.wait_for(WAIT, "the flow's END", |agent| {
        ended(&agent.drops(|drop| drop.node == node && drop.dst.port == 8080)).then_some(())
    })?;

    let printed: Vec<(String, bool)> = agent
        .drops(|drop| lab.owns(drop.dst.ip) && drop.dst.port == 8080)
        .into_iter()
        .map(|drop| (drop.kind.clone(), drop.raw.get("explanation").is_some()))
        .collect();
    ensure_light_updates(&printed, "the agent's JSON lines")?;
    let from_agent = by_policy(&runtime, &agent.server())?;
    ensure_light_updates(
        &kinds(&lab, &node, &from_agent),
        "the agent's stream, selected by policy",
    )?;
    let from_collector = client::wait_until(WAIT, "the END at the collector", || {
        let events = by_policy(&runtime, &collector.server()).ok()?;
        kinds(&lab, &node, &events)
            .iter()
            .any(|(kind, _)| kind == "end")
            .then_some(events)
    })
    .context("the collector selects the flow's events by policy")?;
    ensure_light_updates(
        &kinds(&lab, &node, &from_collector),
        "the collector's stream, selected by policy",
    )?;
    agent.stop()?;
    collector.stop(STOP)?;
    Ok(())
}
