//! What the `kfree_skb` hook costs, measured side by side in one run:
//!
//! - the hook's average run time per invocation, from the kernel's own BPF
//!   run-time statistics (`--bpf-stats`), on drops that are reported (the
//!   aggregated path of a repeated drop, and the first-sight path with a
//!   ring-buffer record and conntrack reads) and on frees whose reason is
//!   filtered out;
//! - the drop rate a sender achieves with the agent attached, as a ratio to
//!   the same traffic with no agent (the baseline, measured in the same run).
//!
//! `cargo xtask bench [--quick]` runs it (as root) and keeps the JSON in
//! `target/bench/kfree_skb.json`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{Agent, Lab, lab::send_udp};

struct Scenario {
    name: &'static str,
    /// Scenarios with the same traffic share a baseline.
    traffic: &'static str,
    agent_args: Option<&'static [&'static str]>,
    flows: u16,
    per_flow: usize,
}

struct Measured {
    name: &'static str,
    traffic: &'static str,
    baseline: bool,
    packets: u64,
    seconds: f64,
    hook_runs: Option<u64>,
    hook_avg_ns: Option<u64>,
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let scale = if quick { 1 } else { 10 };
    let repeated = 200 * scale;
    let distinct = 2_000 * scale.min(5) as u16;
    let scenarios = [
        Scenario {
            name: "repeated drops, no agent (baseline)",
            traffic: "repeated",
            agent_args: None,
            flows: 100,
            per_flow: repeated,
        },
        Scenario {
            name: "repeated drops, reported (aggregated path)",
            traffic: "repeated",
            agent_args: Some(&[]),
            flows: 100,
            per_flow: repeated,
        },
        Scenario {
            name: "repeated drops, reason filtered out",
            traffic: "repeated",
            agent_args: Some(&["--drop-reasons", "default,-NETFILTER_DROP"]),
            flows: 100,
            per_flow: repeated,
        },
        Scenario {
            name: "one drop per flow, no agent (baseline)",
            traffic: "distinct",
            agent_args: None,
            flows: distinct,
            per_flow: 1,
        },
        Scenario {
            name: "one drop per flow, reported (first-sight path)",
            traffic: "distinct",
            agent_args: Some(&["--flow-slots", "65536", "--ring-bytes", "4194304"]),
            flows: distinct,
            per_flow: 1,
        },
    ];
    let mut results = Vec::new();
    for scenario in &scenarios {
        results.push(run(scenario)?);
    }
    report(&results, quick)
}

fn run(scenario: &Scenario) -> Result<Measured> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 5000);
    lab.nft()
        .drop_input("bench", target.ip(), target.port(), "udp")?;
    let agent = match scenario.agent_args {
        Some(args) => {
            let mut all = vec!["--bpf-stats"];
            all.extend_from_slice(args);
            Some(Agent::start(&all)?)
        }
        None => None,
    };
    let ports: Vec<u16> = (20_000..20_000 + scenario.flows).collect();
    let started = Instant::now();
    send_udp(&client.netns, ports, target, scenario.per_flow)?;
    let seconds = started.elapsed().as_secs_f64();
    let packets = lab.nft().counter("bench")?;
    ensure!(
        packets == u64::from(scenario.flows) * scenario.per_flow as u64,
        "nft counted {packets} drops"
    );
    let (hook_runs, hook_avg_ns) = match agent {
        Some(agent) => {
            // Let the last sample land, then stop and read the cost line.
            std::thread::sleep(Duration::from_millis(300));
            let log = agent.stop()?;
            let line = log
                .lines()
                .find(|line| line.contains("hook cost"))
                .context("the agent logged no hook cost")?;
            (field(line, "run_count"), field(line, "avg_ns"))
        }
        None => (None, None),
    };
    Ok(Measured {
        name: scenario.name,
        traffic: scenario.traffic,
        baseline: scenario.agent_args.is_none(),
        packets,
        seconds,
        hook_runs,
        hook_avg_ns,
    })
}

fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.parse().ok())
}

fn report(results: &[Measured], quick: bool) -> Result<()> {
    println!("| scenario | drops | drops/s | vs baseline | hook runs | hook ns/run |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for result in results {
        let rate = result.packets as f64 / result.seconds;
        let baseline_rate = results
            .iter()
            .find(|base| base.baseline && base.traffic == result.traffic)
            .map(|base| base.packets as f64 / base.seconds)
            .context("no baseline for this traffic")?;
        let ratio = rate / baseline_rate;
        let show = |value: Option<u64>| value.map_or("-".to_owned(), |value| value.to_string());
        println!(
            "| {} | {} | {:.0} | {:.3} | {} | {} |",
            result.name,
            result.packets,
            rate,
            ratio,
            show(result.hook_runs),
            show(result.hook_avg_ns)
        );
        json.push(serde_json::json!({
            "scenario": result.name,
            "drops": result.packets,
            "drops_per_second": rate,
            "ratio_to_baseline": ratio,
            "hook_runs": result.hook_runs,
            "hook_avg_ns": result.hook_avg_ns,
        }));
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("kfree_skb.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::json!({ "quick": quick, "results": json }))?,
    )?;
    println!("written to {}", path.display());
    Ok(())
}
