//! What a drop costs the node, side by side in one run and interleaved:
//! no tracer (the baseline of the drop rate), a minimal attached program
//! that only filters (`dropscope agent --hook floor`: the floor of being
//! attached), bpftrace doing the equivalent per-flow work (Debian's
//! bpftrace: the tuple read from the headers, counted per flow), and
//! dropscope. For each path (a repeated drop of a known flow, repeated
//! drops of 100 flows taking turns, a free whose reason is filtered out,
//! the first sight of a flow, a flow beyond the flow table) it reports the BPF run time per call from the kernel's own
//! statistics and the drop rate a sender achieves, as a ratio to the same
//! round's no-tracer rate: median and spread over the rounds. Then the
//! agent's CPU (% of one core) and RSS at idle, at 1,000 drops/s and during
//! a storm.
//!
//! `cargo xtask bench [--quick]` runs it (as root) and keeps the JSON in
//! `target/bench/kfree_skb.json`.

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        Netns,
        client::rss_bytes,
        cpu_clock::{CpuClock, median_and_spread},
        send_udp, send_udp_interleaved,
    },
};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tracer {
    None,
    Floor,
    Bpftrace,
    Dropscope,
}

impl Tracer {
    const ALL: [Tracer; 4] = [Self::None, Self::Floor, Self::Bpftrace, Self::Dropscope];

    fn name(self) -> &'static str {
        match self {
            Self::None => "no tracer",
            Self::Floor => "floor (filter only)",
            Self::Bpftrace => "bpftrace, per-flow count",
            Self::Dropscope => "dropscope",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Repeated,
    Interleaved,
    Filtered,
    FirstSight,
    Overflow,
}

impl Path {
    const ALL: [Path; 5] = [
        Self::Repeated,
        Self::Interleaved,
        Self::Filtered,
        Self::FirstSight,
        Self::Overflow,
    ];

    /// Its name on the command line (`--paths repeated,first-sight`).
    fn flag(self) -> &'static str {
        match self {
            Self::Repeated => "repeated",
            Self::Interleaved => "interleaved",
            Self::Filtered => "filtered",
            Self::FirstSight => "first-sight",
            Self::Overflow => "overflow",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Repeated => "repeated drop of a known flow",
            Self::Interleaved => "repeated drops, 100 flows taking turns",
            Self::Filtered => "reason filtered out",
            Self::FirstSight => "first sight of a flow",
            Self::Overflow => "beyond the flow table",
        }
    }

    /// Flows and drops per flow.
    fn traffic(self, quick: bool) -> (u16, usize) {
        let scale = if quick { 1 } else { 5 };
        match self {
            Self::Repeated | Self::Interleaved | Self::Filtered => (100, 200 * scale),
            Self::FirstSight | Self::Overflow => (2_000 * scale as u16, 1),
        }
    }

    /// Whether the traffic's reason is one the tracer selects.
    fn selected(self) -> bool {
        self != Self::Filtered
    }
}

/// One measurement.
struct Sample {
    drops: u64,
    seconds: f64,
    ns_per_call: Option<f64>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let rounds = if quick { 1 } else { 5 };
    // `--paths a,b`: only those paths (while working on one), no footprint.
    let only: Option<Vec<Path>> = args
        .iter()
        .position(|arg| arg == "--paths")
        .map(|at| {
            let list = args.get(at + 1).context("--paths needs a list")?;
            list.split(',')
                .map(|flag| {
                    Path::ALL
                        .into_iter()
                        .find(|path| path.flag() == flag)
                        .with_context(|| format!("unknown path {flag:?}"))
                })
                .collect()
        })
        .transpose()?;
    let paths: Vec<Path> = only.clone().unwrap_or(Path::ALL.to_vec());
    let bpftrace = which("bpftrace")?;
    let netfilter_drop = reason_number("NETFILTER_DROP")?;
    // One lab for the whole run (a process may make only a few): each
    // measurement counts the nft counter's increase.
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 5000);
    lab.nft()
        .drop_input("bench", target.ip(), target.port(), "udp")?;
    let bench = Bench {
        lab: &lab,
        netns: &client.netns,
        target,
        quick,
        bpftrace: &bpftrace,
        netfilter_drop,
    };
    let mut samples: Vec<(Path, Tracer, usize, Sample)> = Vec::new();
    for round in 0..rounds {
        for &path in &paths {
            for tracer in Tracer::ALL {
                let sample = bench
                    .measure(path, tracer)
                    .with_context(|| format!("{} with {}", path.name(), tracer.name()))?;
                samples.push((path, tracer, round, sample));
            }
        }
    }
    if only.is_some() {
        return report(&samples, &paths, rounds, None, quick);
    }
    let footprint = footprint(&bench)?;
    report(&samples, &paths, rounds, Some(&footprint), quick)
}

/// The running kernel's number of a drop reason, from the tracepoint's
/// format (its `__print_symbolic` table).
fn reason_number(name: &str) -> Result<u32> {
    let format = std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format")
        .context("reading the kfree_skb tracepoint format (is tracefs mounted?)")?;
    let needle = format!("\"{name}\" }}");
    let at = format
        .find(&needle)
        .with_context(|| format!("{name} is not in the kfree_skb format"))?;
    let before = &format[..at];
    let open = before.rfind('{').context("malformed symbol table")?;
    before[open + 1..]
        .trim()
        .trim_end_matches(',')
        .trim()
        .parse()
        .with_context(|| format!("the number of {name}"))
}

fn which(tool: &str) -> Result<String> {
    let found = Command::new("which").arg(tool).output()?;
    ensure!(
        found.status.success(),
        "{tool} is not installed: run `cargo xtask bootstrap`"
    );
    Ok(String::from_utf8_lossy(&found.stdout).trim().to_owned())
}

/// The lab and tools every measurement shares.
struct Bench<'a> {
    lab: &'a Lab,
    netns: &'a Netns,
    target: SocketAddr,
    quick: bool,
    bpftrace: &'a str,
    netfilter_drop: u32,
}

impl Bench<'_> {
    fn measure(&self, path: Path, tracer: Tracer) -> Result<Sample> {
        let (quick, bpftrace, netfilter_drop, target) =
            (self.quick, self.bpftrace, self.netfilter_drop, self.target);
        let before = self.lab.nft().counter("bench")?;
        let mut args = vec!["--bpf-stats", "--output", "none"];
        if !path.selected() {
            args.extend(["--drop-reasons", "default,-NETFILTER_DROP"]);
        }
        match path {
            Path::FirstSight => args.extend(["--flow-slots", "65536", "--ring-bytes", "4194304"]),
            Path::Overflow => args.extend(["--flow-slots", "16"]),
            Path::Repeated | Path::Interleaved | Path::Filtered => {}
        }
        let (flows, per_flow) = path.traffic(quick);
        let ports: Vec<u16> = (20_000..20_000 + flows).collect();
        let drops = u64::from(flows) * per_flow as u64;

        let (seconds, ns_per_call) = match tracer {
            Tracer::None => (send(self.netns, path, ports, target, per_flow)?, None),
            Tracer::Floor | Tracer::Dropscope => {
                if tracer == Tracer::Floor {
                    args.extend(["--hook", "floor"]);
                }
                let agent = Agent::start(&args)?;
                let seconds = send(self.netns, path, ports, target, per_flow)?;
                std::thread::sleep(Duration::from_millis(300));
                let log = agent.stop()?;
                let line = log
                    .lines()
                    .find(|line| line.contains("hook cost"))
                    .context("the agent logged no hook cost")?;
                (seconds, field(line, "avg_ns").map(|ns| ns as f64))
            }
            Tracer::Bpftrace => {
                let reason = if path.selected() {
                    netfilter_drop
                } else {
                    u32::MAX
                };
                let tracer = Bpftrace::start(bpftrace, reason)?;
                let at_start = tracer.run_stats()?;
                let seconds = send(self.netns, path, ports, target, per_flow)?;
                let at_end = tracer.run_stats()?;
                let calls = at_end.1.saturating_sub(at_start.1);
                let ns = at_end.0.saturating_sub(at_start.0);
                (seconds, (calls > 0).then(|| ns as f64 / calls as f64))
            }
        };
        let counted = self.lab.nft().counter("bench")? - before;
        ensure!(counted == drops, "nft counted {counted} of {drops}");
        Ok(Sample {
            drops,
            seconds,
            ns_per_call,
        })
    }
}

fn send(
    netns: &Netns,
    path: Path,
    ports: Vec<u16>,
    target: SocketAddr,
    per_flow: usize,
) -> Result<f64> {
    let started = Instant::now();
    if path == Path::Interleaved {
        send_udp_interleaved(netns, ports, target, per_flow)?;
    } else {
        send_udp(netns, ports, target, per_flow)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.parse().ok())
}

/// bpftrace counting drops per flow (tuple from the headers, reason,
/// location), the same work dropscope's aggregated path does; its program's
/// run time from the kernel's BPF statistics, on while it runs.
struct Bpftrace {
    child: Child,
    programs: Vec<u64>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl Bpftrace {
    fn start(binary: &str, reason: u32) -> Result<Self> {
        let script = format!(
            "tracepoint:skb:kfree_skb /args->reason == {reason}/ {{
               $skb = (struct sk_buff *)args->skbaddr;
               $ip = (struct iphdr *)($skb->head + $skb->network_header);
               $udp = (struct udphdr *)($skb->head + $skb->transport_header);
               @drops[$ip->saddr, $ip->daddr, $udp->source, $udp->dest, args->reason, args->location] = count();
             }}"
        );
        let before = program_ids()?;
        std::fs::write(BPF_STATS, "1").context("enabling BPF statistics")?;
        let mut child = Command::new(binary)
            .args(["-e", &script])
            .env("BPFTRACE_MAP_KEYS_MAX", "65536")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bpftrace")?;
        let started = Instant::now();
        loop {
            let programs: Vec<u64> = program_ids()?
                .into_iter()
                .filter(|id| !before.contains(id))
                .collect();
            if !programs.is_empty() {
                // Attached once its program exists; give the attach a moment.
                std::thread::sleep(Duration::from_millis(500));
                return Ok(Self { child, programs });
            }
            if let Some(status) = child.try_wait()? {
                bail!("bpftrace exited with {status} before attaching");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("bpftrace did not attach within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run time (ns) and run count of its programs.
    fn run_stats(&self) -> Result<(u64, u64)> {
        let listed = bpftool_programs()?;
        let mut total = (0, 0);
        for program in listed.as_array().into_iter().flatten() {
            if self
                .programs
                .contains(&program["id"].as_u64().unwrap_or_default())
            {
                total.0 += program["run_time_ns"].as_u64().unwrap_or(0);
                total.1 += program["run_cnt"].as_u64().unwrap_or(0);
            }
        }
        Ok(total)
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::write(BPF_STATS, "0");
    }
}

fn bpftool_programs() -> Result<Value> {
    let output = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .context("running bpftool (run `cargo xtask bootstrap`)")?;
    ensure!(output.status.success(), "bpftool prog show failed");
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn program_ids() -> Result<Vec<u64>> {
    Ok(bpftool_programs()?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|program| program["id"].as_u64())
        .collect())
}

/// The agent's CPU and memory at idle, at a steady 1,000 drops/s and in a
/// storm.
struct Footprint {
    phases: Vec<(&'static str, f64, u64, u64)>,
}

fn footprint(bench: &Bench) -> Result<Footprint> {
    let (quick, lab, target) = (bench.quick, bench.lab, bench.target);
    let seconds = if quick { 1 } else { 3 };
    let agent = Agent::start(&["--output", "none"])?;
    let pid = agent.pid();
    let mut phases = Vec::new();

    let cpu = CpuClock::start(pid)?;
    std::thread::sleep(Duration::from_secs(seconds));
    phases.push(("idle", cpu.percent()?, rss_bytes(pid)?, 0));

    let before = lab.nft().counter("bench")?;
    let cpu = CpuClock::start(pid)?;
    paced(bench.netns, target, 1_000, Duration::from_secs(seconds))?;
    let sent = lab.nft().counter("bench")? - before;
    phases.push(("1,000 drops/s", cpu.percent()?, rss_bytes(pid)?, sent));

    let before = lab.nft().counter("bench")?;
    let cpu = CpuClock::start(pid)?;
    let storm_flows = if quick { 2_000 } else { 20_000 };
    send_udp(
        bench.netns,
        (30_000..30_000 + storm_flows).collect(),
        target,
        5,
    )?;
    let sent = lab.nft().counter("bench")? - before;
    phases.push(("storm", cpu.percent()?, rss_bytes(pid)?, sent));
    agent.stop()?;
    Ok(Footprint { phases })
}

/// Sends `rate` datagrams per second over 100 flows for `length`.
fn paced(netns: &Netns, target: SocketAddr, rate: u32, length: Duration) -> Result<()> {
    netns.enter(move || -> Result<()> {
        let sockets: Vec<UdpSocket> = (0..100)
            .map(|port| UdpSocket::bind(("0.0.0.0", 21_000 + port)))
            .collect::<std::io::Result<_>>()?;
        let started = Instant::now();
        let interval = Duration::from_secs(1) / rate;
        let mut sent = 0u32;
        while started.elapsed() < length {
            sockets[sent as usize % sockets.len()].send_to(b"dropscope-bench", target)?;
            sent += 1;
            let due = interval * sent;
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    })?
}

fn report(
    samples: &[(Path, Tracer, usize, Sample)],
    paths: &[Path],
    rounds: usize,
    footprint: Option<&Footprint>,
    quick: bool,
) -> Result<()> {
    println!(
        "| path | tracer | BPF ns/call (median, min–max) | vs floor | drop rate vs no tracer (median, min–max) |"
    );
    println!("|---|---|---:|---:|---:|");
    let rate = |sample: &Sample| sample.drops as f64 / sample.seconds;
    let mut rows = Vec::new();
    for &path in paths {
        let floor_ns = {
            let mut values: Vec<f64> = samples
                .iter()
                .filter(|(p, t, _, _)| *p == path && *t == Tracer::Floor)
                .filter_map(|(_, _, _, sample)| sample.ns_per_call)
                .collect();
            median_and_spread(&mut values).map(|(median, _, _)| median)
        };
        for tracer in Tracer::ALL {
            let mut ns = Vec::new();
            let mut ratios = Vec::new();
            for round in 0..rounds {
                let pick = |t: Tracer| {
                    samples
                        .iter()
                        .find(|(p, tr, r, _)| *p == path && *tr == t && *r == round)
                        .map(|(_, _, _, sample)| sample)
                };
                let (Some(sample), Some(baseline)) = (pick(tracer), pick(Tracer::None)) else {
                    continue;
                };
                ns.extend(sample.ns_per_call);
                ratios.push(rate(sample) / rate(baseline));
            }
            let ns = median_and_spread(&mut ns);
            let ratio = median_and_spread(&mut ratios);
            let show = |value: Option<(f64, f64, f64)>, digits: usize| {
                value.map_or("-".to_owned(), |(median, low, high)| {
                    format!("{median:.digits$} ({low:.digits$}–{high:.digits$})")
                })
            };
            let vs_floor = match (ns, floor_ns) {
                (Some((median, _, _)), Some(floor)) if floor > 0.0 => {
                    format!("{:.2}×", median / floor)
                }
                _ => "-".to_owned(),
            };
            println!(
                "| {} | {} | {} | {vs_floor} | {} |",
                path.name(),
                tracer.name(),
                show(ns, 0),
                show(ratio, 3)
            );
            rows.push(json!({
                "path": path.name(),
                "tracer": tracer.name(),
                "ns_per_call": ns.map(|(median, low, high)| json!({"median": median, "min": low, "max": high})),
                "ratio_to_floor": ns.zip(floor_ns).map(|((median, _, _), floor)| median / floor),
                "drop_rate_ratio": ratio.map(|(median, low, high)| json!({"median": median, "min": low, "max": high})),
            }));
        }
    }
    // A partial run (`--paths`) prints its table and keeps no results.
    let Some(footprint) = footprint else {
        return Ok(());
    };
    println!("| agent | CPU % of a core | RSS MiB | drops |");
    println!("|---|---:|---:|---:|");
    let mut phases = Vec::new();
    for (name, cpu, rss, drops) in &footprint.phases {
        println!(
            "| {name} | {cpu:.1} | {:.1} | {drops} |",
            *rss as f64 / 1_048_576.0
        );
        phases.push(json!({"phase": name, "cpu_percent": cpu, "rss_bytes": rss, "drops": drops}));
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("kfree_skb.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({
            "quick": quick,
            "rounds": rounds,
            "paths": rows,
            "agent": phases,
        }))?,
    )?;
    println!("written to {}", path.display());
    Ok(())
}
