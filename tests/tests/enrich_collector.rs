//! End-to-end: enrichment at the collector. The agent runs with
//! `--enrich collector` and no metadata, so its events leave with
//! addresses only; the collector holds the cluster's snapshot and explains
//! them on the way in, pushed over gRPC or read from NATS JetStream. The
//! incident is the seeds' "namespace label that does not exist": `web` in
//! `frontend` connects to the `api` Service, DNATed to the `api` pod,
//! whose ingress policy allows a namespace label `frontend` lacks.

use std::time::Duration;

use anyhow::Result;
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Collector, DropView, SocketPath,
        client::{self, Drained},
        cluster_view::{HISTORY, Route, WAIT, is_connected, node_names, wait_for_node},
        collector,
        json::{hint_codes, policy_names, text},
        nats::NatsServer,
        web_to_api::WebToApi,
    },
};
use serde_json::{Value, json};

/// How long a collector may take to exit after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

#[test]
fn a_collector_with_the_snapshot_explains_what_agents_sent_raw() -> Result<()> {
    explained_at_the_collector(false)
}

#[test]
fn a_replica_on_nats_explains_what_agents_sent_raw() -> Result<()> {
    explained_at_the_collector(true)
}

fn explained_at_the_collector(through_nats: bool) -> Result<()> {
    let mut lab = Lab::new()?;
    let shape = WebToApi::new(&mut lab, 20)?;
    let [node, _] = node_names(&lab);
    let snapshot = shape
        .cluster(&lab, &node)
        .policy(
            "backend",
            "allow-frontend",
            json!({
                "podSelector": { "matchLabels": { "app": "api" } },
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "namespaceSelector": { "matchLabels": { "name": "frontend" } } }],
                    "ports": [{ "port": 8080, "protocol": "TCP" }],
                }],
            }),
        )
        .write(lab.id())?;
    let nats = through_nats.then(NatsServer::start).transpose()?;
    let socket = SocketPath::new("collector-enrich");
    let mut collector_args = vec![
        "--snapshot".to_owned(),
        snapshot.path().to_owned(),
        "--history".to_owned(),
        HISTORY.to_owned(),
    ];
    let nats_route = nats.as_ref().map(|nats| Route::Nats {
        url: nats.url(),
        stream: format!("ds{}", lab.id()),
    });
    if let Some(route) = &nats_route {
        collector_args.extend(route.collector_args());
    }
    let collector_args: Vec<&str> = collector_args.iter().map(String::as_str).collect();
    let collector = Collector::start(&socket.listen(), &collector_args)?;
    let route = nats_route.unwrap_or_else(|| Route::push(&collector.server()));
    let mut agent_args = route.agent_args();
    agent_args.extend(
        [
            "--enrich",
            "collector",
            "--node-name",
            &node,
            "--history",
            HISTORY,
        ]
        .map(String::from),
    );
    let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let agent = Agent::start(&agent_args)?;
    let runtime = client::runtime()?;
    wait_for_node(
        &runtime,
        &collector.server(),
        &node,
        "the node connected",
        is_connected,
    )?;
    let (observer, stream) =
        runtime.block_on(collector::follow_from_oldest(&collector.server()))?;
    let seen = Drained::spawn(&runtime, observer, stream);

    shape.connect(Duration::from_millis(1500))?;
    let ours = |drop: &DropView| {
        drop.node == node
            && (lab.owns(drop.src.ip) || lab.owns(drop.dst.ip))
            && drop.dst.port == 8080
    };
    let explanation: Value =
        seen.wait_for(WAIT, "the drop explained by the collector", |events| {
            events
                .iter()
                .filter_map(client::drop_view)
                .filter(|drop| ours(drop))
                .find_map(|drop| drop.raw.get("explanation").cloned())
        })?;
    assert_eq!(text(&explanation, &["verdict"]), "VERDICT_DENY_INGRESS");
    assert_eq!(
        text(&explanation, &["source", "identity", "pod", "namespace"]),
        "frontend"
    );
    assert_eq!(
        text(&explanation, &["destination", "identity", "pod", "name"]),
        "api"
    );
    assert_eq!(
        policy_names(&explanation["ingress"]),
        ["backend/allow-frontend"]
    );
    assert!(
        hint_codes(&explanation).contains(&"namespace_label_missing".to_owned()),
        "{explanation:#}"
    );
    // The agent itself said nothing about policies: it has no metadata.
    let raw = agent.drops(|drop| ours(drop));
    assert!(!raw.is_empty(), "the agent printed the drop");
    assert!(
        raw.iter().all(|drop| drop.raw.get("explanation").is_none()),
        "the agent's own events are raw: {:#?}",
        raw.iter().map(|drop| &drop.raw).collect::<Vec<_>>()
    );
    drop(seen);
    agent.stop()?;
    collector.stop(STOP)?;
    drop(nats);
    Ok(())
}
