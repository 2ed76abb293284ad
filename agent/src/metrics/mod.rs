//! Prometheus metrics and HTTP health: a sink. Receives every event the
//! agent publishes ([`Metrics::record`]), the kernel's cumulative counters
//! ([`Metrics::set_kernel`], [`Metrics::set_program_runtime`]), the metadata
//! store's size, and subscriber counts and losses; emits OpenMetrics text
//! ([`Metrics::encode`]) or the classic Prometheus text format derived from
//! it ([`Metrics::encode_classic`]), and serves whichever a scraper asks for
//! with `/healthz` and `/readyz` ([`serve`]).
//!
//! Every metric is named `dropscope_…` with its unit in the name:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `dropscope_drops_total` | counter | `reason`, `verdict`, `namespace` |
//! | `dropscope_drop_flows_total` | counter | `reason` |
//! | `dropscope_incidents_total` | counter | `kind`, `place`, `namespace` |
//! | `dropscope_events_total` | counter | `kind` |
//! | `dropscope_lost_drops_total`, `dropscope_lost_events_total` | counter | `source` |
//! | `dropscope_kernel_hook_calls_total` | counter | `outcome` |
//! | `dropscope_kernel_recursion_misses_total` | counter | |
//! | `dropscope_connects_total` | counter | `outcome` |
//! | `dropscope_syn_retransmits_total`, `dropscope_synack_retransmits_total` | counter | |
//! | `dropscope_dns_messages_total` | counter | `outcome` |
//! | `dropscope_pending_dns_queries` | gauge | |
//! | `dropscope_active_flows` | gauge | |
//! | `dropscope_bpf_program_runs_total`, `dropscope_bpf_program_run_time_seconds_total` | counter | `program` |
//! | `dropscope_metadata_objects` | gauge | `kind` |
//! | `dropscope_metadata_synced` | gauge (0 or 1) | |
//! | `dropscope_subscribers` | gauge | |
//! | `dropscope_build_info` | gauge (1) | `version` |
//!
//! # Label cardinality
//!
//! Every label has a bounded set of values:
//! - `reason`: the running kernel's `enum skb_drop_reason` names (about 130;
//!   `UNKNOWN_<code>` for a number the kernel's BTF does not name).
//! - `verdict`: `allow`, `deny_egress`, `deny_ingress`, `deny_both`, or
//!   `none` when the drop has no NetworkPolicy explanation (5 values).
//! - `namespace`: the source pod's namespace, else the destination pod's,
//!   else the Service's, else `none`. At most
//!   [`MetricsConfig::max_namespaces`] (default 200) distinct namespaces are
//!   kept, the first ones seen; drops in any later namespace are counted
//!   under `other` (`none` and `other` do not count against the bound). So
//!   `dropscope_drops_total` has at most reasons × 5 × (max_namespaces + 2)
//!   series.
//! - `kind` (incidents): `CONNECT_TIMEOUT`, `CONNECT_REFUSED`,
//!   `CONNECT_RETRIED`, `DNS_UNANSWERED`, `DNS_ERROR`; `place`:
//!   `THIS_NODE`, `BEYOND_NODE`, `REFUSED`, `UNSEEN`, `NOT_FAILED`;
//!   `namespace` as for drops (the client pod's, else the destination's),
//!   sharing the same bound.
//! - `kind` (events): `drop_new`, `drop_update`, `drop_end`, `loss`,
//!   `incident_new`, `incident_update`.
//! - `source`: `kernel_ring_full`, `kernel_recursion`, `kernel_unreadable`,
//!   `undecodable`, `pipeline`, `connects_untracked`, `dns_untracked`,
//!   `dns_unreadable`, `subscriber`.
//! - `outcome`: `filtered`, `not_ip`, `aggregated`, `new_flow`,
//!   `overflow`, `ring_full`, `lost_ring_full`, `read_error`.
//! - `outcome` (connects): `tracked`, `untracked` (the kernel's SYN_SENT
//!   table was full), `ring_full`, `reported` (a record reached user
//!   space), `aborted` (closed by their owner before an answer).
//! - `outcome` (DNS messages): `seen`, `ring_full`, `unreadable`.
//! - `program`: the agent's BPF programs (a handful).
//! - `kind` (metadata): the object kinds the metadata store holds.
//!
//! Kernel counters arrive cumulative since the programs were loaded; they
//! are exported as counters increased by the difference from the previous
//! value, so they stay monotonic. A value lower than the previous one means
//! the counter restarted (programs reloaded): the new value counts whole.

pub mod catalog;
mod classic;
mod http;
mod namespace;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

pub use self::http::serve;
use self::{
    catalog::{Catalog, MetricInfo},
    namespace::NamespaceLabels,
};
/// What the agent must have done before `/readyz` answers 200 (the
/// model's type, re-exported for the endpoint's callers).
pub use crate::model::Readiness;
use crate::model::{
    DropEvent, Event, EventKind, Identity, Incident, KernelStats, LossEvent, LossSource,
    SocketStats, verdict::Explanation,
};

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener's local address could not be read.
    #[error("metrics listener: reading its local address: {source}")]
    LocalAddress {
        /// The socket error.
        source: std::io::Error,
    },
    /// Serving HTTP failed.
    #[error("metrics endpoint on {address}: {source}")]
    Serve {
        /// The address it listened on.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Settings of the metrics sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The most distinct values of the `namespace` label of
    /// `dropscope_drops_total`; drops in further namespaces are counted
    /// under `other`.
    pub max_namespaces: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_namespaces: 200,
        }
    }
}

/// Labels of `dropscope_drops_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: Arc<str>,
    verdict: &'static str,
    namespace: Arc<str>,
}

/// Labels of `dropscope_drop_flows_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Arc<str>,
}

/// Labels of `dropscope_incidents_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    kind: &'static str,
    place: &'static str,
    namespace: Arc<str>,
}

/// Labels of `dropscope_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventKindLabel {
    kind: &'static str,
}

/// Labels of `dropscope_metadata_objects`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectKindLabel {
    kind: Arc<str>,
}

/// Labels of the loss counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// Labels of `dropscope_kernel_hook_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Labels of the socket hooks' counters (`dropscope_connects_total`,
/// `dropscope_dns_messages_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SocketOutcomeLabel {
    outcome: &'static str,
}

/// Labels of the BPF program run-time counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabel {
    program: Arc<str>,
}

/// Labels of `dropscope_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// A gauge of a count.
type CountGauge = Gauge<u64, AtomicU64>;

/// Event kinds, as the `kind` label of `dropscope_events_total` names them.
const EVENT_KINDS: [&str; 4] = ["drop_new", "drop_update", "drop_end", "loss"];

/// Loss sources, as the `source` label names them.
const LOSS_SOURCES: [&str; 6] = [
    "kernel_ring_full",
    "kernel_recursion",
    "kernel_unreadable",
    "undecodable",
    "pipeline",
    "subscriber",
];

/// Hook outcomes, as the `outcome` label names them.
const OUTCOMES: [&str; 8] = [
    "filtered",
    "not_ip",
    "aggregated",
    "new_flow",
    "overflow",
    "ring_full",
    "lost_ring_full",
    "read_error",
];

/// The agent's Prometheus metrics. Shared as `Arc<Metrics>`: every method
/// takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// What `registry` holds, for the reference docs.
    catalog: Vec<MetricInfo>,
    drops: Family<DropLabels, Counter>,
    drop_flows: Family<ReasonLabel, Counter>,
    incidents: Family<IncidentLabels, Counter>,
    events: Family<EventKindLabel, Counter>,
    lost_drops: Family<SourceLabel, Counter>,
    lost_events: Family<SourceLabel, Counter>,
    hook_calls: Family<OutcomeLabel, Counter>,
    recursion_misses: Counter,
    connects: Family<SocketOutcomeLabel, Counter>,
    syn_retransmits: Counter,
    synack_retransmits: Counter,
    dns_messages: Family<SocketOutcomeLabel, Counter>,
    pending_dns: CountGauge,
    /// The socket counters as last set, to turn them into increments.
    sockets: Mutex<(SocketStats, u64)>,
    active_flows: CountGauge,
    program_runs: Family<ProgramLabel, Counter>,
    program_run_time: Family<ProgramLabel, Counter<f64, AtomicU64>>,
    metadata_objects: Family<ObjectKindLabel, CountGauge>,
    metadata_synced: CountGauge,
    subscribers: CountGauge,
    namespaces: NamespaceLabels,
    /// The kernel counters as last set, to turn them into increments.
    kernel: Mutex<KernelStats>,
    /// Per program, the run count and run time (ns) as last set.
    programs: Mutex<HashMap<Arc<str>, (u64, u64)>>,
}

impl Metrics {
    /// Registers every metric, at zero (`dropscope_build_info` at 1).
    pub fn new(config: MetricsConfig) -> Self {
        // Help texts end without a period: the encoder adds one.
        let mut catalog = Catalog::with_prefix("dropscope");

        let drops = Family::<DropLabels, Counter>::default();
        catalog.register(
            "drops",
            format!(
                "Dropped packets, by kernel drop reason, NetworkPolicy verdict (none without an \
                 explanation) and namespace (the source pod's, else the destination pod's, else \
                 the Service's, else none; at most {} namespaces, later ones counted as other)",
                config.max_namespaces
            ),
            drops.clone(),
        );
        let drop_flows = Family::<ReasonLabel, Counter>::default();
        catalog.register(
            "drop_flows",
            "Dropped flows first seen, by kernel drop reason",
            drop_flows.clone(),
        );
        let incidents = Family::<IncidentLabels, Counter>::default();
        catalog.register(
            "incidents",
            "Incidents decided (connect timeouts and refusals, connects that needed retries, \
             unanswered and failed DNS), by kind, where the flow died, and namespace (the \
             client pod's, else the destination's)",
            incidents.clone(),
        );
        let events = Family::<EventKindLabel, Counter>::default();
        catalog.register(
            "events",
            "Events published, by kind (drop_new, drop_update, drop_end, loss, incident_new, \
             incident_update)",
            events.clone(),
        );
        let lost_drops = Family::<SourceLabel, Counter>::default();
        catalog.register(
            "lost_drops",
            "Dropped packets not reported in any event, by where they were lost \
             (for kernel_recursion: hook invocations the kernel skipped)",
            lost_drops.clone(),
        );
        let lost_events = Family::<SourceLabel, Counter>::default();
        catalog.register(
            "lost_events",
            "Events lost, by where (pipeline queues, slow subscribers)",
            lost_events.clone(),
        );
        let connects = Family::<SocketOutcomeLabel, Counter>::default();
        catalog.register(
            "connects",
            "TCP connects seen entering SYN_SENT, by outcome (tracked, untracked: the kernel's \
             table was full, ring_full, reported: a decided connect reached user space, aborted: \
             closed by its owner before an answer)",
            connects.clone(),
        );
        let syn_retransmits = Counter::default();
        catalog.register(
            "syn_retransmits",
            "SYN retransmissions of followed connects",
            syn_retransmits.clone(),
        );
        let synack_retransmits = Counter::default();
        catalog.register(
            "synack_retransmits",
            "SYN-ACKs retransmitted by listening sockets of this node (the client's final ACK \
             went missing)",
            synack_retransmits.clone(),
        );
        let dns_messages = Family::<SocketOutcomeLabel, Counter>::default();
        catalog.register(
            "dns_messages",
            "DNS messages seen on watched interfaces, by outcome (seen, ring_full, unreadable)",
            dns_messages.clone(),
        );
        let pending_dns = CountGauge::default();
        catalog.register(
            "pending_dns_queries",
            "DNS questions waiting for an answer",
            pending_dns.clone(),
        );
        let hook_calls = Family::<OutcomeLabel, Counter>::default();
        catalog.register(
            "kernel_hook_calls",
            "Calls of the kernel drop hook, by outcome",
            hook_calls.clone(),
        );
        let recursion_misses = Counter::default();
        catalog.register(
            "kernel_recursion_misses",
            "Hook invocations the kernel skipped because the program was already running on \
             that CPU",
            recursion_misses.clone(),
        );
        let active_flows = CountGauge::default();
        catalog.register(
            "active_flows",
            "Dropped flows tracked now",
            active_flows.clone(),
        );
        let program_runs = Family::<ProgramLabel, Counter>::default();
        catalog.register(
            "bpf_program_runs",
            "Runs of each BPF program (only with --bpf-stats)",
            program_runs.clone(),
        );
        let program_run_time = Family::<ProgramLabel, Counter<f64, AtomicU64>>::default();
        catalog.register_with_unit(
            "bpf_program_run_time",
            "Time spent running each BPF program (only with --bpf-stats)",
            Unit::Seconds,
            program_run_time.clone(),
        );
        let metadata_objects = Family::<ObjectKindLabel, CountGauge>::default();
        catalog.register(
            "metadata_objects",
            "Cluster metadata objects held, by kind",
            metadata_objects.clone(),
        );
        let metadata_synced = CountGauge::default();
        catalog.register(
            "metadata_synced",
            "1 once the first sync of cluster metadata is done, else 0",
            metadata_synced.clone(),
        );
        let subscribers = CountGauge::default();
        catalog.register("subscribers", "Open Observe streams", subscribers.clone());
        let build_info = Family::<VersionLabel, CountGauge>::default();
        catalog.register(
            "build_info",
            "Always 1; the agent's version as a label",
            build_info.clone(),
        );
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        // Series with a fixed set of label values start at zero, so that
        // rates over them are defined from the first scrape.
        for kind in EVENT_KINDS {
            events.get_or_create(&EventKindLabel { kind }).inc_by(0);
        }
        for source in LOSS_SOURCES {
            lost_drops.get_or_create(&SourceLabel { source }).inc_by(0);
            lost_events.get_or_create(&SourceLabel { source }).inc_by(0);
        }
        for outcome in OUTCOMES {
            hook_calls
                .get_or_create(&OutcomeLabel { outcome })
                .inc_by(0);
        }

        let (registry, catalog) = catalog.into_parts();
        Self {
            registry,
            catalog,
            drops,
            drop_flows,
            incidents,
            events,
            lost_drops,
            lost_events,
            hook_calls,
            recursion_misses,
            connects,
            syn_retransmits,
            synack_retransmits,
            dns_messages,
            pending_dns,
            sockets: Mutex::new((SocketStats::default(), 0)),
            active_flows,
            program_runs,
            program_run_time,
            metadata_objects,
            metadata_synced,
            subscribers,
            namespaces: NamespaceLabels::new(config.max_namespaces),
            kernel: Mutex::new(KernelStats::default()),
            programs: Mutex::new(HashMap::new()),
        }
    }

    /// Every event the agent publishes passes here once (never lossy).
    pub fn record(&self, event: &Event) {
        match event {
            Event::Drop(drop) => self.record_drop(drop),
            Event::Loss(loss) => self.record_loss(loss),
            Event::Incident(incident) => self.record_incident(incident),
        }
    }

    fn record_incident(&self, incident: &Incident) {
        let kind = match incident.event {
            EventKind::New => "incident_new",
            EventKind::Update | EventKind::End => "incident_update",
        };
        self.events.get_or_create(&EventKindLabel { kind }).inc();
        if incident.event == EventKind::New {
            self.incidents
                .get_or_create(&IncidentLabels {
                    kind: incident.kind.name(),
                    place: incident.place.name(),
                    namespace: self.namespaces.label(incident_namespace(incident)),
                })
                .inc();
        }
    }

    fn record_drop(&self, drop: &DropEvent) {
        let kind = match drop.kind {
            EventKind::New => "drop_new",
            EventKind::Update => "drop_update",
            EventKind::End => "drop_end",
        };
        self.events.get_or_create(&EventKindLabel { kind }).inc();
        let reason: Arc<str> = match &drop.reason.name {
            Some(name) => Arc::clone(name),
            None => drop.reason.to_string().into(),
        };
        if drop.kind == EventKind::New {
            self.drop_flows
                .get_or_create(&ReasonLabel {
                    reason: Arc::clone(&reason),
                })
                .inc();
        }
        if drop.new_packets > 0 {
            let explanation = drop.explanation.as_deref();
            let labels = DropLabels {
                reason,
                verdict: explanation.map_or("none", |explanation| explanation.verdict.as_str()),
                namespace: self.namespaces.label(explanation.and_then(namespace_of)),
            };
            self.drops.get_or_create(&labels).inc_by(drop.new_packets);
        }
    }

    fn record_loss(&self, loss: &LossEvent) {
        self.events
            .get_or_create(&EventKindLabel { kind: "loss" })
            .inc();
        let source = match loss.source {
            LossSource::KernelRingFull => "kernel_ring_full",
            LossSource::KernelRecursion => "kernel_recursion",
            LossSource::KernelUnreadable => "kernel_unreadable",
            LossSource::Undecodable => "undecodable",
            LossSource::Pipeline => "pipeline",
            LossSource::ConnectsUntracked => "connects_untracked",
            LossSource::DnsUntracked => "dns_untracked",
            LossSource::DnsUnreadable => "dns_unreadable",
            // One subscriber's losses arrive through `subscriber_lost`;
            // history that was already pushed out is not a loss of the agent.
            LossSource::Subscriber | LossSource::History => return,
        };
        self.add_loss(source, loss.lost, loss.lost_drops);
    }

    fn add_loss(&self, source: &'static str, events: u64, drops: u64) {
        let labels = SourceLabel { source };
        self.lost_events.get_or_create(&labels).inc_by(events);
        self.lost_drops.get_or_create(&labels).inc_by(drops);
    }

    /// Kernel counters (cumulative since load) and flows tracked now.
    pub fn set_kernel(&self, stats: &KernelStats, active_flows: u64) {
        self.active_flows.set(active_flows);
        let mut previous = lock(&self.kernel);
        let outcomes = [
            ("filtered", previous.filtered, stats.filtered),
            ("not_ip", previous.not_ip, stats.not_ip),
            ("aggregated", previous.aggregated, stats.aggregated),
            ("new_flow", previous.new_flows, stats.new_flows),
            ("overflow", previous.overflow, stats.overflow),
            ("ring_full", previous.ring_full, stats.ring_full),
            (
                "lost_ring_full",
                previous.lost_ring_full,
                stats.lost_ring_full,
            ),
            ("read_error", previous.read_errors, stats.read_errors),
        ];
        for (outcome, before, now) in outcomes {
            let delta = increase(before, now);
            if delta > 0 {
                self.hook_calls
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc_by(delta);
            }
        }
        self.recursion_misses
            .inc_by(increase(previous.recursion_misses, stats.recursion_misses));
        *previous = *stats;
    }

    /// The socket hooks' counters (cumulative since load), connects closed
    /// by their owner so far, and the DNS questions pending now.
    pub fn set_sockets(&self, stats: &SocketStats, aborted: u64, pending_dns: u64) {
        self.pending_dns.set(pending_dns);
        let mut previous = lock(&self.sockets);
        let (before, aborted_before) = *previous;
        let connects = [
            ("tracked", before.connects_tracked, stats.connects_tracked),
            (
                "untracked",
                before.connects_untracked,
                stats.connects_untracked,
            ),
            (
                "ring_full",
                before.connect_ring_full,
                stats.connect_ring_full,
            ),
            ("reported", before.connect_records, stats.connect_records),
            ("aborted", aborted_before, aborted),
        ];
        for (outcome, before, now) in connects {
            let delta = increase(before, now);
            if delta > 0 {
                self.connects
                    .get_or_create(&SocketOutcomeLabel { outcome })
                    .inc_by(delta);
            }
        }
        let dns = [
            ("seen", before.dns_records, stats.dns_records),
            ("ring_full", before.dns_ring_full, stats.dns_ring_full),
            ("unreadable", before.dns_unreadable, stats.dns_unreadable),
        ];
        for (outcome, before, now) in dns {
            let delta = increase(before, now);
            if delta > 0 {
                self.dns_messages
                    .get_or_create(&SocketOutcomeLabel { outcome })
                    .inc_by(delta);
            }
        }
        self.syn_retransmits
            .inc_by(increase(before.syn_retransmits, stats.syn_retransmits));
        self.synack_retransmits.inc_by(increase(
            before.synack_retransmits,
            stats.synack_retransmits,
        ));
        *previous = (*stats, aborted);
    }

    /// BPF program run time when --bpf-stats is on: cumulative run count and ns.
    pub fn set_program_runtime(&self, program: &str, run_count: u64, run_time_ns: u64) {
        let mut programs = lock(&self.programs);
        let (name, (runs_before, nanos_before)) = match programs.get_key_value(program) {
            Some((name, previous)) => (Arc::clone(name), *previous),
            None => (Arc::from(program), (0, 0)),
        };
        let labels = ProgramLabel {
            program: Arc::clone(&name),
        };
        self.program_runs
            .get_or_create(&labels)
            .inc_by(increase(runs_before, run_count));
        let nanos = increase(nanos_before, run_time_ns);
        self.program_run_time
            .get_or_create(&labels)
            .inc_by(nanos as f64 / 1e9);
        programs.insert(name, (run_count, run_time_ns));
    }

    /// Metadata objects by kind name and whether the first sync is done.
    pub fn set_metadata(&self, objects: &[(&str, u64)], synced: bool) {
        for (kind, count) in objects {
            self.metadata_objects
                .get_or_create(&ObjectKindLabel {
                    kind: (*kind).into(),
                })
                .set(*count);
        }
        self.metadata_synced.set(u64::from(synced));
    }

    /// A subscriber lost events (and the drops they stood for).
    pub fn subscriber_lost(&self, events: u64, drops: u64) {
        self.add_loss("subscriber", events, drops);
    }

    /// Open Observe streams now.
    pub fn set_subscribers(&self, open: u64) {
        self.subscribers.set(open);
    }

    /// Every metric registered: name on the wire, type, help.
    pub fn catalog(&self) -> &[MetricInfo] {
        &self.catalog
    }

    /// The OpenMetrics text exposition of every metric, `# EOF` included.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The classic Prometheus text exposition (format 0.0.4) of every
    /// metric: [`Metrics::encode`] with counter families named like their
    /// `_total` samples and no `# UNIT` or `# EOF` lines.
    pub fn encode_classic(&self) -> Result<String, std::fmt::Error> {
        Ok(classic::from_openmetrics(&self.encode()?))
    }
}

/// The namespace a drop is counted under: the source pod's, else the
/// destination pod's, else the Service's.
fn namespace_of(explanation: &Explanation) -> Option<&str> {
    pod_namespace(&explanation.source.identity)
        .or_else(|| pod_namespace(&explanation.destination.identity))
        .or_else(|| explanation.service.as_ref().and_then(service_namespace))
        .or_else(|| service_namespace(&explanation.destination.identity))
}

/// The namespace an incident is counted under: the client pod's, else the
/// destination's.
fn incident_namespace(incident: &Incident) -> Option<&str> {
    incident
        .source
        .as_ref()
        .and_then(pod_namespace)
        .or_else(|| incident.destination.as_ref().and_then(pod_namespace))
        .or_else(|| incident.destination.as_ref().and_then(service_namespace))
}

fn pod_namespace(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Pod { namespace, .. } => Some(namespace),
        _ => None,
    }
}

fn service_namespace(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Service { namespace, .. } => Some(namespace),
        _ => None,
    }
}

/// How much a cumulative counter grew from `before` to `now`; a lower value
/// means the counter restarted from zero, so all of it is new.
fn increase(before: u64, now: u64) -> u64 {
    if now >= before { now - before } else { now }
}

/// Locks a mutex; a panic while it was held leaves plain counters, still
/// usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
