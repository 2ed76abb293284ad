//! `dropscope agent`: capture drops on this node and stream them.

use std::{path::PathBuf, time::Duration};

use crate::{
    config::{AgentConfig, CaptureConfig, KernelConfig, MetadataConfig},
    fanout::FanoutConfig,
    kernel::{DropReasonSet, Hook},
    pipeline,
    print::events::Format,
};

/// Capture drops on this node and stream them as events.
///
/// Loads the kernel programs, prints one line per dropped flow (then count
/// updates) until Ctrl-C or SIGTERM, and detaches everything on exit.
///
/// Example: `sudo dropscope agent --output json --drop-reasons default,+NOT_SPECIFIED`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Drop reasons to report: `default`, `all`, names (`NETFILTER_DROP`,
    /// `+NAME` adds, `-NAME` removes) or numbers, comma-separated, applied
    /// in order. Names are this kernel's `enum skb_drop_reason`.
    #[arg(long, default_value = "default", env = "DROPSCOPE_DROP_REASONS")]
    pub drop_reasons: DropReasonSet,
    /// Output format on stdout.
    #[arg(short, long, value_enum, default_value_t = Format::Text, env = "DROPSCOPE_OUTPUT")]
    pub output: Format,
    /// Kernel hook: tp_btf with fallback to the classic tracepoint (auto),
    /// or one of them only.
    #[arg(long, value_enum, default_value_t = Hook::Auto, env = "DROPSCOPE_HOOK")]
    pub hook: Hook,
    /// Flows aggregated in the kernel at once; beyond that, drops are
    /// reported one by one.
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
}

/// Runs the agent until a signal (or `--duration`).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = AgentConfig {
        kernel: KernelConfig {
            hook: args.hook,
            drop_reasons: args.drop_reasons,
            flow_slots: args.flow_slots,
            ring_bytes: args.ring_bytes,
        },
        capture: CaptureConfig {
            sample_interval: args.sample_interval,
            idle_timeout: args.idle_timeout,
        },
        metadata: match (args.snapshot, args.kubernetes) {
            (Some(path), _) => MetadataConfig::Snapshot(path),
            (None, true) => MetadataConfig::Kubernetes,
            (None, false) => MetadataConfig::Standalone,
        },
        fanout: FanoutConfig::default(),
        output: args.output,
        record_queue: 8192,
        duration: args.duration,
        bpf_stats: args.bpf_stats,
    }
    .validate()?;
    Ok(pipeline::run_agent(config).await?)
}
