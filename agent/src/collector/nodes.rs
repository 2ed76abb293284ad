//! The nodes a collector hears from: each node's connection state, the
//! highest sequence stored per agent run (so events sent again after a
//! reconnect are stored once), and its latest status report; and the
//! collector's `GetStatus`, which sums those reports.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use dropscope_proto::v1;

use super::metrics::CollectorMetrics;
use crate::{
    convert,
    fanout::Hub,
    serve::{StatusReport, status},
};

/// One node's agent as the collector knows it.
#[derive(Clone, Debug)]
struct Node {
    state: v1::NodeState,
    /// The agent run (its start time) the sequence numbers belong to.
    run: Option<pbjson_types::Timestamp>,
    /// Highest sequence stored from that run.
    stored: u64,
    /// The agent's latest status report.
    status: Option<v1::GetStatusResponse>,
}

/// Every node heard from since the collector started.
#[derive(Debug)]
pub struct Nodes {
    name: String,
    /// The collector's own counters, and the NATS stream it reads.
    collector: Option<(Arc<CollectorMetrics>, Option<String>)>,
    started: SystemTime,
    nodes: Mutex<BTreeMap<String, Node>>,
}

impl Nodes {
    /// No node yet; `name` is the collector's own name in its status.
    pub fn new(name: String) -> Self {
        Self {
            name,
            collector: None,
            started: SystemTime::now(),
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Also tells the collector's own counters in `GetStatus` (and the
    /// NATS stream it reads, if it does).
    pub fn with_counters(
        mut self,
        metrics: Arc<CollectorMetrics>,
        nats_stream: Option<String>,
    ) -> Self {
        self.collector = Some((metrics, nats_stream));
        self
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A node's agent said hello: connected; returns the highest sequence
    /// already stored from this run (0 for a new run).
    pub fn connected(&self, hello: &v1::Hello) -> (u64, v1::NodeState) {
        let mut nodes = self.lock();
        let node = nodes.entry(hello.node.clone()).or_insert_with(|| Node {
            state: v1::NodeState {
                node: hello.node.clone(),
                ..Default::default()
            },
            run: None,
            stored: 0,
            status: None,
        });
        if node.run != hello.started {
            node.run = hello.started;
            node.stored = 0;
        }
        node.state.connection = v1::NodeConnection::Connected as i32;
        node.state.since = Some(convert::timestamp(SystemTime::now()));
        node.state.error.clear();
        node.state.version.clone_from(&hello.version);
        (node.stored, node.state.clone())
    }

    /// Events up to `sequence` of `node`'s current run are stored (`count`
    /// of them new).
    pub fn stored(&self, node: &str, sequence: u64, count: u64) {
        if let Some(node) = self.lock().get_mut(node) {
            node.stored = node.stored.max(sequence);
            node.state.events += count;
        }
    }

    /// The node's latest status report.
    pub fn report(&self, node: &str, status: v1::GetStatusResponse) {
        if let Some(node) = self.lock().get_mut(node) {
            node.status = Some(status);
        }
    }

    /// The node's stream ended: unavailable, or failed with `error`.
    pub fn disconnected(&self, node: &str, error: Option<String>) -> Option<v1::NodeState> {
        let mut nodes = self.lock();
        let node = nodes.get_mut(node)?;
        node.state.connection = match error {
            Some(_) => v1::NodeConnection::Error,
            None => v1::NodeConnection::Unavailable,
        } as i32;
        node.state.error = error.unwrap_or_default();
        node.state.since = Some(convert::timestamp(SystemTime::now()));
        Some(node.state.clone())
    }

    /// Every node's state.
    pub fn states(&self) -> Vec<v1::NodeState> {
        self.lock()
            .values()
            .map(|node| node.state.clone())
            .collect()
    }
}

impl StatusReport for Nodes {
    fn report(&self, hub: &Hub) -> v1::GetStatusResponse {
        let nodes = self.lock();
        let mut kernel = v1::KernelCounters::default();
        let mut incidents = v1::IncidentStatus::default();
        let mut losses: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
        let mut active_flows = 0;
        for status in nodes.values().filter_map(|node| node.status.as_ref()) {
            if let Some(counters) = &status.kernel {
                add_kernel(&mut kernel, counters);
            }
            if let Some(counters) = &status.incidents {
                add_incidents(&mut incidents, counters);
            }
            for loss in &status.losses {
                let sum = losses.entry(loss.source).or_default();
                sum.0 += loss.events;
                sum.1 += loss.drops;
            }
            active_flows += status.active_flows;
        }
        // The collector's own readers are its subscribers.
        let (lost_events, lost_drops) = hub.subscriber_losses();
        let subscriber = losses.entry(v1::LossSource::Subscriber as i32).or_default();
        subscriber.0 += lost_events;
        subscriber.1 += lost_drops;
        let history = hub.history();
        let uptime = SystemTime::now()
            .duration_since(self.started)
            .unwrap_or_default();
        v1::GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: self.name.clone(),
            started: Some(convert::timestamp(self.started)),
            uptime: Some(pbjson_types::Duration {
                seconds: i64::try_from(uptime.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(uptime.subsec_nanos()).unwrap_or(0),
            }),
            hook: "collector".to_owned(),
            kernel: Some(kernel),
            events_published: history.published,
            active_flows,
            losses: losses
                .into_iter()
                .map(|(source, (events, drops))| v1::LossCount {
                    source,
                    events,
                    drops,
                })
                .collect(),
            history: Some(status::history_status(hub)),
            subscribers: status::subscriber_statuses(hub),
            ready: true,
            incidents: Some(incidents),
            nodes: nodes.values().map(|node| node.state.clone()).collect(),
            collector: self
                .collector
                .as_ref()
                .map(|(metrics, stream)| metrics.status(stream.as_deref())),
            ..Default::default()
        }
    }
}

fn add_kernel(sum: &mut v1::KernelCounters, node: &v1::KernelCounters) {
    sum.seen += node.seen;
    sum.filtered += node.filtered;
    sum.not_ip += node.not_ip;
    sum.aggregated += node.aggregated;
    sum.new_flows += node.new_flows;
    sum.overflow += node.overflow;
    sum.ring_full += node.ring_full;
    sum.lost_ring_full += node.lost_ring_full;
    sum.read_errors += node.read_errors;
    sum.recursion_misses += node.recursion_misses;
}

fn add_incidents(sum: &mut v1::IncidentStatus, node: &v1::IncidentStatus) {
    sum.connects_tracked += node.connects_tracked;
    sum.connects_untracked += node.connects_untracked;
    sum.connect_records += node.connect_records;
    sum.connect_ring_full += node.connect_ring_full;
    sum.syn_retransmits += node.syn_retransmits;
    sum.syns_left += node.syns_left;
    sum.synack_retransmits += node.synack_retransmits;
    sum.aborted_connects += node.aborted_connects;
    sum.dns_records += node.dns_records;
    sum.dns_ring_full += node.dns_ring_full;
    sum.dns_unreadable += node.dns_unreadable;
    sum.pending_dns += node.pending_dns;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::FanoutConfig;

    fn hello(node: &str, started: i64) -> v1::Hello {
        v1::Hello {
            node: node.to_owned(),
            version: "test".to_owned(),
            started: Some(pbjson_types::Timestamp {
                seconds: started,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn a_reconnect_of_the_same_run_resumes_and_a_new_run_starts_over() {
        let nodes = Nodes::new("collector".into());
        assert_eq!(nodes.connected(&hello("a", 100)).0, 0);
        nodes.stored("a", 42, 42);
        let _ = nodes.disconnected("a", None);
        assert_eq!(
            nodes.connected(&hello("a", 100)).0,
            42,
            "the same agent run: what is stored is not stored again"
        );
        assert_eq!(
            nodes.connected(&hello("a", 200)).0,
            0,
            "a restarted agent numbers from 1 again"
        );
    }

    #[test]
    fn states_follow_the_connection() {
        let nodes = Nodes::new("collector".into());
        let _ = nodes.connected(&hello("a", 1));
        let _ = nodes.connected(&hello("b", 1));
        let state = nodes
            .disconnected("b", Some("reset by peer".into()))
            .expect("known node");
        assert_eq!(state.connection, v1::NodeConnection::Error as i32);
        assert_eq!(state.error, "reset by peer");
        let state = nodes.disconnected("a", None).expect("known node");
        assert_eq!(state.connection, v1::NodeConnection::Unavailable as i32);
        assert!(nodes.disconnected("c", None).is_none());
    }

    #[test]
    fn status_sums_the_nodes_reports_and_lists_them() {
        let nodes = Nodes::new("collector".into());
        for node in ["a", "b"] {
            let _ = nodes.connected(&hello(node, 1));
            nodes.report(
                node,
                v1::GetStatusResponse {
                    kernel: Some(v1::KernelCounters {
                        seen: 10,
                        new_flows: 2,
                        ..Default::default()
                    }),
                    active_flows: 3,
                    losses: vec![v1::LossCount {
                        source: v1::LossSource::KernelRingFull as i32,
                        events: 0,
                        drops: 5,
                    }],
                    ..Default::default()
                },
            );
        }
        let hub = Hub::new(FanoutConfig::default(), "collector");
        let report = StatusReport::report(&nodes, &hub);
        let kernel = report.kernel.expect("kernel counters");
        assert_eq!((kernel.seen, kernel.new_flows), (20, 4));
        assert_eq!(report.active_flows, 6);
        let ring_full = report
            .losses
            .iter()
            .find(|loss| loss.source == v1::LossSource::KernelRingFull as i32)
            .expect("summed");
        assert_eq!(ring_full.drops, 10);
        assert_eq!(report.nodes.len(), 2);
        assert_eq!(report.node, "collector");
    }
}
