//! The cross-node join, end to end, whichever way agents reach the
//! collectors: two agents on two "nodes" of one lab (the client's, where
//! the connect times out after its SYNs left by the uplink, and a remote
//! node's, whose nftables policy drops them) and one collector they push
//! to, or two collector replicas sharing a NATS JetStream stream. Every
//! collector must show the cluster incident exactly once, and exactly one
//! join must have been made.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, ensure};
use dropscope_proto::v1::{
    CollectorSource, FailurePlace, Incident, IncidentEventKind, TupleMatch, Verdict,
};
use serde_json::json;

use super::{
    Agent, Cluster, Collector, Lab, LabClient, SocketPath,
    client::{self, Drained},
    cluster_view::{
        HISTORY, Route, WAIT, agent_of, incident_of, is_connected, node_names, sample,
        wait_for_node,
    },
    collector,
    nats::{NatsServer, PortInNetns},
};

/// How long a collector may take to exit after SIGTERM.
const STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// How the agents reach the collectors.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// Both push to one collector.
    Push,
    /// Both publish to a NATS JetStream stream two collector replicas read.
    Nats,
}

/// The collectors of one test, and how agents reach them.
struct Collectors {
    collectors: Vec<Collector>,
    route: Route,
    /// The route from the lab's node namespace (node a's agent runs there).
    node_route: Route,
    _sockets: Vec<SocketPath>,
    _nats: Option<(NatsServer, PortInNetns)>,
}

impl Collectors {
    fn start(lab: &Lab, transport: Transport) -> Result<Self> {
        let stream = format!("ds{}", lab.id());
        let (nats, route, replicas) = match transport {
            Transport::Push => (None, None, 1),
            Transport::Nats => {
                let nats = NatsServer::start()?;
                let route = Route::Nats {
                    url: nats.url(),
                    stream: stream.clone(),
                };
                let port = PortInNetns::new(&nats, &lab.node)?;
                (Some((nats, port)), Some(route), 2)
            }
        };
        let mut sockets = Vec::new();
        let mut collectors = Vec::new();
        for replica in 0..replicas {
            let socket = SocketPath::new(&format!("collector-join-{replica}"));
            let mut args = vec![
                "--metrics-listen".to_owned(),
                "127.0.0.1:0".to_owned(),
                "--history".to_owned(),
                HISTORY.to_owned(),
            ];
            if let Some(route) = &route {
                args.extend(route.collector_args());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            collectors.push(Collector::start(&socket.listen(), &args)?);
            sockets.push(socket);
        }
        let route = match route {
            Some(route) => route,
            None => Route::push(&collectors[0].server()),
        };
        let node_route = match &nats {
            Some((_, port)) => Route::Nats {
                url: port.url(),
                stream,
            },
            None => route.clone(),
        };
        Ok(Self {
            collectors,
            route,
            node_route,
            _sockets: sockets,
            _nats: nats,
        })
    }

    fn servers(&self) -> Vec<String> {
        self.collectors.iter().map(Collector::server).collect()
    }

    fn stop(self) -> Result<()> {
        for collector in self.collectors {
            collector.stop(STOP)?;
        }
        Ok(())
    }
}

/// The client pod on node a connects to a pod on node b, whose policy
/// drops the SYNs silently; with `through_service`, to a Service VIP that
/// node a DNATs to that pod (kube-proxy-like), so node b never sees the
/// VIP. The collector joins node a's timeout with node b's drop: by the
/// original tuple when direct, by the client's socket through the Service.
pub fn join_across_nodes(
    lab_client: &LabClient,
    through_service: bool,
    transport: Transport,
) -> Result<()> {
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
    let collectors = Collectors::start(&lab, transport)?;
    let runtime = client::runtime()?;
    let seens = collectors
        .servers()
        .iter()
        .map(|server| {
            let (observer, stream) = runtime.block_on(collector::follow_from_oldest(server))?;
            Ok(Drained::spawn(&runtime, observer, stream))
        })
        .collect::<Result<Vec<_>>>()?;
    // Node a, the client's node: its tc programs watch the uplink the SYNs
    // leave by. The remote node is a namespace on this very kernel, so
    // node a's agent would see its drop too, which an agent on another
    // machine never would: NETFILTER_DROP is left out of node a's reasons.
    let mut args = collectors.node_route.agent_args();
    args.extend(
        [
            "--drop-reasons",
            "default,-NETFILTER_DROP",
            "--node-name",
            node_a,
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent_a = Agent::start_in(&lab.node, &args)?;
    // Node b, where the policy drops: its agent sees the kernel drop and
    // explains it.
    let agent_b = agent_of(node_b, &collectors.route, &["--snapshot", snapshot.path()])?;
    for server in collectors.servers() {
        for node in &nodes {
            wait_for_node(
                &runtime,
                &server,
                node,
                &format!("{node} connected to {server}"),
                is_connected,
            )?;
        }
    }

    let to = if through_service {
        SocketAddr::new(vip, 80)
    } else {
        SocketAddr::new(far.pod_ip().into(), PORT)
    };
    let mut connect = lab_client.spawn_in(
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
    for seen in &seens {
        every_replica_has_one_cluster_incident(
            seen,
            &of_this_flow,
            &Expected {
                node_a,
                node_b,
                local,
                backend: SocketAddr::new(far.pod_ip().into(), PORT),
                through_service,
            },
        )?;
    }
    let mut joins_by_match = 0.0;
    let label = if through_service {
        "source"
    } else {
        "original"
    };
    for collector in &collectors.collectors {
        let metrics = collector.metrics_text()?;
        joins_by_match += sample(
            &metrics,
            &format!("dropscope_collector_joins_total{{match=\"{label}\"}}"),
        )
        .unwrap_or_default();
    }
    assert_eq!(joins_by_match, 1.0, "one join, made by one collector");
    // Agents see every connect on this kernel, a parallel test's too: count
    // this test's kind of match only, as the metrics above.
    let expected = if through_service {
        TupleMatch::Source
    } else {
        TupleMatch::Original
    };
    let mut joins_in_status = 0;
    for server in collectors.servers() {
        let status = runtime.block_on(collector::status(&server))?;
        let counters = status.collector.context("the collector's counters")?;
        let source = match transport {
            Transport::Push => CollectorSource::Push,
            Transport::Nats => CollectorSource::Nats,
        };
        assert_eq!(counters.source, source as i32, "{counters:#?}");
        joins_in_status += counters
            .joins
            .iter()
            .filter(|join| join.r#match == expected as i32)
            .map(|join| join.count)
            .sum::<u64>();
    }
    assert_eq!(joins_in_status, 1, "GetStatus tells the one join");

    drop(seens);
    agent_a.stop()?;
    agent_b.stop()?;
    collectors.stop()
}

/// What the cluster incident must say.
struct Expected<'a> {
    node_a: &'a str,
    node_b: &'a str,
    local: SocketAddr,
    backend: SocketAddr,
    through_service: bool,
}

/// Waits for the cluster incident in one collector's stream and checks it
/// is there once, saying what `expected` says.
fn every_replica_has_one_cluster_incident(
    seen: &Drained,
    of_this_flow: &impl Fn(&Incident) -> bool,
    expected: &Expected<'_>,
) -> Result<()> {
    let Expected {
        node_a,
        node_b,
        local,
        backend,
        through_service,
    } = *expected;
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
        joined.node, node_a,
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
    assert_eq!(remote.node, node_b, "{incident:#?}");
    let expected = if through_service {
        TupleMatch::Source
    } else {
        TupleMatch::Original
    };
    assert_eq!(remote.r#match, expected as i32, "{incident:#?}");
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
    Ok(())
}
