//! What the socket and wire hooks cost (cgroup `connect4`/`connect6` at the
//! cgroup v2 root, the `sock:inet_sock_set_state` and
//! `tcp:tcp_retransmit_skb` tracepoints, tc on the node's interfaces), side
//! by side in one run:
//!
//! 1. Traffic over a veth pair whose near end the agent's tc programs watch
//!    (`VethPair`, the agent started in `near`, servers in `far`): TCP bulk
//!    throughput (one connection, 1 MiB writes, sender and receiver pinned
//!    to one core), TCP connect rate (4 clients, one short connection
//!    after another, the server closing first: SYN handling and the socket
//!    tracepoints; over IPv4 and over IPv6, for `connect6`) and DNS
//!    request/response rate to port 53 (4 clients;
//!    every packet goes to user space). Each with no agent (the baseline),
//!    the agent, and the agent with `--bpf-stats`, in interleaved rounds
//!    whose order rotates; ratios to the same round's baseline, median and
//!    spread over the rounds, and the agent's CPU meanwhile.
//! 2. BPF run time per call of each of the agent's programs during each
//!    load, from the kernel's statistics (the `--bpf-stats` runs; the
//!    agent's programs found through its file descriptors).
//! 3. Incident latency to a real `Observe` follow stream on the agent's
//!    Unix socket: from the client's connect() giving up (ETIMEDOUT,
//!    stamped in the client, `tcp_syn_retries=1`) to the CONNECT_TIMEOUT's
//!    arrival; from a DNS question's decision being due (its send +
//!    `--dns-timeout`) to the DNS_UNANSWERED's arrival.
//! 4. Memory: the kernel maps of `--connect-slots N` (bpftool's
//!    `bytes_memlock`), the agent's RSS before and after N sockets in
//!    SYN_SENT, and before and after N unanswered DNS questions
//!    (`--dns-pending N --dns-timeout 120s`).
//!
//! Parts 3 and 4 run in a lab, the agent in the lab node, clients in a pod,
//! destinations in the lab's `Void`: routed out of a veth the agent
//! watches to a next hop nobody is, where everything vanishes without an
//! answer and without a drop the agent reports by default.
//!
//! `cargo xtask bench [--quick]` runs it (as root) and keeps the JSON in
//! `target/bench/socket.json`. `--quick`: one round of 1 s loads, 20
//! connects and 20 questions for latency, 5,000 sockets and questions for
//! memory.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        LabClient, Netns, VethPair, Void,
        bpf_objects::{MapInfo, maps_of, programs_of},
        client::{self, rss_bytes, wait_until},
        cpu_clock::{CpuClock, median_and_spread},
        dns_wire,
    },
};
use dropscope_proto::v1::{self, observer_client::ObserverClient};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

/// How much of everything: the full run or `--quick`.
struct Scale {
    quick: bool,
    rounds: usize,
    load: Duration,
    latency_samples: usize,
    held: usize,
}

impl Scale {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                rounds: 1,
                load: Duration::from_secs(1),
                latency_samples: 20,
                held: 5_000,
            }
        } else {
            Self {
                quick,
                rounds: 7,
                load: Duration::from_secs(3),
                latency_samples: 100,
                held: 100_000,
            }
        }
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let scale = Scale::new(quick);
    let started = Instant::now();
    // lab-client raises its own soft limit of open files; the hard one is
    // inherited.
    let open_files = raise_open_files_hard_limit(262_144)?;
    let runtime = client::runtime()?;
    let traffic = traffic(&scale, &runtime).context("the traffic loads")?;
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let void = Void::new(&lab)?;
    let latency = latency(&scale, &runtime, &lab, &pod.netns).context("incident latency")?;
    let memory = memory(&scale, &runtime, &lab, &pod, open_files).context("memory")?;
    drop((void, lab));
    report(&scale, &traffic, &latency, &memory, started.elapsed())
}

// ------------------------------------------------------------------ traffic

/// What runs beside the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    NoAgent,
    Agent,
    Stats,
}

impl Setup {
    const ALL: [Self; 3] = [Self::NoAgent, Self::Agent, Self::Stats];

    fn name(self) -> &'static str {
        match self {
            Self::NoAgent => "no agent",
            Self::Agent => "agent",
            Self::Stats => "agent --bpf-stats",
        }
    }

    fn args(self) -> Option<&'static [&'static str]> {
        match self {
            Self::NoAgent => None,
            Self::Agent => Some(&["--output", "none"]),
            Self::Stats => Some(&["--output", "none", "--bpf-stats"]),
        }
    }
}

/// The traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Bulk,
    Connects,
    Connects6,
    Dns,
}

impl Load {
    const ALL: [Self; 4] = [Self::Bulk, Self::Connects, Self::Connects6, Self::Dns];

    fn name(self) -> &'static str {
        match self {
            Self::Bulk => "TCP bulk, 1 connection, 1 core",
            Self::Connects => "TCP connects, 4 clients",
            Self::Connects6 => "TCP connects over IPv6, 4 clients",
            Self::Dns => "DNS over UDP to port 53, 4 clients",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Bulk => "Gbit/s",
            Self::Connects | Self::Connects6 => "connections/s",
            Self::Dns => "queries/s",
        }
    }

    /// Operations (bytes for bulk) per second in [`Self::unit`].
    fn show_rate(self, per_second: f64) -> f64 {
        match self {
            Self::Bulk => per_second * 8.0 / 1e9,
            Self::Connects | Self::Connects6 | Self::Dns => per_second,
        }
    }

    /// What a program's calls are counted per.
    fn operation(self) -> &'static str {
        match self {
            Self::Bulk => "MiB",
            Self::Connects | Self::Connects6 => "connection",
            Self::Dns => "query",
        }
    }

    /// Operations counted by a run, in [`Self::operation`]s.
    fn operations(self, counted: u64) -> f64 {
        match self {
            Self::Bulk => counted as f64 / 1_048_576.0,
            Self::Connects | Self::Connects6 | Self::Dns => counted as f64,
        }
    }
}

const BULK_PORT: u16 = 5001;
const SHORT_PORT: u16 = 5002;
const DNS_PORT: u16 = 53;

/// One load under one setup in one round.
struct Sample {
    round: usize,
    setup: Setup,
    load: Load,
    /// Operations (bytes for bulk).
    counted: u64,
    seconds: f64,
    /// DNS queries without an answer within 200 ms.
    lost: u64,
    /// The agent's CPU, % of one core (with an agent).
    agent_cpu: Option<f64>,
    /// Per program: name, ns and runs during the load (with --bpf-stats).
    programs: Vec<(String, u64, u64)>,
    /// The agent's incident counters' increase during the load (with an
    /// agent).
    seen: Option<Seen>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.counted as f64 / self.seconds
    }
}

/// Increases of the agent's incident counters (GetStatus).
#[derive(Clone, Copy, Debug)]
struct Seen {
    connects_tracked: u64,
    connect_records: u64,
    connect_ring_full: u64,
    dns_records: u64,
    dns_ring_full: u64,
}

impl Seen {
    fn since(now: &v1::IncidentStatus, then: &v1::IncidentStatus) -> Self {
        Self {
            connects_tracked: now.connects_tracked - then.connects_tracked,
            connect_records: now.connect_records - then.connect_records,
            connect_ring_full: now.connect_ring_full - then.connect_ring_full,
            dns_records: now.dns_records - then.dns_records,
            dns_ring_full: now.dns_ring_full - then.dns_ring_full,
        }
    }
}

struct Traffic {
    samples: Vec<Sample>,
    /// The agent's maps with default flags.
    default_maps: Vec<MapInfo>,
}

fn traffic(scale: &Scale, runtime: &Runtime) -> Result<Traffic> {
    let pair = VethPair::new()?;
    // The server closes first, so its side would keep every connection in
    // TIME_WAIT and later rounds would meet them: keep none.
    pair.far
        .run(&["sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=0"])?;
    start_servers(&pair.far)?;
    let mut names = 0;
    // Warm up every path once, unmeasured.
    for load in Load::ALL {
        run_load(&pair.near, load, Duration::from_millis(300), &mut names)?;
    }
    let mut samples = Vec::new();
    let mut default_maps = Vec::new();
    for round in 0..scale.rounds {
        for step in 0..Setup::ALL.len() {
            let setup = Setup::ALL[(round + step) % Setup::ALL.len()];
            let agent = setup
                .args()
                .map(|args| Agent::start_in(&pair.near, args))
                .transpose()?;
            if let Some(agent) = &agent {
                if default_maps.is_empty() && setup == Setup::Agent {
                    default_maps = maps_of(agent.pid())?;
                }
                // Past its start (first metrics refresh, interface scan).
                std::thread::sleep(Duration::from_millis(500));
            }
            let mut watching = match &agent {
                Some(agent) => Some(Watching {
                    agent,
                    observer: runtime.block_on(client::connect(&agent.server()))?,
                }),
                None => None,
            };
            for load in Load::ALL {
                let sample = measure(
                    &pair.near,
                    watching.as_mut(),
                    runtime,
                    (round, setup, load),
                    scale.load,
                    &mut names,
                )
                .with_context(|| format!("{} with {}", load.name(), setup.name()))?;
                samples.push(sample);
            }
            drop(watching);
            if let Some(agent) = agent {
                agent.stop()?;
            }
        }
    }
    Ok(Traffic {
        samples,
        default_maps,
    })
}

/// An agent beside a load, and a client of its API.
struct Watching<'a> {
    agent: &'a Agent,
    observer: ObserverClient<Channel>,
}

fn measure(
    near: &Netns,
    mut watching: Option<&mut Watching>,
    runtime: &Runtime,
    (round, setup, load): (usize, Setup, Load),
    length: Duration,
    names: &mut u64,
) -> Result<Sample> {
    let stats = setup == Setup::Stats;
    let mut before = None;
    if let Some(watching) = watching.as_deref_mut() {
        let pid = watching.agent.pid();
        let programs = if stats { programs_of(pid)? } else { Vec::new() };
        let status = runtime.block_on(status(&mut watching.observer))?;
        before = Some((programs, status, CpuClock::start(pid)?));
    }
    let run = run_load(near, load, length, names)?;
    let mut sample = Sample {
        round,
        setup,
        load,
        counted: run.counted,
        seconds: run.seconds,
        lost: run.lost,
        agent_cpu: None,
        programs: Vec::new(),
        seen: None,
    };
    if let (Some(watching), Some((programs, status_before, cpu))) = (watching, before) {
        sample.agent_cpu = Some(cpu.percent()?);
        let status_after = runtime.block_on(status(&mut watching.observer))?;
        sample.seen = Some(Seen::since(&status_after, &status_before));
        if stats {
            for after in programs_of(watching.agent.pid())? {
                let (ns, runs) = programs
                    .iter()
                    .find(|program| program.id == after.id)
                    .map_or((0, 0), |program| (program.run_time_ns, program.run_cnt));
                sample.programs.push((
                    after.name.clone(),
                    after.run_time_ns.saturating_sub(ns),
                    after.run_cnt.saturating_sub(runs),
                ));
            }
            // Ground truth that tc watched the link: both directions ran.
            for direction in ["tc_ingress", "tc_egress"] {
                let runs = sample
                    .programs
                    .iter()
                    .filter(|(name, _, _)| name == direction)
                    .map(|(_, _, runs)| runs)
                    .sum::<u64>();
                ensure!(
                    runs > 0,
                    "{direction} did not run during {}: is it attached to the near end?",
                    load.name()
                );
            }
        }
    }
    Ok(sample)
}

/// The agent's status.
async fn full_status(observer: &mut ObserverClient<Channel>) -> Result<v1::GetStatusResponse> {
    Ok(observer
        .get_status(v1::GetStatusRequest {})
        .await
        .context("GetStatus")?
        .into_inner())
}

/// The incident counters of a status.
fn incidents_of(status: &v1::GetStatusResponse) -> Result<v1::IncidentStatus> {
    status
        .incidents
        .context("GetStatus without incident counters")
}

/// The agent's incident counters.
async fn status(observer: &mut ObserverClient<Channel>) -> Result<v1::IncidentStatus> {
    incidents_of(&full_status(observer).await?)
}

/// What one load did.
struct Run {
    counted: u64,
    seconds: f64,
    lost: u64,
}

/// Servers in `far`, for the whole run: bulk sink, short connections (closed
/// at once by the server), DNS answering every question with an A record.
fn start_servers(far: &Netns) -> Result<()> {
    // Sockets belong to the namespace they were made in, whichever thread
    // serves them later.
    let (bulk, short, short6, dns) = far.enter(|| -> Result<_> {
        Ok((
            TcpListener::bind((VethPair::FAR, BULK_PORT))?,
            TcpListener::bind((VethPair::FAR, SHORT_PORT))?,
            TcpListener::bind((VethPair::FAR6, SHORT_PORT))?,
            UdpSocket::bind((VethPair::FAR, DNS_PORT))?,
        ))
    })??;
    std::thread::spawn(move || {
        for stream in bulk.incoming().map_while(Result::ok) {
            std::thread::spawn(move || drain(stream));
        }
    });
    // Two threads answer each, so neither server is the bottleneck.
    for _ in 0..2 {
        for listener in [&short, &short6] {
            let listener = listener.try_clone()?;
            std::thread::spawn(move || {
                for accepted in listener.incoming() {
                    drop(accepted);
                }
            });
        }
        let dns = dns.try_clone()?;
        std::thread::spawn(move || {
            let mut buffer = vec![0; 2048];
            while let Ok((length, from)) = dns.recv_from(&mut buffer) {
                if let Some(answer) = dns_wire::answer_a(&buffer[..length], VethPair::FAR) {
                    let _ = dns.send_to(&answer, from);
                }
            }
        });
    }
    Ok(())
}

/// Reads until the client's end, then closes (the client waits for that).
fn drain(mut stream: TcpStream) {
    // On the sender's core (see `bulk`). Best effort: a failed pin only
    // makes the bulk figures noisier.
    let _ = pin_to_cpu(0);
    let mut buffer = vec![0; 1 << 20];
    while let Ok(read) = stream.read(&mut buffer) {
        if read == 0 {
            break;
        }
    }
}

/// Client threads of the connect and DNS loads: more than the cores, so
/// the load is bound by CPU, not by the wake-ups of a ping-pong (on this
/// VM an idle core's wake-up costs more than the hooks).
const CLIENTS: usize = 4;

/// Runs `load` from `near` for `length`: one bulk stream, or [`CLIENTS`]
/// threads of connects or DNS questions (the rate is their sum).
fn run_load(near: &Netns, load: Load, length: Duration, names: &mut u64) -> Result<Run> {
    if load == Load::Bulk {
        return near.enter(move || bulk(length))?;
    }
    let first_name = *names;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let near = near.clone();
            // Names apart between threads and runs.
            let first = first_name + index as u64 * 10_000_000;
            std::thread::spawn(move || -> Result<Run> {
                near.enter(move || match load {
                    Load::Connects => connects((VethPair::FAR, SHORT_PORT).into(), length),
                    Load::Connects6 => connects((VethPair::FAR6, SHORT_PORT).into(), length),
                    Load::Dns | Load::Bulk => dns_exchanges(length, first),
                })?
            })
        })
        .collect();
    let mut total = Run {
        counted: 0,
        seconds: 0.0,
        lost: 0,
    };
    for thread in threads {
        let run = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        total.counted += run.counted;
        total.lost += run.lost;
        total.seconds = total.seconds.max(run.seconds);
    }
    *names += CLIENTS as u64 * 10_000_000;
    Ok(total)
}

fn bulk(length: Duration) -> Result<Run> {
    // Sender and receiver on one core: every segment then goes through
    // one CPU's backlog, in order, and the stream is bound by that core,
    // so what the hooks cost shows in full. Spread over two cores, the
    // sender's segments and those sent while ACKs are processed on the
    // receiver's core meet out of order, and the stream is bound by
    // spurious retransmissions (70k–110k per 3 s here), which programs on
    // the path change as a side effect.
    pin_to_cpu(0)?;
    let mut stream = TcpStream::connect((VethPair::FAR, BULK_PORT)).context("bulk connect")?;
    let chunk = vec![0x5a_u8; 1 << 20];
    let started = Instant::now();
    let mut bytes = 0u64;
    while started.elapsed() < length {
        stream.write_all(&chunk).context("bulk write")?;
        bytes += chunk.len() as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    // The server closes once it has read everything.
    let mut rest = [0u8; 1];
    let _ = stream.read(&mut rest).context("bulk end")?;
    Ok(Run {
        counted: bytes,
        seconds: started.elapsed().as_secs_f64(),
        lost: 0,
    })
}

fn connects(to: SocketAddr, length: Duration) -> Result<Run> {
    let started = Instant::now();
    let mut count = 0u64;
    let mut byte = [0u8; 1];
    while started.elapsed() < length {
        let mut stream = TcpStream::connect(to).with_context(|| format!("connect {count}"))?;
        // The server's close.
        let _ = stream.read(&mut byte)?;
        count += 1;
    }
    Ok(Run {
        counted: count,
        seconds: started.elapsed().as_secs_f64(),
        lost: 0,
    })
}

fn dns_exchanges(length: Duration, first_name: u64) -> Result<Run> {
    let socket = UdpSocket::bind((VethPair::NEAR, 0))?;
    socket.connect((VethPair::FAR, DNS_PORT))?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buffer = vec![0; 2048];
    let started = Instant::now();
    let (mut answered, mut lost) = (0u64, 0u64);
    let mut name = first_name;
    while started.elapsed() < length {
        let id = name as u16;
        socket.send(&dns_wire::query(
            id,
            &format!("q{name}.bench.dropscope.test"),
        ))?;
        name += 1;
        loop {
            match socket.recv(&mut buffer) {
                Ok(read) if read >= 2 && buffer[..2] == id.to_be_bytes() => {
                    answered += 1;
                    break;
                }
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    lost += 1;
                    break;
                }
                Err(error) => return Err(error).context("DNS answer"),
            }
        }
    }
    Ok(Run {
        counted: answered,
        seconds: started.elapsed().as_secs_f64(),
        lost,
    })
}

// ----------------------------------------------------------------- latency

/// The destination of the latency connects (one port each), in the void.
const VOID_CONNECT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The DNS server that never answers, in the void.
const VOID_DNS: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 53);

/// Incidents received on a follow stream, with their time of receipt.
struct Arrivals {
    received: Arc<Mutex<Vec<(SystemTime, v1::Incident)>>>,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Arrivals {
    fn follow(runtime: &Runtime, server: &str) -> Result<Self> {
        let (observer, mut stream) =
            runtime.block_on(client::follow(server, client::endpoint()))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let task = runtime.spawn(async move {
            let _connection = observer;
            loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        let at = SystemTime::now();
                        if let Some(v1::event::Event::Incident(incident)) = event.event {
                            sink.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((at, incident));
                        }
                    }
                    Ok(None) => return Some("the agent ended the stream".to_owned()),
                    Err(status) => return Some(format!("the stream failed: {status}")),
                }
            }
        });
        Ok(Self { received, task })
    }

    /// Waits until `find` has found every key of `wanted`; returns the
    /// arrival time of each that came within `limit` (the report counts
    /// the others as not received, and this says which).
    fn wait<K: Ord + Clone + std::fmt::Debug>(
        &self,
        what: &str,
        wanted: &[K],
        limit: Duration,
        find: impl Fn(&v1::Incident) -> Option<K>,
    ) -> Result<BTreeMap<K, SystemTime>> {
        let mut found = BTreeMap::new();
        let mut read = 0;
        let outcome = wait_until(limit, what, || {
            let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
            for (at, incident) in &received[read..] {
                if let Some(key) = find(incident)
                    && wanted.contains(&key)
                {
                    found.entry(key).or_insert(*at);
                }
            }
            read = received.len();
            (found.len() == wanted.len() || self.task.is_finished()).then_some(())
        });
        if let Err(error) = outcome {
            let missing: Vec<&K> = wanted
                .iter()
                .filter(|key| !found.contains_key(key))
                .take(5)
                .collect();
            eprintln!(
                "warning: {error}: {} of {} arrived; not received e.g. {missing:?}",
                found.len(),
                wanted.len()
            );
            return Ok(found);
        }
        ensure!(
            found.len() == wanted.len(),
            "the follow stream ended before {what}"
        );
        Ok(found)
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Latency {
    connect_ms: Vec<f64>,
    dns_ms: Vec<f64>,
    dns_timeout: Duration,
}

fn latency(scale: &Scale, runtime: &Runtime, lab: &Lab, pod: &Netns) -> Result<Latency> {
    // The kernel gives up on a connect after 1 + 2 s.
    pod.run(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"])?;
    let dns_timeout = Duration::from_secs(1);
    let agent = Agent::start_in(&lab.node, &["--output", "none", "--dns-timeout", "1s"])?;
    let arrivals = Arrivals::follow(runtime, &agent.server())?;
    // The subscription is registered before the first message can come.
    std::thread::sleep(Duration::from_millis(300));
    let connect_ms = connect_latency(pod, &arrivals, scale.latency_samples)?;
    let dns_ms = dns_latency(pod, &arrivals, scale.latency_samples, dns_timeout)?;
    drop(arrivals);
    agent.stop()?;
    Ok(Latency {
        connect_ms,
        dns_ms,
        dns_timeout,
    })
}

/// `samples` connects, one every 30 ms, each to a port of its own on
/// [`VOID_CONNECT`]; each thread stamps the moment connect() returned
/// ETIMEDOUT. Latency: that to the CONNECT_TIMEOUT's receipt.
fn connect_latency(pod: &Netns, arrivals: &Arrivals, samples: usize) -> Result<Vec<f64>> {
    let stagger = Duration::from_millis(30);
    let threads: Vec<_> = (0..samples)
        .map(|index| {
            let netns = pod.clone();
            let to = SocketAddr::from((VOID_CONNECT, 20_000 + index as u16));
            std::thread::spawn(move || -> Result<(u16, SystemTime)> {
                std::thread::sleep(stagger * index as u32);
                netns.enter(move || match TcpStream::connect(to) {
                    Ok(_) => bail!("{to} answered"),
                    Err(error) if error.raw_os_error() == Some(libc::ETIMEDOUT) => {
                        Ok((to.port(), SystemTime::now()))
                    }
                    Err(error) => Err(error).with_context(|| format!("connecting to {to}")),
                })?
            })
        })
        .collect();
    let mut gave_up = BTreeMap::new();
    for thread in threads {
        let (port, at) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a connect thread panicked"))??;
        gave_up.insert(port, at);
    }
    let ports: Vec<u16> = gave_up.keys().copied().collect();
    let void = VOID_CONNECT.to_string();
    let arrived = arrivals.wait(
        "every CONNECT_TIMEOUT",
        &ports,
        Duration::from_secs(30),
        |incident| {
            let destination = incident.flow.as_ref()?.destination.as_ref()?;
            (incident.kind == v1::IncidentKind::ConnectTimeout as i32
                && incident.event_kind == v1::IncidentEventKind::New as i32
                && destination.ip == void)
                .then(|| u16::try_from(destination.port).ok())
                .flatten()
        },
    )?;
    Ok(sorted_delays(&gave_up, &arrived, Duration::ZERO))
}

/// `samples` questions, one every 37 ms (not a divisor of the agent's 1 s
/// tick, so its phase is sampled evenly), each a name of its own from one
/// UDP socket to [`VOID_DNS`], sent once. Latency: from the send plus the
/// DNS timeout (when the decision is due) to the DNS_UNANSWERED's receipt.
fn dns_latency(
    pod: &Netns,
    arrivals: &Arrivals,
    samples: usize,
    timeout: Duration,
) -> Result<Vec<f64>> {
    let sent = pod.enter(move || -> Result<BTreeMap<String, SystemTime>> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let server = SocketAddr::from((VOID_DNS, DNS_PORT));
        let stagger = Duration::from_millis(37);
        let started = Instant::now();
        let mut sent = BTreeMap::new();
        for index in 0..samples {
            if let Some(wait) = (stagger * index as u32).checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let name = format!("lat{index}.bench.dropscope.test");
            socket.send_to(&dns_wire::query(index as u16 + 1, &name), server)?;
            sent.insert(name, SystemTime::now());
        }
        Ok(sent)
    })??;
    let names: Vec<String> = sent.keys().cloned().collect();
    let arrived = arrivals.wait(
        "every DNS_UNANSWERED",
        &names,
        Duration::from_secs(30),
        |incident| {
            (incident.kind == v1::IncidentKind::DnsUnanswered as i32
                && incident.event_kind == v1::IncidentEventKind::New as i32)
                .then(|| incident.dns.as_ref().map(|dns| dns.name.clone()))
                .flatten()
        },
    )?;
    Ok(sorted_delays(&sent, &arrived, timeout))
}

/// For every key: arrival − (start + offset), in ms (negative when it came
/// earlier), sorted.
fn sorted_delays<K: Ord>(
    start: &BTreeMap<K, SystemTime>,
    arrived: &BTreeMap<K, SystemTime>,
    offset: Duration,
) -> Vec<f64> {
    let mut delays: Vec<f64> = start
        .iter()
        .filter_map(|(key, at)| {
            let due = *at + offset;
            let arrival = *arrived.get(key)?;
            Some(match arrival.duration_since(due) {
                Ok(late) => late.as_secs_f64() * 1000.0,
                Err(early) => -early.duration().as_secs_f64() * 1000.0,
            })
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    delays
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

// ------------------------------------------------------------------ memory

struct Memory {
    held: usize,
    /// The agent's maps with --connect-slots N.
    maps: Vec<MapInfo>,
    /// SYN_SENT sockets, per agent variant.
    syn_sent: Vec<(&'static str, Held)>,
    dns: Held,
}

/// The agent's RSS before and after something was held, and the agent's
/// and the kernel's count of it.
struct Held {
    rss_before: u64,
    rss_after: u64,
    /// The anonymous part (heap) of each; the rest is mapped files and
    /// shared memory (the mapped ring buffers among them).
    anon_before: u64,
    anon_after: u64,
    /// What the agent counted (tracked connects, pending DNS).
    counted: u64,
    /// What it could not follow (untracked connects, DNS losses).
    not_followed: u64,
    /// Ground truth: sockets in SYN_SENT (`ss`), queries sent.
    truth: u64,
    /// Time to open or send them all.
    seconds: f64,
    /// Drop flows the agent tracked meanwhile (`active_flows` after).
    drop_flows: u64,
    /// Drop events it published meanwhile.
    events: u64,
}

fn lab_client() -> LabClient {
    LabClient::new(env!("CARGO_BIN_EXE_lab-client"))
}

fn memory(
    scale: &Scale,
    runtime: &Runtime,
    lab: &Lab,
    pod: &dropscope_e2e::Pod,
    open_files: u64,
) -> Result<Memory> {
    // Each lab-client holds this many sockets (its soft limit raised to
    // count + 64, at most the hard limit), each process to a destination
    // of its own (a local port serves one connect per destination).
    let per_process = open_files.saturating_sub(128).min(25_000) as usize;
    ensure!(
        per_process >= 1_000,
        "the hard limit of open files is {open_files}: raise it (ulimit -Hn) to hold sockets"
    );
    // Sockets opened at once retransmit their SYNs in bursts (timers of a
    // wheel bucket expire together), and a burst beyond the CPU backlog
    // (net.core.netdev_max_backlog) is dropped on the veths as
    // CPU_BACKLOG, which the agent reports: its drop flows would be counted
    // as the sockets' cost. First without that reason (the cost of
    // following the sockets), then with default flags (what such a burst
    // costs in all).
    let mut maps = Vec::new();
    let mut syn_sent = Vec::new();
    for (variant, args) in [
        (
            "--drop-reasons default,-CPU_BACKLOG",
            &["--drop-reasons", "default,-CPU_BACKLOG"][..],
        ),
        ("default reasons", &[][..]),
    ] {
        let (agent_maps, held) = syn_sent_memory(scale.held, per_process, args, runtime, lab, pod)
            .with_context(|| format!("sockets in SYN_SENT, agent with {variant}"))?;
        if maps.is_empty() {
            maps = agent_maps;
        }
        syn_sent.push((variant, held));
    }
    let dns = dns_memory(scale.held, runtime, lab, &pod.netns)?;
    Ok(Memory {
        held: scale.held,
        maps,
        syn_sent,
        dns,
    })
}

fn syn_sent_memory(
    held: usize,
    per_process: usize,
    args: &[&str],
    runtime: &Runtime,
    lab: &Lab,
    pod: &dropscope_e2e::Pod,
) -> Result<(Vec<MapInfo>, Held)> {
    // SYN_SENT for minutes (8 retries: 511 s), every local port usable.
    pod.netns
        .run(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=8"])?;
    pod.netns
        .run(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"])?;
    let cgroup = lab.pod_cgroup(pod)?;
    let slots = held.to_string();
    let mut agent_args = vec!["--output", "none", "--connect-slots", &slots];
    agent_args.extend_from_slice(args);
    let agent = Agent::start_in(&lab.node, &agent_args)?;
    let pid = agent.pid();
    let maps = maps_of(pid)?;
    let mut observer = runtime.block_on(client::connect(&agent.server()))?;
    std::thread::sleep(Duration::from_secs(1));
    let full_before = runtime.block_on(full_status(&mut observer))?;
    let before = incidents_of(&full_before)?;
    let rss_before = rss_bytes(pid)?;
    let anon_before = rss_anon_bytes(pid)?;

    let started = Instant::now();
    let mut clients = Vec::new();
    for (index, first) in (0..held).step_by(per_process).enumerate() {
        let count = per_process.min(held - first);
        let to = SocketAddr::from((Void::address(0x100 + 1 + index as u16), 8080));
        let process = lab_client().spawn_in(
            &pod.netns,
            Some(cgroup.path()),
            &["connects", &to.to_string(), "--count", &count.to_string()],
        )?;
        clients.push((process, count));
    }
    for (process, count) in &clients {
        let line = process.first_line(Duration::from_secs(300))?;
        ensure!(
            line["started"].as_u64() == Some(*count as u64),
            "lab-client connects: {}",
            line["started"]
        );
        let failed = line["finished_at_once"].as_array().map_or(0, Vec::len);
        ensure!(failed == 0, "{failed} connects ended at once");
    }
    let seconds = started.elapsed().as_secs_f64();
    let followed = wait_until(
        Duration::from_secs(60),
        "the agent to follow every connect",
        || {
            let now = runtime.block_on(status(&mut observer)).ok()?;
            let tracked = now.connects_tracked - before.connects_tracked;
            let untracked = now.connects_untracked - before.connects_untracked;
            (tracked + untracked >= held as u64).then_some((tracked, untracked))
        },
    )?;
    let truth = pod
        .netns
        .run_with_input(&["ss", "-Htn", "state", "syn-sent"], "")?
        .lines()
        .count() as u64;
    // Let the agent settle (sampling, metrics refresh) before reading.
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_bytes(pid)?;
    let anon_after = rss_anon_bytes(pid)?;
    let full_after = runtime.block_on(full_status(&mut observer))?;
    drop(clients);
    drop(observer);
    agent.stop()?;
    Ok((
        maps,
        Held {
            rss_before,
            rss_after,
            anon_before,
            anon_after,
            counted: followed.0,
            not_followed: followed.1,
            truth,
            seconds,
            drop_flows: full_after.active_flows,
            events: full_after.events_published - full_before.events_published,
        },
    ))
}

/// UDP sockets the unanswered questions come from.
const DNS_SOCKETS: usize = 16;
/// Questions sent before waiting for the agent to have read them: each is
/// two records (seen on the pod's veth and leaving by `void0`), and the
/// socket ring (1 MiB) holds about 1,800.
const DNS_BATCH: usize = 500;

fn dns_memory(held: usize, runtime: &Runtime, lab: &Lab, pod: &Netns) -> Result<Held> {
    let pending = held.to_string();
    let agent = Agent::start_in(
        &lab.node,
        &[
            "--output",
            "none",
            "--dns-pending",
            &pending,
            "--dns-timeout",
            "120s",
        ],
    )?;
    let pid = agent.pid();
    let mut observer = runtime.block_on(client::connect(&agent.server()))?;
    std::thread::sleep(Duration::from_secs(1));
    let full_before = runtime.block_on(full_status(&mut observer))?;
    let before = incidents_of(&full_before)?;
    let rss_before = rss_bytes(pid)?;
    let anon_before = rss_anon_bytes(pid)?;
    let sockets = pod.enter(|| -> std::io::Result<Vec<UdpSocket>> {
        (0..DNS_SOCKETS)
            .map(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .collect()
    })??;
    let server = SocketAddr::from((VOID_DNS, DNS_PORT));
    let started = Instant::now();
    let mut sent = 0;
    let mut now = before;
    while sent < held {
        let batch = DNS_BATCH.min(held - sent);
        for index in sent..sent + batch {
            // Distinct ids per socket (up to 16 × 65,536 questions) and
            // distinct names: every question its own exchange.
            let id = (index / DNS_SOCKETS) as u16;
            let name = format!("m{index}.bench.dropscope.test");
            sockets[index % DNS_SOCKETS].send_to(&dns_wire::query(id, &name), server)?;
        }
        sent += batch;
        now = wait_until(
            Duration::from_secs(30),
            "the agent to hold every question sent",
            || {
                let now = runtime.block_on(status(&mut observer)).ok()?;
                (now.pending_dns - before.pending_dns >= sent as u64).then_some(now)
            },
        )
        .with_context(|| {
            let now = runtime.block_on(status(&mut observer)).unwrap_or_default();
            format!(
                "{sent} sent; pending {}, DNS records {}, ring full {}, unreadable {}",
                now.pending_dns - before.pending_dns,
                now.dns_records - before.dns_records,
                now.dns_ring_full - before.dns_ring_full,
                now.dns_unreadable - before.dns_unreadable
            )
        })?;
    }
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_bytes(pid)?;
    let anon_after = rss_anon_bytes(pid)?;
    let full_after = runtime.block_on(full_status(&mut observer))?;
    let untracked = full_after
        .losses
        .iter()
        .filter(|loss| loss.source == v1::LossSource::DnsUntracked as i32)
        .map(|loss| loss.events)
        .sum::<u64>();
    drop(observer);
    agent.stop()?;
    Ok(Held {
        rss_before,
        rss_after,
        anon_before,
        anon_after,
        counted: now.pending_dns - before.pending_dns,
        not_followed: untracked + (now.dns_ring_full - before.dns_ring_full),
        truth: sent as u64,
        seconds,
        drop_flows: full_after.active_flows,
        events: full_after.events_published - full_before.events_published,
    })
}

// ----------------------------------------------------------------- helpers

/// Tries to raise this process's hard limit of open files to `wanted` (a
/// root with CAP_SYS_RESOURCE may), so children can raise their soft one
/// that far; returns the hard limit in force.
fn raise_open_files_hard_limit(wanted: u64) -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_max >= wanted {
        return Ok(limit.rlim_max);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_cur,
        rlim_max: wanted,
    };
    // SAFETY: a valid rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
        return Ok(wanted);
    }
    // Without CAP_SYS_RESOURCE (containers): more processes, fewer sockets
    // each.
    Ok(limit.rlim_max)
}

/// Pins the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (1024) on any machine this runs on.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of
    // the size given.
    let pinned = unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if pinned != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sched_setaffinity to CPU {cpu}"));
    }
    Ok(())
}

/// A process's anonymous resident memory (`RssAnon`), in bytes.
fn rss_anon_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no RssAnon in {path}"))?;
    Ok(kib * 1024)
}

fn spread_json(value: Option<(f64, f64, f64)>) -> Value {
    value.map_or(
        Value::Null,
        |(median, min, max)| json!({"median": median, "min": min, "max": max}),
    )
}

fn show(value: Option<(f64, f64, f64)>, digits: usize) -> String {
    value.map_or("-".to_owned(), |(median, low, high)| {
        format!("{median:.digits$} ({low:.digits$}–{high:.digits$})")
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

// ------------------------------------------------------------------ report

fn report(
    scale: &Scale,
    traffic: &Traffic,
    latency: &Latency,
    memory: &Memory,
    took: Duration,
) -> Result<()> {
    let samples = &traffic.samples;
    let pick = |round: usize, setup: Setup, load: Load| {
        samples
            .iter()
            .find(|sample| sample.round == round && sample.setup == setup && sample.load == load)
    };

    println!(
        "| load | setup | rate (median, min–max) | vs no agent (median, min–max) | agent CPU % |"
    );
    println!("|---|---|---:|---:|---:|");
    let mut traffic_rows = Vec::new();
    for load in Load::ALL {
        for setup in Setup::ALL {
            let (mut rates, mut ratios, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
            let mut lost = 0;
            for round in 0..scale.rounds {
                let (Some(sample), Some(baseline)) =
                    (pick(round, setup, load), pick(round, Setup::NoAgent, load))
                else {
                    continue;
                };
                rates.push(load.show_rate(sample.rate()));
                ratios.push(sample.rate() / baseline.rate());
                cpu.extend(sample.agent_cpu);
                lost += sample.lost;
            }
            let (rate, ratio, cpu) = (
                median_and_spread(&mut rates),
                median_and_spread(&mut ratios),
                median_and_spread(&mut cpu),
            );
            println!(
                "| {} | {} | {} {} | {} | {} |",
                load.name(),
                setup.name(),
                show(rate, if load == Load::Bulk { 2 } else { 0 }),
                load.unit(),
                show(ratio, 3),
                cpu.map_or("-".to_owned(), |(median, _, _)| format!("{median:.0}"))
            );
            traffic_rows.push(json!({
                "load": load.name(),
                "setup": setup.name(),
                "unit": load.unit(),
                "rate": spread_json(rate),
                "ratio_to_no_agent": spread_json(ratio),
                "agent_cpu_percent": spread_json(cpu),
                "dns_unanswered_in_200ms": lost,
            }));
        }
    }

    println!("| load | program | BPF ns/call (median, min–max) | calls per operation |");
    println!("|---|---|---:|---:|");
    let mut program_rows = Vec::new();
    for load in Load::ALL {
        let mut names: Vec<&str> = samples
            .iter()
            .filter(|sample| sample.load == load)
            .flat_map(|sample| sample.programs.iter().map(|(name, _, _)| name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let (mut ns, mut per_op) = (Vec::new(), Vec::new());
            for sample in samples.iter().filter(|sample| sample.load == load) {
                let (time, runs) = sample
                    .programs
                    .iter()
                    .filter(|(program, _, _)| program == name)
                    .fold((0, 0), |(time, runs), (_, t, r)| (time + t, runs + r));
                if sample.programs.is_empty() {
                    continue;
                }
                if runs > 0 {
                    ns.push(time as f64 / runs as f64);
                }
                per_op.push(runs as f64 / load.operations(sample.counted));
            }
            if ns.is_empty() {
                // Never ran during this load.
                continue;
            }
            let (ns, per_op) = (median_and_spread(&mut ns), median_and_spread(&mut per_op));
            println!(
                "| {} | {name} | {} | {} per {} |",
                load.name(),
                show(ns, 0),
                per_op.map_or("-".to_owned(), |(median, _, _)| format!("{median:.2}")),
                load.operation()
            );
            program_rows.push(json!({
                "load": load.name(),
                "program": name,
                "ns_per_call": spread_json(ns),
                "calls_per_operation": spread_json(per_op),
                "operation": load.operation(),
            }));
        }
    }
    // What the agent reported while the loads ran (ground truth that the
    // paths were taken).
    println!("| load | the agent counted | per operation (median, min–max) | ring full |");
    println!("|---|---|---:|---:|");
    let mut seen_rows = Vec::new();
    for (load, what, count) in [
        (
            Load::Connects,
            "connects tracked",
            (|seen: &Seen| seen.connects_tracked) as fn(&Seen) -> u64,
        ),
        (Load::Connects, "connect records", |seen: &Seen| {
            seen.connect_records
        }),
        (Load::Connects6, "connects tracked", |seen: &Seen| {
            seen.connects_tracked
        }),
        (Load::Dns, "DNS messages read", |seen: &Seen| {
            seen.dns_records
        }),
    ] {
        let mut per_op = Vec::new();
        let mut ring_full = 0;
        for sample in samples.iter().filter(|sample| sample.load == load) {
            let Some(seen) = &sample.seen else { continue };
            per_op.push(count(seen) as f64 / (sample.counted + sample.lost) as f64);
            ring_full += seen.connect_ring_full + seen.dns_ring_full;
        }
        let per_op = median_and_spread(&mut per_op);
        println!(
            "| {} | {what} | {} per {} | {ring_full} |",
            load.name(),
            show(per_op, 2),
            load.operation()
        );
        seen_rows.push(json!({
            "load": load.name(),
            "counter": what,
            "per_operation": spread_json(per_op),
            "ring_full": ring_full,
        }));
    }

    println!(
        "| incident → subscriber | samples | not received in 30 s | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut latency_rows = Vec::new();
    for (name, delays) in [
        (
            "CONNECT_TIMEOUT: connect() returned ETIMEDOUT → received",
            &latency.connect_ms,
        ),
        (
            "DNS_UNANSWERED: last try + --dns-timeout → received",
            &latency.dns_ms,
        ),
    ] {
        let (p50, p99, max) = (
            percentile(delays, 0.5),
            percentile(delays, 0.99),
            percentile(delays, 1.0),
        );
        println!(
            "| {name} | {} | {} | {p50:.2} | {p99:.2} | {max:.2} |",
            delays.len(),
            scale.latency_samples.saturating_sub(delays.len())
        );
        latency_rows.push(json!({
            "incident": name,
            "samples": delays.len(),
            "not_received": scale.latency_samples.saturating_sub(delays.len()),
            "p50": p50,
            "p99": p99,
            "max": max,
            "min": percentile(delays, 0.0),
        }));
    }

    let map = |maps: &[MapInfo], name: &str| -> Value {
        maps.iter().find(|map| map.name == name).map_or(Value::Null, |map| {
            json!({"type": map.kind, "max_entries": map.max_entries, "bytes_memlock": map.bytes_memlock})
        })
    };
    let total = |maps: &[MapInfo]| maps.iter().map(|map| map.bytes_memlock).sum::<u64>();
    println!("| kernel map | entries | MiB (bytes_memlock) |");
    println!("|---|---:|---:|");
    for (label, maps) in [
        ("default flags", &traffic.default_maps),
        ("--connect-slots N", &memory.maps),
    ] {
        for name in ["CONNECTS", "SYN_SOURCES"] {
            if let Some(found) = maps.iter().find(|map| map.name == name) {
                println!(
                    "| {name} ({label}) | {} | {:.2} |",
                    found.max_entries,
                    mib(found.bytes_memlock)
                );
            }
        }
        println!(
            "| every map of the agent ({label}) | | {:.2} |",
            mib(total(maps))
        );
    }
    println!(
        "| {} held | agent counted | not followed | ground truth | took s | RSS before → after MiB | per item B | anon before → after MiB | drop flows, events meanwhile |",
        memory.held
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<(String, &Held, &str)> = memory
        .syn_sent
        .iter()
        .map(|(variant, held)| {
            (
                format!("sockets in SYN_SENT (agent: {variant})"),
                held,
                "sockets in SYN_SENT (ss)",
            )
        })
        .collect();
    rows.push((
        "unanswered DNS questions".to_owned(),
        &memory.dns,
        "questions sent",
    ));
    let mut held_rows = Vec::new();
    for (name, held, truth) in rows {
        let per_item = (held.rss_after as f64 - held.rss_before as f64) / memory.held as f64;
        println!(
            "| {name} | {} | {} | {} | {:.1} | {:.1} → {:.1} | {per_item:.0} | {:.1} → {:.1} | {}, {} |",
            held.counted,
            held.not_followed,
            held.truth,
            held.seconds,
            mib(held.rss_before),
            mib(held.rss_after),
            mib(held.anon_before),
            mib(held.anon_after),
            held.drop_flows,
            held.events
        );
        held_rows.push(json!({
            "held": name,
            "count": memory.held,
            "agent_counted": held.counted,
            "not_followed": held.not_followed,
            "ground_truth": held.truth,
            "ground_truth_is": truth,
            "seconds_to_open": held.seconds,
            "rss_before_bytes": held.rss_before,
            "rss_after_bytes": held.rss_after,
            "rss_bytes_per_item": per_item,
            "rss_anon_before_bytes": held.anon_before,
            "rss_anon_after_bytes": held.anon_after,
            "drop_flows_after": held.drop_flows,
            "events_published_meanwhile": held.events,
        }));
    }
    println!("whole run: {:.0} s", took.as_secs_f64());

    let results = json!({
        "quick": scale.quick,
        "rounds": scale.rounds,
        "load_seconds": scale.load.as_secs_f64(),
        "seconds": took.as_secs_f64(),
        "traffic": traffic_rows,
        "bpf_programs": program_rows,
        "agent_saw": seen_rows,
        "latency_ms": latency_rows,
        "dns_timeout_seconds": latency.dns_timeout.as_secs_f64(),
        "memory": {
            "held": memory.held,
            "maps_default": {
                "CONNECTS": map(&traffic.default_maps, "CONNECTS"),
                "SYN_SOURCES": map(&traffic.default_maps, "SYN_SOURCES"),
                "all_bytes_memlock": total(&traffic.default_maps),
            },
            "maps_connect_slots": {
                "connect_slots": memory.held,
                "CONNECTS": map(&memory.maps, "CONNECTS"),
                "SYN_SOURCES": map(&memory.maps, "SYN_SOURCES"),
                "all_bytes_memlock": total(&memory.maps),
            },
            "agent_rss": held_rows,
        },
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("socket.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("written to {}", path.display());
    Ok(())
}
