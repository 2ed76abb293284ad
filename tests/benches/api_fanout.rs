//! What the gRPC API delivers, measured side by side in one run against the
//! real agent over its Unix socket with real tonic clients:
//!
//! - events per second delivered to 1 and to 100 subscribers replaying the
//!   same history (`Observe` with `number`), aggregate and per subscriber,
//!   the 1-subscriber run being the baseline;
//! - drop-to-subscriber latency (kernel drop time to receipt by a follow
//!   stream) of first-sight drops, p50/p99/max, with 1 and with 100
//!   subscribers following;
//! - the agent's resident memory with no subscriber (baseline) and with
//!   100 open follow streams.
//!
//! `cargo xtask bench [--quick]` runs it (as root) and keeps the JSON in
//! `target/bench/api.json`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        client::{self, rss_bytes},
        send_udp,
    },
};
use dropscope_proto::v1;
use tokio_stream::StreamExt as _;

const SUBSCRIBERS: usize = 100;

fn main() -> Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let history_events: u16 = if quick { 2_000 } else { 20_000 };
    let latency_flows: u16 = if quick { 100 } else { 1_000 };
    let runtime = client::runtime()?;

    let mut lab = Lab::new()?;
    let sender = lab.add_pod("sender")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 6400);
    lab.nft()
        .drop_input("bench", target.ip(), target.port(), "udp")?;
    // Room for every flow's first sight: one NEW event per flow.
    let agent = Agent::start(&[
        "--history",
        "65536",
        "--idle-timeout",
        "60s",
        "--flow-slots",
        "65536",
        "--ring-bytes",
        "16777216",
    ])?;
    let server = agent.server();
    let pid = agent.pid();
    let rss_idle = rss_bytes(pid)?;

    // History: one NEW event per flow.
    send_udp(
        &sender.netns,
        (10_000..10_000 + history_events).collect(),
        target,
        1,
    )?;
    let dropped = lab.nft().counter("bench")?;
    ensure!(
        dropped == u64::from(history_events),
        "nft counted {dropped}"
    );
    agent.wait_for(
        Duration::from_secs(60),
        "every flow in the history",
        |agent| {
            (agent
                .drops(|drop| lab.owns(drop.src.ip) && drop.kind == "new")
                .len()
                >= usize::from(history_events))
            .then_some(())
        },
    )?;

    let replay_one = runtime.block_on(replay(&server, 1))?;
    let replay_many = runtime.block_on(replay(&server, SUBSCRIBERS))?;

    let latency_one = runtime.block_on(latency(
        &server,
        &lab,
        &sender.netns,
        target,
        1,
        32_000,
        latency_flows,
    ))?;
    let (latency_many, rss_many) = runtime.block_on(async {
        latency_with_rss(&server, &lab, &sender.netns, target, latency_flows, pid).await
    })?;
    drop(agent);

    let results = serde_json::json!({
        "quick": quick,
        "history_events": history_events,
        "replay": [replay_one.json("1 subscriber (baseline)", &replay_one), replay_many.json("100 subscribers", &replay_one)],
        "latency_ms": [latency_one.json("1 subscriber following"), latency_many.json("100 subscribers following")],
        "rss_bytes": { "no_subscriber": rss_idle, "100_subscribers": rss_many, "ratio": rss_many as f64 / rss_idle as f64 },
    });
    println!(
        "| replay of {history_events} events | events/s (all subscribers) | events/s per subscriber | vs 1 subscriber |"
    );
    println!("|---|---:|---:|---:|");
    for (name, replayed) in [
        ("1 subscriber", &replay_one),
        ("100 subscribers", &replay_many),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} |",
            replayed.aggregate_rate(),
            replayed.per_subscriber_rate(),
            replayed.aggregate_rate() / replay_one.aggregate_rate()
        );
    }
    println!("| first-sight drop → subscriber | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, measured) in [
        ("1 subscriber", &latency_one),
        ("100 subscribers", &latency_many),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            measured.percentile(0.50),
            measured.percentile(0.99),
            measured.percentile(1.0)
        );
    }
    println!(
        "| agent RSS | no subscriber {:.1} MiB | 100 subscribers {:.1} MiB | ratio {:.2} |",
        rss_idle as f64 / 1048576.0,
        rss_many as f64 / 1048576.0,
        rss_many as f64 / rss_idle as f64
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("api.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("written to {}", path.display());
    Ok(())
}

struct Replayed {
    subscribers: usize,
    events: u64,
    seconds: f64,
}

impl Replayed {
    fn aggregate_rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn per_subscriber_rate(&self) -> f64 {
        self.aggregate_rate() / self.subscribers as f64
    }

    fn json(&self, name: &str, baseline: &Replayed) -> serde_json::Value {
        serde_json::json!({
            "scenario": name,
            "subscribers": self.subscribers,
            "events_delivered": self.events,
            "seconds": self.seconds,
            "events_per_second": self.aggregate_rate(),
            "events_per_second_per_subscriber": self.per_subscriber_rate(),
            "ratio_to_baseline": self.aggregate_rate() / baseline.aggregate_rate(),
        })
    }
}

/// `subscribers` clients each replay the whole history at once; the time
/// until the last one has everything.
async fn replay(server: &str, subscribers: usize) -> Result<Replayed> {
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        clients.push(client::connect(server).await?);
    }
    let started = Instant::now();
    let mut readers = Vec::new();
    for mut observer in clients {
        readers.push(tokio::spawn(async move {
            let request = v1::ObserveRequest {
                number: 1_000_000,
                ..Default::default()
            };
            let mut stream = observer.observe(request).await?.into_inner();
            let mut count = 0u64;
            while let Some(event) = stream.next().await {
                event?;
                count += 1;
            }
            anyhow::Ok(count)
        }));
    }
    let mut events = 0;
    for reader in readers {
        events += reader.await.context("reader task")??;
    }
    Ok(Replayed {
        subscribers,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}

struct Latency {
    samples_ms: Vec<f64>,
}

impl Latency {
    fn percentile(&self, fraction: f64) -> f64 {
        if self.samples_ms.is_empty() {
            return f64::NAN;
        }
        let index = ((self.samples_ms.len() - 1) as f64 * fraction).round() as usize;
        self.samples_ms[index]
    }

    fn json(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "scenario": name,
            "samples": self.samples_ms.len(),
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
            "max": self.percentile(1.0),
        })
    }
}

/// `followers` follow streams; `flows` new flows sent one by one, paced;
/// for each NEW event of the lab, receipt time minus the kernel's drop time,
/// measured on the first follower.
async fn latency(
    server: &str,
    lab: &Lab,
    netns: &dropscope_e2e::lab::Netns,
    target: SocketAddr,
    followers: usize,
    first_port: u16,
    flows: u16,
) -> Result<Latency> {
    let mut streams = Vec::new();
    for _ in 0..followers {
        let mut observer = client::connect(server).await?;
        let request = v1::ObserveRequest {
            follow: true,
            ..Default::default()
        };
        streams.push(observer.observe(request).await?.into_inner());
    }
    let mut measured = streams.remove(0);
    // The others are drained, as real subscribers would be.
    let drains: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} })
        })
        .collect();
    let gateway = std::net::IpAddr::V4(lab.gateway_v4());
    let collector = tokio::spawn(async move {
        let mut samples = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while samples.len() < usize::from(flows) {
            let next = tokio::time::timeout_at(deadline, measured.next()).await;
            let Ok(Some(Ok(event))) = next else { break };
            let received = SystemTime::now();
            if let Some(view) = client::drop_view(&event)
                && view.kind == "new"
                && view.dst.port == target.port()
                && view.dst.ip == gateway
                && let Some(first_seen) = event_first_seen(&event)
            {
                let delay = received.duration_since(first_seen).unwrap_or_default();
                samples.push(delay.as_secs_f64() * 1000.0);
            }
        }
        samples
    });
    // Paced: one new flow every 2 ms, as a node under a drop storm of new
    // connections would see, not a burst that measures queueing.
    let netns = netns.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        for port in first_port..first_port + flows {
            send_udp(&netns, vec![port], target, 1)?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
    .await
    .context("sender")??;
    let mut samples = collector.await.context("collector")?;
    for drain in drains {
        drain.abort();
    }
    ensure!(
        samples.len() == usize::from(flows),
        "{} of {flows} first-sight drops reached the subscriber",
        samples.len()
    );
    samples.sort_by(f64::total_cmp);
    Ok(Latency {
        samples_ms: samples,
    })
}

/// The 100-follower latency run, reading the agent's RSS while all 100
/// streams are open.
async fn latency_with_rss(
    server: &str,
    lab: &Lab,
    netns: &dropscope_e2e::lab::Netns,
    target: SocketAddr,
    flows: u16,
    pid: u32,
) -> Result<(Latency, u64)> {
    let measured = latency(server, lab, netns, target, SUBSCRIBERS, 40_000, flows).await?;
    // Open the streams again and hold them to read the memory they cost.
    let mut held = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut observer = client::connect(server).await?;
        let request = v1::ObserveRequest {
            follow: true,
            number: 1_000,
            ..Default::default()
        };
        held.push(observer.observe(request).await?.into_inner());
    }
    for stream in &mut held {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    }
    let rss = rss_bytes(pid)?;
    Ok((measured, rss))
}

fn event_first_seen(event: &v1::Event) -> Option<SystemTime> {
    let Some(v1::event::Event::Drop(drop)) = &event.event else {
        return None;
    };
    let first = drop.first_seen.as_ref()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(
        u64::try_from(first.seconds).ok()?,
        u32::try_from(first.nanos).ok()?,
    ))
}
