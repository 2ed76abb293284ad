//! What `GetStatus` reports, gathered from where each fact lives: the hub
//! (history, subscribers, losses), the tracker's status channel (kernel
//! counters, flows, the socket hooks' counters behind incidents), the
//! kernel as loaded (hook, features, programs) and the metadata store.

use std::{
    sync::{Arc, OnceLock},
    time::SystemTime,
};

use dropscope_proto::v1;
use tokio::sync::{RwLock, watch};

use crate::{
    convert,
    enrich::{
        freshness::KindState,
        store::{Kind, Store},
    },
    fanout::Hub,
    model::{Readiness, TrackStatus},
};

/// What the kernel side is, once loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelInfo {
    /// The hook attached (`tp_btf/kfree_skb`, …).
    pub hook: String,
    /// `uname -r`.
    pub release: String,
    /// Features detected.
    pub features: Vec<String>,
    /// Programs attached, by name.
    pub programs: Vec<String>,
}

/// Where metadata comes from and the store, when there is one.
#[derive(Clone, Default)]
pub struct MetadataState {
    /// The source.
    pub source: MetadataSource,
    /// The store (`None` without metadata).
    pub store: Option<Arc<RwLock<Store>>>,
}

/// Where metadata comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataSource {
    /// None.
    #[default]
    None,
    /// A snapshot file.
    Snapshot,
    /// The live API server.
    Kubernetes,
}

/// Everything the API reports about the agent; cheap to clone.
#[derive(Clone)]
pub struct AgentState {
    /// This node's name.
    pub node: String,
    /// When the agent started.
    pub started: SystemTime,
    /// Set once the programs are attached.
    pub kernel: Arc<OnceLock<KernelInfo>>,
    /// The tracker's latest status.
    pub track: watch::Receiver<TrackStatus>,
    /// Readiness.
    pub ready: watch::Receiver<Readiness>,
    /// Metadata, set once loaded.
    pub metadata: Arc<OnceLock<MetadataState>>,
    /// Metadata source as configured (known before it is loaded).
    pub metadata_source: MetadataSource,
    /// Drop reason names of the running kernel, set once loaded.
    pub reasons: Arc<OnceLock<Vec<String>>>,
}

impl AgentState {
    /// The `GetStatus` answer now.
    pub async fn report(&self, hub: &Hub) -> v1::GetStatusResponse {
        let kernel = self.kernel.get().cloned().unwrap_or_default();
        let track = *self.track.borrow();
        let stats = track.kernel;
        let sockets = track.sockets;
        let history = hub.history();
        // Every reader since start, closed ones included.
        let (lost_events, lost_drops) = hub.subscriber_losses();
        let loss = |source: v1::LossSource, events, drops| v1::LossCount {
            source: source as i32,
            events,
            drops,
        };
        let losses = vec![
            loss(v1::LossSource::KernelRingFull, 0, stats.lost_ring_full),
            loss(v1::LossSource::KernelRecursion, 0, stats.recursion_misses),
            loss(
                v1::LossSource::KernelUnreadable,
                0,
                stats.not_ip + stats.read_errors,
            ),
            loss(v1::LossSource::Undecodable, 0, stats.undecodable),
            loss(v1::LossSource::Subscriber, lost_events, lost_drops),
            // As the stream counts them: connects and DNS messages, not drops.
            loss(
                v1::LossSource::ConnectsUntracked,
                sockets.connects_untracked + sockets.connect_ring_full,
                0,
            ),
            loss(
                v1::LossSource::DnsUntracked,
                sockets.dns_ring_full + track.dns_untracked,
                0,
            ),
            loss(v1::LossSource::DnsUnreadable, sockets.dns_unreadable, 0),
        ];
        let now = SystemTime::now();
        let uptime = now.duration_since(self.started).unwrap_or_default();
        v1::GetStatusResponse {
            nodes: Vec::new(),
            collector: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: self.node.clone(),
            started: Some(convert::timestamp(self.started)),
            uptime: Some(pbjson_types::Duration {
                seconds: i64::try_from(uptime.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(uptime.subsec_nanos()).unwrap_or(0),
            }),
            hook: kernel.hook,
            kernel_release: kernel.release,
            kernel_features: kernel.features,
            programs: kernel.programs,
            kernel: Some(v1::KernelCounters {
                seen: stats.seen,
                filtered: stats.filtered,
                not_ip: stats.not_ip,
                aggregated: stats.aggregated,
                new_flows: stats.new_flows,
                overflow: stats.overflow,
                ring_full: stats.ring_full,
                lost_ring_full: stats.lost_ring_full,
                read_errors: stats.read_errors,
                recursion_misses: stats.recursion_misses,
            }),
            events_published: history.published,
            active_flows: track.active_flows,
            losses,
            metadata: Some(self.metadata_status().await),
            history: Some(history_status(hub)),
            subscribers: subscriber_statuses(hub),
            ready: self.ready.borrow().is_ready(),
            incidents: Some(incident_status(&track)),
        }
    }

    async fn metadata_status(&self) -> v1::MetadataStatus {
        let source = match self.metadata_source {
            MetadataSource::None => v1::MetadataSource::None,
            MetadataSource::Snapshot => v1::MetadataSource::Snapshot,
            MetadataSource::Kubernetes => v1::MetadataSource::Kubernetes,
        };
        let mut objects = std::collections::BTreeMap::new();
        let mut kinds = Vec::new();
        let mut stale = false;
        if let Some(store) = self.metadata.get().and_then(|state| state.store.as_ref()) {
            let store = store.read().await;
            for (kind, count) in store.counts().by_kind() {
                objects.insert(kind.to_owned(), count as u64);
            }
            stale = store.freshness().any_stale();
            kinds = store
                .freshness()
                .kinds()
                .map(|(kind, state, since)| kind_sync(kind, state, since))
                .collect();
        }
        v1::MetadataStatus {
            source: source as i32,
            synced: self.ready.borrow().metadata_synced,
            objects,
            kinds,
            stale,
        }
    }
}

/// One kind's freshness, for `GetStatus`.
fn kind_sync(kind: Kind, state: &KindState, entered: SystemTime) -> v1::KindSync {
    let (state, since, reason) = match state {
        KindState::Listing => (v1::KindSyncState::Listing, entered, String::new()),
        KindState::Synced => (v1::KindSyncState::Synced, entered, String::new()),
        // Since the outage began, not since its latest failure.
        KindState::Stale { since, error } => (v1::KindSyncState::Stale, *since, error.clone()),
        KindState::Forbidden { reason } => (v1::KindSyncState::Forbidden, entered, reason.clone()),
    };
    v1::KindSync {
        kind: kind.resource().to_owned(),
        state: state as i32,
        since: Some(convert::timestamp(since)),
        reason,
    }
}

/// The hub's history, for `GetStatus` (an agent's or a collector's).
pub fn history_status(hub: &Hub) -> v1::HistoryStatus {
    let history = hub.history();
    v1::HistoryStatus {
        capacity: history.capacity as u64,
        held: history.held as u64,
        evicted: history.evicted,
        oldest: history.oldest.map(convert::timestamp),
    }
}

/// The hub's open readers, for `GetStatus`.
pub fn subscriber_statuses(hub: &Hub) -> Vec<v1::SubscriberStatus> {
    hub.subscribers()
        .into_iter()
        .map(|subscriber| v1::SubscriberStatus {
            id: subscriber.id,
            peer: subscriber.peer,
            since: Some(convert::timestamp(subscriber.since)),
            sent_events: subscriber.sent_events,
            lost_events: subscriber.lost_events,
            lost_drops: subscriber.lost_drops,
        })
        .collect()
}

/// The incident side's counters, from the tracker's latest status.
fn incident_status(track: &TrackStatus) -> v1::IncidentStatus {
    let sockets = &track.sockets;
    v1::IncidentStatus {
        connects_tracked: sockets.connects_tracked,
        connects_untracked: sockets.connects_untracked,
        connect_records: sockets.connect_records,
        connect_ring_full: sockets.connect_ring_full,
        syn_retransmits: sockets.syn_retransmits,
        syns_left: sockets.syns_left,
        synack_retransmits: sockets.synack_retransmits,
        aborted_connects: track.aborted_connects,
        dns_records: sockets.dns_records,
        dns_ring_full: sockets.dns_ring_full,
        dns_unreadable: sockets.dns_unreadable,
        pending_dns: track.pending_dns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SocketStats;

    #[test]
    fn incident_status_copies_every_counter() {
        let track = TrackStatus {
            sockets: SocketStats {
                connects_tracked: 1,
                connects_untracked: 2,
                connect_records: 3,
                connect_ring_full: 4,
                syn_retransmits: 5,
                dns_records: 6,
                dns_ring_full: 7,
                syns_left: 8,
                synack_retransmits: 9,
                dns_unreadable: 10,
            },
            aborted_connects: 11,
            pending_dns: 12,
            ..TrackStatus::default()
        };
        assert_eq!(
            incident_status(&track),
            v1::IncidentStatus {
                connects_tracked: 1,
                connects_untracked: 2,
                connect_records: 3,
                connect_ring_full: 4,
                syn_retransmits: 5,
                syns_left: 8,
                synack_retransmits: 9,
                aborted_connects: 11,
                dns_records: 6,
                dns_ring_full: 7,
                dns_unreadable: 10,
                pending_dns: 12,
            }
        );
    }
}
