//! `dropscope agent`: capture drops on this node and stream them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    capture::CaptureConfig,
    client::Server,
    config::AgentConfig,
    export::ExportConfig,
    fanout::FanoutConfig,
    kernel::{DropReasonSet, Hook, KernelConfig, SocketConfig},
    pipeline,
    print::events::Format,
    serve::{Listen, ServeConfig, TlsFiles},
    track::incidents::IncidentConfig,
};

/// What the agent prints on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One readable line per event.
    #[default]
    #[value(alias = "text")]
    Compact,
    /// The proto3 JSON mapping of dropscope.v1.Event, one per line.
    Json,
    /// Aligned columns.
    Table,
    /// Nothing (events only through the API).
    None,
}

/// Capture drops on this node and stream them as events.
///
/// Loads the kernel programs, serves the dropscope.v1.Observer gRPC API
/// (`dropscope observe` reads it), prints one line per dropped flow (then
/// count updates) until Ctrl-C or SIGTERM, and detaches everything on exit.
///
/// Example: `sudo dropscope agent --output json --drop-reasons default,+NOT_SPECIFIED`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Drop reasons to report: `default`, `all`, names (`NETFILTER_DROP`,
    /// `+NAME` adds, `-NAME` removes) or numbers, comma-separated, applied
    /// in order. Names are this kernel's `enum skb_drop_reason`.
    #[arg(long, default_value = "default", env = "DROPSCOPE_DROP_REASONS")]
    pub drop_reasons: DropReasonSet,
    /// Output on stdout: compact lines, JSON lines (the proto3 JSON mapping
    /// of dropscope.v1.Event, as `observe -o json` prints), a table, or none.
    #[arg(short, long, value_enum, default_value_t = Output::Compact, env = "DROPSCOPE_OUTPUT")]
    pub output: Output,
    /// Where the gRPC API listens: `unix:PATH` or `HOST:PORT` (plaintext
    /// only on a Unix socket or loopback; elsewhere give --tls-cert and
    /// --tls-key), or `none`.
    #[arg(long, default_value = "unix:/run/dropscope/dropscope.sock", env = "DROPSCOPE_LISTEN", value_parser = parse_listen)]
    pub listen: OrNone<Listen>,
    /// PEM certificate chain of the API (reloaded when the file changes).
    #[arg(long, env = "DROPSCOPE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the API certificate.
    #[arg(long, env = "DROPSCOPE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    #[arg(long, env = "DROPSCOPE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Where Prometheus metrics, /healthz and /readyz are served over HTTP
    /// (`HOST:PORT`), or `none`.
    #[arg(long, default_value = "127.0.0.1:9965", env = "DROPSCOPE_METRICS_LISTEN", value_parser = parse_metrics_listen)]
    pub metrics_listen: OrNone<SocketAddr>,
    /// The node name every event carries; default the NODE_NAME variable
    /// (the DaemonSet sets it from the downward API), then the host name.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Events kept in memory for `observe --last`/`--since` and as the
    /// slack a slow reader has before it misses events.
    #[arg(long, default_value_t = FanoutConfig::default().history, env = "DROPSCOPE_HISTORY")]
    pub history: usize,
    /// Kernel hook: tp_btf with fallback to the classic tracepoint (auto),
    /// or one of them only.
    #[arg(long, value_enum, default_value_t = Hook::Auto, env = "DROPSCOPE_HOOK")]
    pub hook: Hook,
    /// Flows aggregated in the kernel at once; beyond that, drops are
    /// counted in overflow aggregates by reason, location and destination.
    #[arg(long, default_value_t = dropscope_abi::maps::FLOW_SLOTS, env = "DROPSCOPE_FLOW_SLOTS")]
    pub flow_slots: u32,
    /// Kernel ring buffer size in bytes (power of two).
    #[arg(long, default_value_t = dropscope_abi::maps::EVENTS_BYTES, env = "DROPSCOPE_RING_BYTES")]
    pub ring_bytes: u32,
    /// How often flow counts are read and updates emitted (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, env = "DROPSCOPE_SAMPLE_INTERVAL")]
    pub sample_interval: Duration,
    /// A flow with no drop for this long ends (final counts).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "DROPSCOPE_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,
    /// Stop after this long instead of waiting for a signal.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The whole stop after SIGTERM/SIGINT (detach, drain, last events
    /// out) must finish within this, then the agent exits anyway; keep it
    /// below the pod's terminationGracePeriodSeconds. A second signal exits
    /// at once.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration, env = "DROPSCOPE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Duration,
    /// Enable the kernel's BPF run-time statistics and log the hook's
    /// average cost per invocation.
    #[arg(long, env = "DROPSCOPE_BPF_STATS")]
    pub bpf_stats: bool,
    /// Cluster metadata from a file: the output of `kubectl get
    /// namespaces,pods,services,endpointslices,networkpolicies,nodes -A -o
    /// yaml` (or json). Events then name pods, Services and the
    /// NetworkPolicy behind each drop.
    #[arg(long, env = "DROPSCOPE_SNAPSHOT", conflicts_with = "kubernetes")]
    pub snapshot: Option<PathBuf>,
    /// Cluster metadata from the live API server (kubeconfig, or the pod's
    /// service account), listed at start and then watched.
    #[arg(long, env = "DROPSCOPE_KUBERNETES")]
    pub kubernetes: bool,
    /// How the API server is watched.
    #[command(flatten)]
    pub watch: super::watch::WatchArgs,
    /// Where events are explained: `node` (here, with --snapshot or
    /// --kubernetes) or `collector` (events leave with addresses only and
    /// the collector, run with --kubernetes, explains them: one set of
    /// cluster-wide watches instead of one per node). `collector` needs
    /// --collector or --nats.
    #[arg(long, value_enum, default_value_t = Enrich::Node, env = "DROPSCOPE_ENRICH")]
    pub enrich: Enrich,
    /// Do not follow TCP connects (the `sock:inet_sock_set_state` and
    /// `tcp:tcp_retransmit_skb` tracepoints and the cgroup connect hooks):
    /// no CONNECT_* incidents.
    #[arg(long, env = "DROPSCOPE_NO_CONNECTS")]
    pub no_connects: bool,
    /// Do not attach the cgroup `connect4`/`connect6` hooks: connects are
    /// still followed, without the destination `connect()` asked for.
    #[arg(long, env = "DROPSCOPE_NO_CGROUP_HOOKS")]
    pub no_cgroup_hooks: bool,
    /// Do not attach tc programs to this node's interfaces: no DNS
    /// incidents, and no sight of SYNs leaving (no BEYOND_NODE).
    #[arg(long, env = "DROPSCOPE_NO_TC")]
    pub no_tc: bool,
    /// OpenTelemetry export of every event and counter.
    #[command(flatten)]
    pub otlp: super::otlp::OtlpArgs,
    /// Push every event to a `dropscope collector` at this address
    /// (`HOST:PORT`, HOST an IP address or a DNS name resolved at each
    /// connect, or `unix:PATH`), as well as serving them here; events
    /// held while it is unreachable are sent when it is.
    #[arg(long, env = "DROPSCOPE_COLLECTOR")]
    pub collector: Option<Server>,
    /// PEM CA bundle that signed the collector's certificate (TLS to the
    /// collector; plaintext without it).
    #[arg(long, env = "DROPSCOPE_COLLECTOR_TLS_CA")]
    pub collector_tls_ca: Option<PathBuf>,
    /// PEM client certificate for a collector that requires one.
    #[arg(long, env = "DROPSCOPE_COLLECTOR_TLS_CERT", requires_all = ["collector_tls_key", "collector_tls_ca"])]
    pub collector_tls_cert: Option<PathBuf>,
    /// PEM private key of --collector-tls-cert.
    #[arg(
        long,
        env = "DROPSCOPE_COLLECTOR_TLS_KEY",
        requires = "collector_tls_cert"
    )]
    pub collector_tls_key: Option<PathBuf>,
    /// The name the collector's certificate carries, when it differs from
    /// the address.
    #[arg(long, env = "DROPSCOPE_COLLECTOR_TLS_SERVER_NAME")]
    pub collector_tls_server_name: Option<String>,
    /// NATS JetStream (publish every event to the cluster's stream).
    #[command(flatten)]
    pub nats: super::nats::NatsArgs,
    /// The cgroup v2 mount to attach the connect hooks at and resolve
    /// cgroup ids under; default: found in /proc/self/mountinfo (unified or
    /// hybrid layout), else mounted at /run/dropscope/cgroup2.
    #[arg(long, env = "DROPSCOPE_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// Sockets in SYN_SENT followed at once in the kernel; beyond that, new
    /// connects are counted as not followed (a CONNECTS_UNTRACKED loss).
    #[arg(long, default_value_t = dropscope_abi::maps::CONNECT_SLOTS, env = "DROPSCOPE_CONNECT_SLOTS")]
    pub connect_slots: u32,
    /// A DNS question with no answer this long after its last try is
    /// DNS_UNANSWERED.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "DROPSCOPE_DNS_TIMEOUT")]
    pub dns_timeout: Duration,
    /// DNS questions followed at once; beyond that, new ones are counted
    /// as not followed (a DNS_UNTRACKED loss).
    #[arg(long, default_value_t = IncidentConfig::default().dns_pending, env = "DROPSCOPE_DNS_PENDING")]
    pub dns_pending: usize,
}

/// Where events are explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Enrich {
    /// On the node, by the agent.
    Node,
    /// At the collector.
    Collector,
}

/// Runs the agent until a signal (or `--duration`).
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.enrich == Enrich::Collector {
        anyhow::ensure!(
            args.snapshot.is_none() && !args.kubernetes,
            "--enrich collector: the collector holds the cluster's metadata; drop --snapshot and --kubernetes here"
        );
        anyhow::ensure!(
            args.collector.is_some() || args.nats.nats.is_some(),
            "--enrich collector: events must reach a collector: give --collector ADDR or --nats URL"
        );
    }
    let config = AgentConfig {
        kernel: KernelConfig {
            hook: args.hook,
            drop_reasons: args.drop_reasons,
            flow_slots: args.flow_slots,
            ring_bytes: args.ring_bytes,
            sockets: (!args.no_connects || !args.no_tc).then_some(SocketConfig {
                connects: !args.no_connects,
                cgroup_root: None,
                cgroup_hooks: !args.no_connects && !args.no_cgroup_hooks,
                tc: !args.no_tc,
                connect_slots: args.connect_slots,
            }),
        },
        cgroup_root: args.cgroup_root,
        export: args.collector.map(|collector| ExportConfig {
            collector,
            tls_ca: args.collector_tls_ca,
            identity: args.collector_tls_cert.zip(args.collector_tls_key),
            server_name: args.collector_tls_server_name,
        }),
        nats: args.nats.config()?,
        otlp: args.otlp.config(),
        incidents: IncidentConfig {
            dns_timeout: args.dns_timeout,
            dns_pending: args.dns_pending,
        },
        capture: CaptureConfig {
            sample_interval: args.sample_interval,
            idle_timeout: args.idle_timeout,
        },
        metadata: args.watch.metadata(args.snapshot, args.kubernetes),
        fanout: FanoutConfig {
            history: args.history,
        },
        output: match args.output {
            Output::Compact => Some(Format::Compact),
            Output::Json => Some(Format::Json),
            Output::Table => Some(Format::Table),
            Output::None => None,
        },
        serve: ServeConfig {
            listen: args.listen.0,
            tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles {
                cert,
                key,
                ca: args.tls_client_ca,
            }),
        },
        metrics_listen: args.metrics_listen.0,
        node: args
            .node_name
            .filter(|name| !name.is_empty())
            .unwrap_or_else(host_name),
        record_queue: 8192,
        duration: args.duration,
        shutdown_timeout: args.shutdown_timeout,
        bpf_stats: args.bpf_stats,
    }
    .validate()?;
    Ok(pipeline::run_agent(config).await?)
}

/// A flag value that may be `none` (the feature off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrNone<T>(pub Option<T>);

fn parse_listen(input: &str) -> Result<OrNone<Listen>, String> {
    if input == "none" {
        return Ok(OrNone(None));
    }
    input
        .parse()
        .map(|listen| OrNone(Some(listen)))
        .map_err(|error: crate::serve::listen::ListenError| error.to_string())
}

fn parse_metrics_listen(input: &str) -> Result<OrNone<SocketAddr>, String> {
    if input == "none" {
        return Ok(OrNone(None));
    }
    match input.parse::<Listen>() {
        Ok(Listen::Tcp(address)) => Ok(OrNone(Some(address))),
        Ok(Listen::Unix(_)) => Err(format!(
            "{input:?}: metrics are served over TCP (HOST:PORT)"
        )),
        Err(error) => Err(error.to_string()),
    }
}

/// The host name, from the kernel.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}
