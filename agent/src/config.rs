//! The agent's validated configuration: composes the sections each step
//! owns (`KernelConfig` in `kernel`, `CaptureConfig` in `capture`, …) and
//! checks what no single step can; each step receives only its own.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    capture::CaptureConfig, enrich::MetadataConfig, export::ExportConfig, fanout::FanoutConfig,
    kernel::KernelConfig, print::events::Format, serve::ServeConfig,
    track::incidents::IncidentConfig,
};

/// The largest `--history` (events of about a kilobyte each).
pub const MAX_HISTORY: usize = 10_000_000;

/// Everything `dropscope agent` runs with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Loading and attaching.
    pub kernel: KernelConfig,
    /// Reading the kernel's maps.
    pub capture: CaptureConfig,
    /// The cgroup v2 mount given on the command line (`None`: found, or
    /// mounted, at start).
    pub cgroup_root: Option<PathBuf>,
    /// Deciding incidents.
    pub incidents: IncidentConfig,
    /// Pushing to a collector, when one is given.
    pub export: Option<ExportConfig>,
    /// Publishing to NATS JetStream, when a server is given.
    pub nats: Option<crate::nats::NatsConfig>,
    /// Exporting to OpenTelemetry, when a receiver is given.
    pub otlp: Option<crate::otlp::OtlpConfig>,
    /// Where cluster metadata comes from.
    pub metadata: MetadataConfig,
    /// The broadcast hub.
    pub fanout: FanoutConfig,
    /// Terminal output (`None`: nothing on stdout).
    pub output: Option<Format>,
    /// The gRPC API.
    pub serve: ServeConfig,
    /// Where Prometheus metrics and health are served over HTTP.
    pub metrics_listen: Option<SocketAddr>,
    /// The node name events carry.
    pub node: String,
    /// Records queued between capture and track.
    pub record_queue: usize,
    /// Stop after this long (None: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
    /// The whole stop (detach, drain, last events out) must finish within
    /// this; then the agent exits anyway.
    pub shutdown_timeout: Duration,
    /// Turn on the kernel's BPF run-time statistics and log the hook's
    /// per-invocation cost.
    pub bpf_stats: bool,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Ring buffer size not a power of two of at least a page.
    #[error("--ring-bytes {0} must be a power of two and at least 4096")]
    RingBytes(u32),
    /// Zero-sized table.
    #[error("--flow-slots must be at least 1")]
    FlowSlots,
    /// Zero-sized connect table.
    #[error("--connect-slots must be at least 1")]
    ConnectSlots,
    /// Zero-sized DNS table or timeout.
    #[error("--dns-pending and --dns-timeout must be more than zero")]
    Dns,
    /// A zero interval.
    #[error("--sample-interval must be longer than zero")]
    SampleInterval,
    /// A history too large to be meant.
    #[error("--history {0} is more than {max} events", max = MAX_HISTORY)]
    History(usize),
    /// No node name.
    #[error("--node-name is empty (and neither NODE_NAME nor the host name gave one)")]
    NodeName,
    /// Idle timeout shorter than the sample interval.
    #[error("--idle-timeout ({idle:?}) must be at least --sample-interval ({sample:?})")]
    IdleTimeout {
        /// The idle timeout.
        idle: Duration,
        /// The sample interval.
        sample: Duration,
    },
}

impl AgentConfig {
    /// Checks the values that are wrong whatever the kernel.
    pub fn validate(self) -> Result<Self, Error> {
        let ring = self.kernel.ring_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(Error::RingBytes(ring));
        }
        if self.kernel.flow_slots == 0 {
            return Err(Error::FlowSlots);
        }
        if self
            .kernel
            .sockets
            .as_ref()
            .is_some_and(|sockets| sockets.connect_slots == 0)
        {
            return Err(Error::ConnectSlots);
        }
        if self.incidents.dns_pending == 0 || self.incidents.dns_timeout.is_zero() {
            return Err(Error::Dns);
        }
        if self.fanout.history > MAX_HISTORY {
            return Err(Error::History(self.fanout.history));
        }
        if self.node.trim().is_empty() {
            return Err(Error::NodeName);
        }
        let capture = self.capture;
        if capture.sample_interval.is_zero() {
            return Err(Error::SampleInterval);
        }
        if capture.idle_timeout < capture.sample_interval {
            return Err(Error::IdleTimeout {
                idle: capture.idle_timeout,
                sample: capture.sample_interval,
            });
        }
        Ok(self)
    }
}
