//! Joins kernel records into flow events: a `new` event on a flow's first
//! drop, `update`s with cumulative counts while it keeps being dropped, an
//! `end` with the final counts when the kernel retires it; and loss events
//! when the kernel reports drops it could not deliver.
//!
//! Drops beyond the kernel's flow table arrive as overflow buckets, each
//! followed like a flow (`new` when it starts growing, `update`s, `end`
//! when idle) with counts relative to where it stood when it started.
//!
//! Memory is bounded by the kernel's slot count plus its overflow buckets:
//! a flow is held from its first record to its final sample.
//!
//! Incidents (connects the kernel decided, DNS exchanges) are joined by
//! flow in [`incidents`], which also sees every drop event; a one-second
//! tick decides DNS exchanges that went unanswered.

pub mod incidents;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, watch};

use self::incidents::{Decisions, IncidentConfig, Incidents};
use crate::model::{
    DropEvent, DropPlace, DropRecord, Event, EventKind, FlowSample, LossEvent, LossSource,
    Overflow, OverflowSample, Record, SocketStats, TrackStatus, record::KernelStats,
};

/// How often pending DNS exchanges are checked against their timeout.
const TICK: Duration = Duration::from_secs(1);

/// The flow tracker.
#[derive(Debug)]
pub struct Tracker {
    flows: HashMap<u32, Arc<DropEvent>>,
    next_flow_id: u64,
    stats: KernelStats,
    /// Drops of flows whose first record could not be decoded, reported as
    /// `Undecodable` losses when their slot's final count arrives.
    orphaned: u64,
    /// Overflow buckets being reported, by bucket.
    overflowing: HashMap<u32, OverflowFlow>,
    /// Each bucket's cumulative counts when its last aggregate ended: the
    /// next one counts from there.
    overflow_base: HashMap<u32, Base>,
    /// Connects, DNS exchanges and their joins with drops.
    incidents: Incidents,
    /// The socket hooks' counters as last reported.
    socket_stats: SocketStats,
    /// DNS queries the incident table could not follow, so far.
    dns_untracked: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

/// An overflow bucket reported as a flow.
#[derive(Debug)]
struct OverflowFlow {
    event: Arc<DropEvent>,
    /// The bucket's cumulative counts when this aggregate began.
    base: Base,
}

/// A bucket's cumulative packets, bytes and folded packets at a point.
type Base = (u64, u64, u64);

impl Tracker {
    /// A tracker with no flows and default incident settings.
    pub fn new() -> Self {
        Self::with_incidents(IncidentConfig::default())
    }

    /// A tracker with no flows deciding incidents as `config` says.
    pub fn with_incidents(config: IncidentConfig) -> Self {
        Self {
            flows: HashMap::new(),
            next_flow_id: 0,
            stats: KernelStats::default(),
            orphaned: 0,
            overflowing: HashMap::new(),
            overflow_base: HashMap::new(),
            incidents: Incidents::new(config),
            socket_stats: SocketStats::default(),
            dns_untracked: 0,
        }
    }

    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.flows.len() + self.overflowing.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.overflowing.is_empty()
    }

    /// The events one record produces.
    pub fn on_record(&mut self, record: Record) -> Vec<Event> {
        let mut events = match record {
            Record::Drop(drop) => vec![self.on_drop(drop)],
            Record::Sample(sample) => self.on_sample(sample),
            Record::Overflow(sample) => self.on_overflow(sample),
            Record::Stats(stats) => self.on_stats(stats),
            Record::Connect(seen) => {
                let decisions = self.incidents.on_connect(seen, &mut self.next_flow_id);
                return self.decided(decisions);
            }
            Record::Dns(seen) => {
                let decisions = self.incidents.on_dns(&seen, &mut self.next_flow_id);
                return self.decided(decisions);
            }
            Record::SocketStats(stats) => return self.on_socket_stats(stats),
        };
        let mut joined = Vec::new();
        for event in &events {
            if let Event::Drop(drop) = event {
                let decisions = self.incidents.on_drop(drop, &mut self.next_flow_id);
                joined.extend(self.decided(decisions));
            }
        }
        events.extend(joined);
        events
    }

    /// Time passes: DNS exchanges past their timeout are decided.
    pub fn on_tick(&mut self, now: SystemTime) -> Vec<Event> {
        let decisions = self.incidents.on_tick(now, &mut self.next_flow_id);
        self.decided(decisions)
    }

    /// Incidents as events, and the queries the DNS table could not follow
    /// as a loss.
    fn decided(&mut self, decisions: Decisions) -> Vec<Event> {
        let mut events: Vec<Event> = decisions
            .incidents
            .into_iter()
            .map(Event::Incident)
            .collect();
        if decisions.dns_untracked > 0 {
            self.dns_untracked += decisions.dns_untracked;
            events.push(Event::Loss(LossEvent {
                source: LossSource::DnsUntracked,
                lost: decisions.dns_untracked,
                total: self.dns_untracked + self.socket_stats.dns_ring_full,
                lost_drops: 0,
                total_drops: 0,
                time: SystemTime::now(),
            }));
        }
        events
    }

    /// The socket hooks' counters: what they could not follow, as losses.
    fn on_socket_stats(&mut self, stats: SocketStats) -> Vec<Event> {
        let now = SystemTime::now();
        let before = self.socket_stats;
        let mut events = Vec::new();
        let mut loss = |source, lost: u64, total: u64| {
            if lost > 0 {
                events.push(Event::Loss(LossEvent {
                    source,
                    lost,
                    total,
                    lost_drops: 0,
                    total_drops: 0,
                    time: now,
                }));
            }
        };
        loss(
            LossSource::ConnectsUntracked,
            (stats.connects_untracked + stats.connect_ring_full)
                .saturating_sub(before.connects_untracked + before.connect_ring_full),
            stats.connects_untracked + stats.connect_ring_full,
        );
        loss(
            LossSource::DnsUntracked,
            stats.dns_ring_full.saturating_sub(before.dns_ring_full),
            stats.dns_ring_full + self.dns_untracked,
        );
        loss(
            LossSource::DnsUnreadable,
            stats.dns_unreadable.saturating_sub(before.dns_unreadable),
            stats.dns_unreadable,
        );
        self.socket_stats = stats;
        events
    }

    /// Connects closed by their owner before an answer (neither a success
    /// nor a failure), so far.
    pub fn aborted_connects(&self) -> u64 {
        self.incidents.aborted_connects
    }

    fn on_drop(&mut self, drop: DropRecord) -> Event {
        self.next_flow_id += 1;
        let event = Arc::new(DropEvent {
            flow_id: self.next_flow_id,
            kind: EventKind::New,
            reason: drop.reason,
            location: drop.location,
            packet: drop.packet,
            conntrack: drop.conntrack,
            tcp_flags: drop.tcp_flags,
            tcp_flags_seen: drop.tcp_flags,
            netns: drop.netns,
            ifindex: drop.ifindex,
            ingress_ifindex: drop.ingress_ifindex,
            place: drop.place,
            packets: 1,
            bytes: u64::from(drop.len),
            new_packets: 1,
            first_seen: drop.time,
            last_seen: drop.time,
            overflow: None,
            explanation: None,
        });
        self.flows.insert(drop.slot, Arc::clone(&event));
        Event::Drop(event)
    }

    fn on_sample(&mut self, sample: FlowSample) -> Vec<Event> {
        let Some(flow) = self.flows.get(&sample.slot) else {
            // A slot whose first record could not be decoded: its drops are
            // in no event, so its final count is a loss.
            tracing::trace!(slot = sample.slot, "sample for a slot with no flow");
            if !sample.ended || sample.packets == 0 {
                return Vec::new();
            }
            self.orphaned += sample.packets;
            return vec![Event::Loss(LossEvent {
                source: LossSource::Undecodable,
                lost: 0,
                total: 0,
                lost_drops: sample.packets,
                total_drops: self.orphaned + self.stats.undecodable,
                time: SystemTime::now(),
            })];
        };
        let mut event = DropEvent::clone(flow);
        event.kind = if sample.ended {
            EventKind::End
        } else {
            EventKind::Update
        };
        event.new_packets = sample.packets.saturating_sub(flow.packets);
        event.packets = sample.packets;
        event.bytes = sample.bytes;
        event.first_seen = sample.first;
        event.last_seen = sample.last;
        event.tcp_flags_seen = sample.tcp_flags;
        let event = Arc::new(event);
        if sample.ended {
            self.flows.remove(&sample.slot);
        } else {
            self.flows.insert(sample.slot, Arc::clone(&event));
        }
        vec![Event::Drop(event)]
    }

    /// An overflow bucket's report: `new` when it starts growing (with an
    /// `end` right after when the report is already its last), `update`,
    /// `end`. An aggregate after the first in its bucket says it started at
    /// the sample that found it growing (the kernel keeps no per-aggregate
    /// start); its flags are the bucket's since load.
    fn on_overflow(&mut self, sample: OverflowSample) -> Vec<Event> {
        if sample.ended && !self.overflowing.contains_key(&sample.bucket) {
            let mut opened = sample.clone();
            opened.ended = false;
            let mut events = self.on_overflow(opened);
            events.extend(self.on_overflow(sample));
            return events;
        }
        let (packets, bytes) = (sample.packets, sample.bytes);
        let event = match self.overflowing.get(&sample.bucket) {
            Some(flow) => {
                let mut event = DropEvent::clone(&flow.event);
                event.kind = if sample.ended {
                    EventKind::End
                } else {
                    EventKind::Update
                };
                event.new_packets = (packets - flow.base.0).saturating_sub(event.packets);
                event.packets = packets - flow.base.0;
                event.bytes = bytes - flow.base.1;
                event.last_seen = sample.last;
                event.tcp_flags_seen = sample.tcp_flags;
                event.overflow = Some(Overflow {
                    bucket: sample.bucket,
                    folded_packets: sample.folded.saturating_sub(flow.base.2),
                });
                event
            }
            None => {
                let base = self
                    .overflow_base
                    .get(&sample.bucket)
                    .copied()
                    .unwrap_or((0, 0, 0));
                self.next_flow_id += 1;
                DropEvent {
                    flow_id: self.next_flow_id,
                    kind: if sample.ended {
                        EventKind::End
                    } else {
                        EventKind::New
                    },
                    reason: sample.reason,
                    location: sample.location,
                    packet: sample.packet,
                    conntrack: None,
                    tcp_flags: sample.tcp_flags,
                    tcp_flags_seen: sample.tcp_flags,
                    netns: 0,
                    ifindex: 0,
                    ingress_ifindex: 0,
                    place: DropPlace::default(),
                    packets: packets.saturating_sub(base.0),
                    bytes: bytes.saturating_sub(base.1),
                    new_packets: packets.saturating_sub(base.0),
                    first_seen: if base.0 == 0 {
                        sample.first
                    } else {
                        sample.last
                    },
                    last_seen: sample.last,
                    overflow: Some(Overflow {
                        bucket: sample.bucket,
                        folded_packets: sample.folded.saturating_sub(base.2),
                    }),
                    explanation: None,
                }
            }
        };
        let event = Arc::new(event);
        if sample.ended {
            self.overflowing.remove(&sample.bucket);
            self.overflow_base
                .insert(sample.bucket, (packets, bytes, sample.folded));
        } else {
            let base = self
                .overflowing
                .get(&sample.bucket)
                .map(|flow| flow.base)
                .or_else(|| self.overflow_base.get(&sample.bucket).copied())
                .unwrap_or((0, 0, 0));
            self.overflowing.insert(
                sample.bucket,
                OverflowFlow {
                    event: Arc::clone(&event),
                    base,
                },
            );
        }
        vec![Event::Drop(event)]
    }

    fn on_stats(&mut self, stats: KernelStats) -> Vec<Event> {
        let now = SystemTime::now();
        let mut events = Vec::new();
        // Kernel losses are drops that never became events.
        let mut loss = |source, before: u64, after: u64| {
            if after > before {
                events.push(Event::Loss(LossEvent {
                    source,
                    lost: 0,
                    total: 0,
                    lost_drops: after - before,
                    total_drops: after,
                    time: now,
                }));
            }
        };
        loss(
            LossSource::KernelRingFull,
            self.stats.lost_ring_full,
            stats.lost_ring_full,
        );
        loss(
            LossSource::KernelRecursion,
            self.stats.recursion_misses,
            stats.recursion_misses,
        );
        loss(
            LossSource::KernelUnreadable,
            self.stats.not_ip + self.stats.read_errors,
            stats.not_ip + stats.read_errors,
        );
        if stats.undecodable > self.stats.undecodable {
            events.push(Event::Loss(LossEvent {
                source: LossSource::Undecodable,
                lost: 0,
                total: 0,
                lost_drops: stats.undecodable - self.stats.undecodable,
                total_drops: stats.undecodable + self.orphaned,
                time: now,
            }));
        }
        tracing::trace!(?stats, "kernel statistics");
        self.stats = stats;
        events
    }

    /// The latest kernel statistics.
    pub fn kernel_stats(&self) -> KernelStats {
        self.stats
    }

    /// Runs until `input` closes (or `output` does), sending every event
    /// on and its status to `status`; returns the last kernel statistics.
    /// Waits when `output` is full: the pressure goes back to the kernel
    /// ring, where losses are counted.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Record>,
        output: mpsc::Sender<Event>,
        status: watch::Sender<TrackStatus>,
    ) -> KernelStats {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (events, is_stats) = tokio::select! {
                record = input.recv() => {
                    let Some(record) = record else { break };
                    let is_stats = matches!(record, Record::Stats(_) | Record::SocketStats(_));
                    (self.on_record(record), is_stats)
                }
                _ = tick.tick() => (self.on_tick(SystemTime::now()), false),
            };
            for event in events {
                if output.send(event).await.is_err() {
                    return self.stats;
                }
            }
            if is_stats {
                status.send_replace(TrackStatus {
                    kernel: self.stats,
                    active_flows: (self.flows.len() + self.overflowing.len()) as u64,
                    sockets: self.socket_stats,
                    aborted_connects: self.incidents.aborted_connects,
                    pending_dns: self.incidents.held().0 as u64,
                    dns_untracked: self.dns_untracked,
                });
            }
        }
        self.stats
    }
}

#[cfg(test)]
mod tests;
