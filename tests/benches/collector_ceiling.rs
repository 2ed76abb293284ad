//! What one `dropscope collector` sustains, measured side by side in one
//! run against the real collector binary over a Unix socket:
//!
//! - events per second it stores and delivers to a follow stream when 1
//!   (the baseline) and 4 simulated agents push as fast as it acknowledges
//!   (`Collector.Push`, batches of 256 explained drop events, as many in
//!   flight as HTTP/2 flow control allows), with its CPU (percent of one
//!   core) and resident memory at that rate;
//! - the latency from an event's time (set as the simulated agent sends
//!   it) to its arrival on an `observe --follow` stream through the
//!   collector, p50/p99/max, at a paced 2,000 events/s from 4 agents, with
//!   the default 1 s merge window and with a 100 ms one;
//! - the same rate and latency through NATS JetStream (`--nats`): the
//!   simulated agents publish to a real `nats-server -js` as agents do
//!   (one subject per node, each publish acknowledged, at most
//!   [`NATS_WINDOW`] unacknowledged), and the collector reads the stream
//!   as a replica.
//!
//! Simulated agents make the load; the real agents' correctness against a
//! collector is `tests/tests/collector.rs`'s. `cargo xtask bench [--quick]`
//! runs it and keeps the JSON in `target/bench/collector.json`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use dropscope_e2e::lab::{
    Collector, SocketPath,
    client::{self, rss_bytes, timestamp},
    cpu_clock::CpuClock,
    nats::NatsServer,
};
use dropscope_proto::v1::{
    self, EventBatch, Hello, ObserveRequest, PushRequest, collector_client::CollectorClient,
    event::Event as Payload, observer_client::ObserverClient, push_request::Message,
};
use tokio_stream::StreamExt as _;

/// Events per pushed batch.
const BATCH: usize = 256;
/// Publishes a simulated agent has not had acknowledged by JetStream, at
/// most (the agent's own window is larger; this keeps the bench's memory
/// small and is enough to keep the server busy).
const NATS_WINDOW: usize = 1024;

/// How the simulated agents reach the collector.
#[derive(Clone, Debug)]
enum Route {
    /// `Collector.Push` to the collector's Unix socket.
    Push,
    /// Published to the JetStream server at this URL (process id), in a
    /// stream of the run's own, which the collector reads as a replica.
    Nats(String, u32),
}

impl Route {
    /// The collector's arguments for this route and merge window; a NATS
    /// run gets a new stream, so the replica reads no earlier run back.
    fn collector_args(&self, merge_window: &str) -> (Vec<String>, Option<String>) {
        let mut args = vec!["--merge-window".to_owned(), merge_window.to_owned()];
        match self {
            Self::Push => (args, None),
            Self::Nats(url, _) => {
                static RUNS: AtomicU64 = AtomicU64::new(0);
                let stream = format!(
                    "bench{}x{}",
                    std::process::id(),
                    RUNS.fetch_add(1, Ordering::Relaxed)
                );
                args.extend(["--nats".to_owned(), url.clone()]);
                args.extend(["--nats-stream".to_owned(), stream.clone()]);
                (args, Some(stream))
            }
        }
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let seconds = if quick { 3 } else { 15 };
    let runtime = client::runtime()?;

    let nats_server = NatsServer::start()?;
    let nats = Route::Nats(
        nats_server.url(),
        nats_server.pid().context("nats-server runs")?,
    );

    let one = runtime.block_on(ceiling(&Route::Push, 1, seconds, "100ms"))?;
    let four = runtime.block_on(ceiling(&Route::Push, 4, seconds, "100ms"))?;
    let four_nats = runtime.block_on(ceiling(&nats, 4, seconds, "100ms"))?;
    let latency_1s = runtime.block_on(latency(&Route::Push, 4, 2_000, seconds, "1s"))?;
    let latency_100ms = runtime.block_on(latency(&Route::Push, 4, 2_000, seconds, "100ms"))?;
    let latency_nats = runtime.block_on(latency(&nats, 4, 2_000, seconds, "100ms"))?;

    println!(
        "| agents sending at full speed | events/s delivered | vs 1 agent | collector CPU % of a core | collector RSS MiB | nats-server CPU % of a core |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, run) in [
        ("1 agent (baseline)", &one),
        ("4 agents", &four),
        ("4 agents through NATS JetStream", &four_nats),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} | {:.0} | {} |",
            run.rate,
            run.rate / one.rate,
            run.cpu_percent,
            run.rss_bytes as f64 / 1048576.0,
            run.broker_cpu_percent
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.0}"))
        );
    }
    println!("| event time → observe, 4 agents, 2,000 events/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, measured) in [
        ("merge window 1 s", &latency_1s),
        ("merge window 100 ms", &latency_100ms),
        ("through NATS JetStream, merge window 100 ms", &latency_nats),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            percentile(measured, 0.50),
            percentile(measured, 0.99),
            percentile(measured, 1.0)
        );
    }
    let results = serde_json::json!({
        "quick": quick,
        "seconds": seconds,
        "batch": BATCH,
        "ceiling": [
            one.json("1 agent (baseline)", &one),
            four.json("4 agents", &one),
            four_nats.json("4 agents through NATS JetStream", &one),
        ],
        "latency_ms": [
            latency_json("4 agents, 2000 events/s, merge window 1s", &latency_1s),
            latency_json("4 agents, 2000 events/s, merge window 100ms", &latency_100ms),
            latency_json(
                "4 agents through NATS JetStream, 2000 events/s, merge window 100ms",
                &latency_nats,
            ),
        ],
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("collector.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("written to {}", path.display());
    Ok(())
}

/// One full-speed run.
struct Ceiling {
    agents: usize,
    /// Events delivered to the follow stream per second.
    rate: f64,
    cpu_percent: f64,
    rss_bytes: u64,
    /// nats-server's CPU over the same time, through NATS.
    broker_cpu_percent: Option<f64>,
}

impl Ceiling {
    fn json(&self, name: &str, baseline: &Self) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "agents": self.agents,
            "events_per_second": self.rate,
            "ratio": self.rate / baseline.rate,
            "cpu_percent": self.cpu_percent,
            "rss_bytes": self.rss_bytes,
            "nats_server_cpu_percent": self.broker_cpu_percent,
        })
    }
}

/// `agents` simulated agents send by `route` as fast as a fresh collector
/// takes it for `seconds`; a follow stream counts what it delivers.
async fn ceiling(
    route: &Route,
    agents: usize,
    seconds: u64,
    merge_window: &str,
) -> Result<Ceiling> {
    let socket = SocketPath::new("bench-collector");
    let (args, stream) = route.collector_args(merge_window);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collector = Collector::start(&socket.listen(), &args)?;
    let server = collector.server();
    let delivered = Arc::new(AtomicU64::new(0));
    let observer = follow(&server, Arc::clone(&delivered), None).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let pushers = send_from(route, stream, &server, agents, None, &stop);
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = CpuClock::start(collector.pid())?;
    let broker_cpu = match route {
        Route::Nats(_, pid) => Some(CpuClock::start(*pid)?),
        Route::Push => None,
    };
    let before = delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let events = delivered.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_percent = cpu.percent()?;
    let broker_cpu_percent = broker_cpu.map(|cpu| cpu.percent()).transpose()?;
    let rss = rss_bytes(collector.pid())?;
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.context("a simulated agent panicked")??;
    }
    observer.abort();
    if events == 0 {
        bail!(
            "the collector delivered nothing in {seconds} s:\n{}",
            collector.log()
        );
    }
    Ok(Ceiling {
        agents,
        rate: events as f64 / elapsed,
        cpu_percent,
        rss_bytes: rss,
        broker_cpu_percent,
    })
}

/// Milliseconds from each event's time to its arrival at a follow stream,
/// `agents` simulated agents sending `rate` events/s in all by `route`.
async fn latency(
    route: &Route,
    agents: usize,
    rate: u64,
    seconds: u64,
    merge_window: &str,
) -> Result<Vec<f64>> {
    let socket = SocketPath::new("bench-collector");
    let (args, stream) = route.collector_args(merge_window);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collector = Collector::start(&socket.listen(), &args)?;
    let server = collector.server();
    let delivered = Arc::new(AtomicU64::new(0));
    let (sink, mut delays) = tokio::sync::mpsc::unbounded_channel();
    let observer = follow(&server, Arc::clone(&delivered), Some(sink)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let per_agent = rate / agents as u64;
    let pushers = send_from(route, stream, &server, agents, Some(per_agent), &stop);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.context("a simulated agent panicked")??;
    }
    // What is still inside the merge window arrives within it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    observer.abort();
    let mut measured = Vec::new();
    while let Ok(delay) = delays.try_recv() {
        measured.push(delay);
    }
    if measured.is_empty() {
        bail!(
            "no event arrived through the collector:\n{}",
            collector.log()
        );
    }
    measured.sort_by(f64::total_cmp);
    Ok(measured)
}

/// Opens `Observe` with `follow` and counts the drop events it delivers;
/// with `delays`, sends each one's delay from its time in milliseconds.
async fn follow(
    server: &str,
    delivered: Arc<AtomicU64>,
    delays: Option<tokio::sync::mpsc::UnboundedSender<f64>>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut observer: ObserverClient<_> = client::connect(server).await?;
    let mut stream = observer
        .observe(ObserveRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .context("Observe on the collector")?
        .into_inner();
    Ok(tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            if !matches!(event.event, Some(Payload::Drop(_))) {
                continue;
            }
            delivered.fetch_add(1, Ordering::Relaxed);
            if let (Some(delays), Some(time)) = (&delays, event.time) {
                let sent = SystemTime::UNIX_EPOCH
                    + Duration::new(
                        u64::try_from(time.seconds).unwrap_or(0),
                        u32::try_from(time.nanos).unwrap_or(0),
                    );
                if let Ok(delay) = SystemTime::now().duration_since(sent) {
                    let _ = delays.send(delay.as_secs_f64() * 1000.0);
                }
            }
        }
    }))
}

/// `agents` simulated agents sending by `route` (to the collector at
/// `server`, or to the NATS `stream`) until `stop`.
fn send_from(
    route: &Route,
    stream: Option<String>,
    server: &str,
    agents: usize,
    rate: Option<u64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..agents)
        .map(|agent| match (route, &stream) {
            (Route::Nats(url, _), Some(stream)) => tokio::spawn(publish(
                url.clone(),
                stream.clone(),
                agent,
                rate,
                Arc::clone(stop),
            )),
            _ => tokio::spawn(push(server.to_owned(), agent, rate, Arc::clone(stop))),
        })
        .collect()
}

/// One simulated agent `bench-node-<agent>` publishing to JetStream as an
/// agent does: each event on its node's subject of `stream`, with a
/// message id, acknowledgements awaited oldest first with at most
/// [`NATS_WINDOW`] outstanding; at `rate` events/s when given. Waits (at
/// most 30 s) for the collector to have made the stream.
async fn publish(
    url: String,
    stream: String,
    agent: usize,
    rate: Option<u64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let jetstream = async_nats::jetstream::new(client);
    let made = Instant::now();
    while jetstream.get_stream(&stream).await.is_err() {
        if made.elapsed() > Duration::from_secs(30) {
            bail!("the collector made no stream {stream} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let node = format!("bench-node-{agent}");
    let subject = format!("{stream}.v1.events.{node}");
    let mut pending = std::collections::VecDeque::new();
    let started = Instant::now();
    let mut sequence = 1u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(sequence as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let payload = prost::Message::encode_to_vec(&drop_event(&node, sequence));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{node}-{sequence}").as_str());
        let ack = jetstream
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .with_context(|| format!("publishing to {subject}"))?;
        pending.push_back(ack);
        if pending.len() >= NATS_WINDOW
            && let Some(oldest) = pending.pop_front()
        {
            oldest.await.context("a publish was not acknowledged")?;
        }
        sequence += 1;
    }
    for ack in pending {
        ack.await.context("a publish was not acknowledged")?;
    }
    Ok(())
}

/// One simulated agent `bench-node-<agent>`: Hello, then batches of
/// [`BATCH`] events until `stop`, at `rate` events/s when given (else as
/// fast as the collector takes them); acknowledgements are read as they
/// come.
async fn push(
    server: String,
    agent: usize,
    rate: Option<u64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let channel = client::channel(&server, client::endpoint()).await?;
    let mut collector = CollectorClient::new(channel);
    let node = format!("bench-node-{agent}");
    let (requests, receiver) = tokio::sync::mpsc::channel::<PushRequest>(4);
    requests
        .send(PushRequest {
            message: Some(Message::Hello(Hello {
                node: node.clone(),
                version: "bench".into(),
                started: Some(timestamp(SystemTime::now())),
            })),
        })
        .await
        .context("sending Hello")?;
    let mut acks = collector
        .push(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .context("opening Push")?
        .into_inner();
    let acked = tokio::spawn(async move {
        let mut highest = 0;
        while let Some(Ok(ack)) = acks.next().await {
            highest = ack.sequence;
        }
        highest
    });
    let started = Instant::now();
    let mut sequence = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let batch = match rate {
            // Paced: small batches, each sent when due.
            Some(rate) => {
                let due = started + Duration::from_secs_f64(sequence as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                1
            }
            None => BATCH,
        };
        let events = (0..batch)
            .map(|index| drop_event(&node, sequence + index as u64))
            .collect();
        let request = PushRequest {
            message: Some(Message::Batch(EventBatch {
                first_sequence: sequence,
                events,
            })),
        };
        if requests.send(request).await.is_err() {
            bail!("the collector closed {node}'s push stream");
        }
        sequence += batch as u64;
    }
    drop(requests);
    acked.abort();
    Ok(())
}

/// An explained drop of flow `flow_id` seen by `node`, dated now: the size
/// and shape of what agents with cluster metadata push.
fn drop_event(node: &str, flow_id: u64) -> v1::Event {
    let now = timestamp(SystemTime::now());
    let endpoint = |ip: &str, port: u32| v1::Endpoint {
        ip: ip.into(),
        port,
    };
    let tuple = v1::Tuple {
        source: Some(endpoint("10.244.1.10", 40_000 + (flow_id % 20_000) as u32)),
        destination: Some(endpoint("10.244.2.20", 8080)),
        protocol: v1::Protocol::Tcp as i32,
        protocol_number: 6,
    };
    let pod = |namespace: &str, name: &str, app: &str| v1::FlowEnd {
        ip: String::new(),
        identity: Some(v1::Identity {
            identity: Some(v1::identity::Identity::Pod(v1::PodIdentity {
                namespace: namespace.into(),
                name: name.into(),
                uid: format!("{namespace}-{name}-uid"),
                labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
                ..Default::default()
            })),
        }),
    };
    v1::Event {
        kind: v1::EventKind::Drop as i32,
        time: Some(now),
        node: node.into(),
        event: Some(Payload::Drop(v1::DropEvent {
            flow_id,
            kind: v1::DropEventKind::New as i32,
            reason: Some(v1::DropReason {
                code: 12,
                name: "NETFILTER_DROP".into(),
            }),
            location: Some(v1::KernelLocation {
                address: 0xffff_ffff_8100_0000,
                symbol: "nft_do_chain+0x46f".into(),
            }),
            packet: Some(tuple),
            tcp_flags: vec!["SYN".into()],
            tcp_flags_seen: vec!["SYN".into()],
            packets: 1,
            bytes: 60,
            new_packets: 1,
            first_seen: Some(now),
            last_seen: Some(now),
            explanation: Some(v1::Explanation {
                verdict: v1::Verdict::DenyIngress as i32,
                source: Some(pod("frontend", "web-7d9c8b7f5-2xkqp", "web")),
                destination: Some(pod("backend", "api-5f6d7c8b9-x2v9k", "api")),
                port: 8080,
                protocol: v1::Protocol::Tcp as i32,
                ingress: Some(v1::DirectionReport {
                    pod: "backend/api-5f6d7c8b9-x2v9k".into(),
                    isolated: true,
                    policies: vec![v1::PolicyRef {
                        namespace: "backend".into(),
                        name: "allow-frontend".into(),
                    }],
                    ..Default::default()
                }),
                hints: vec![v1::Hint {
                    code: "namespace_label_missing".into(),
                    message: "backend/allow-frontend ingress[0] selects namespaces labelled name=frontend, and no namespace carries the label name".into(),
                }],
                complete: true,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

fn latency_json(name: &str, sorted: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "events": sorted.len(),
        "p50": percentile(sorted, 0.50),
        "p99": percentile(sorted, 0.99),
        "max": percentile(sorted, 1.0),
    })
}
