//! The agent's validated configuration: one section per step, each step
//! receiving only its own.

use std::{path::PathBuf, time::Duration};

use crate::{
    fanout::FanoutConfig,
    kernel::{DropReasonSet, Hook},
    print::events::Format,
};

/// Everything `dropscope agent` runs with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Loading and attaching.
    pub kernel: KernelConfig,
    /// Reading the kernel's maps.
    pub capture: CaptureConfig,
    /// Where cluster metadata comes from.
    pub metadata: MetadataConfig,
    /// The broadcast hub.
    pub fanout: FanoutConfig,
    /// Terminal output.
    pub output: Format,
    /// Records queued between capture and track.
    pub record_queue: usize,
    /// Stop after this long (None: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
    /// Turn on the kernel's BPF run-time statistics and log the hook's
    /// per-invocation cost.
    pub bpf_stats: bool,
}

/// Where the agent learns who the addresses are and which NetworkPolicies
/// apply.
#[derive(Clone, Debug, Default)]
pub enum MetadataConfig {
    /// None: events carry addresses only.
    #[default]
    Standalone,
    /// A `kubectl get ... -o yaml` List, read once at start.
    Snapshot(PathBuf),
    /// The live API server (kubeconfig or in-cluster service account),
    /// listed at start and watched.
    Kubernetes,
}

/// How the kernel programs are loaded.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Which hook to attach.
    pub hook: Hook,
    /// Which drop reasons to report.
    pub drop_reasons: DropReasonSet,
    /// Flows aggregated in the kernel at once.
    pub flow_slots: u32,
    /// Size of the ring buffer in bytes (a power of two).
    pub ring_bytes: u32,
}

/// How the kernel's maps are read.
#[derive(Clone, Copy, Debug)]
pub struct CaptureConfig {
    /// How often flow counters and statistics are sampled.
    pub sample_interval: Duration,
    /// A flow with no drop for this long is retired (its `end` event).
    pub idle_timeout: Duration,
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
    /// A zero interval.
    #[error("--sample-interval must be longer than zero")]
    SampleInterval,
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
