//! Joins across nodes: an incident one node decided died beyond it
//! (`BEYOND_NODE`, or `UNSEEN`: it saw no drop and no way out) and a
//! kernel drop of the same flow on another node become one cluster
//! incident: the incident again, `event_kind` JOINED, `place` OTHER_NODE,
//! `remote` naming the node with its drops, `explanation` the policy
//! verdict made there.
//!
//! Receives every event the nodes push, passes each on at once, and emits
//! the joined incidents after them. Matching is by tuple ([`tuples`]):
//! across a NAT the drop's node did (its conntrack original and reply) and
//! a DNAT the client's node did (by the client's address and port). Time:
//! a drop joins when its first and last drop lie within `window` (default
//! 5 s, for clocks that differ between nodes) of the incident's first and
//! last evidence. Each side waits for its partner at most `wait` (default
//! 2 min, longer than Linux's default connect timeout of ~127 s, since a
//! connect's incident is decided when it gives up while its drops arrive
//! from the first SYN on) after it last arrived; an incident that waited in
//! vain counts as unjoined. At most [`MAX_INCIDENTS`] incidents and
//! [`MAX_DROPS`] drops wait; beyond that the one closest to its deadline
//! leaves early and is counted (`dropscope_collector_join_lost_total`).

mod pending;
#[cfg(test)]
mod tests;
mod tuples;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use dropscope_proto::v1;
use tokio::sync::{mpsc, watch};

use self::{
    pending::Pending,
    tuples::{DropTuples, FlowTuple, Key},
};
use super::metrics::{CollectorMetrics, Waiting};
use crate::convert;

/// Incidents waiting for a drop, at most.
pub const MAX_INCIDENTS: usize = 16_384;
/// Drops waiting for an incident, at most.
pub const MAX_DROPS: usize = 65_536;
/// How often deadlines are checked.
const TICK: Duration = Duration::from_secs(1);

/// How joins are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinConfig {
    /// How far apart in time (each node's own clock) a drop and an incident
    /// may be.
    pub window: Duration,
    /// How long an incident or a drop waits for its partner after it last
    /// arrived.
    pub wait: Duration,
    /// Incidents waiting, at most.
    pub max_incidents: usize,
    /// Drops waiting, at most.
    pub max_drops: usize,
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5),
            wait: Duration::from_secs(120),
            max_incidents: MAX_INCIDENTS,
            max_drops: MAX_DROPS,
        }
    }
}

/// A node's flow or incident: the node's name and its own id.
type Id = (String, u64);

/// A drop waiting: the node's event itself, shared with the merge and
/// the hub (a copy per waiting drop would double the collector's memory
/// at full rate), and its tuples.
#[derive(Debug)]
struct WaitingDrop {
    event: Arc<v1::Event>,
    tuples: DropTuples,
}

impl WaitingDrop {
    /// The drop (always there: only drop events are made waiting drops).
    fn drop(&self) -> Option<&v1::DropEvent> {
        match &self.event.event {
            Some(v1::event::Event::Drop(drop)) => Some(drop),
            _ => None,
        }
    }
}

/// An incident waiting.
#[derive(Debug)]
struct WaitingIncident {
    incident: v1::Incident,
    tuples: Vec<FlowTuple>,
    key: Key,
}

/// Entries under a key.
type Index = HashMap<Key, HashSet<Id>>;

fn index(index: &mut Index, key: Key, id: &Id) {
    index.entry(key).or_default().insert(id.clone());
}

fn unindex(index: &mut Index, key: &Key, id: &Id) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// The join's state: what waits, indexed by the client's address and port.
pub struct Joins {
    config: JoinConfig,
    drops: Pending<Id, WaitingDrop>,
    drops_by_key: Index,
    incidents: Pending<Id, WaitingIncident>,
    incidents_by_key: Index,
    /// Incidents joined within the wait: their later states (an UPDATE)
    /// are not joined again.
    joined: Pending<Id, ()>,
    metrics: Arc<CollectorMetrics>,
}

impl Joins {
    /// Nothing waiting yet; counts go to `metrics`.
    pub fn new(config: JoinConfig, metrics: Arc<CollectorMetrics>) -> Self {
        Self {
            config,
            drops: Pending::new(config.max_drops),
            drops_by_key: Index::new(),
            incidents: Pending::new(config.max_incidents),
            incidents_by_key: Index::new(),
            joined: Pending::new(config.max_incidents),
            metrics,
        }
    }

    /// Takes one node's event at `now` (the collector's clock); returns
    /// the cluster incidents it completes.
    pub fn offer(&mut self, event: &Arc<v1::Event>, now: SystemTime) -> Vec<v1::Event> {
        let joined = match &event.event {
            Some(v1::event::Event::Drop(drop)) => self.offer_drop(event, drop, now),
            Some(v1::event::Event::Incident(incident)) => self
                .offer_incident(&event.node, incident, now)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        self.set_pending();
        joined
    }

    /// Lets go of everything whose wait ended at `now`; incidents among
    /// them count as unjoined.
    pub fn expire(&mut self, now: SystemTime) {
        for (id, waiting) in self.drops.expire(now) {
            for key in waiting.tuples.keys() {
                unindex(&mut self.drops_by_key, &key, &id);
            }
        }
        for (id, waiting) in self.incidents.expire(now) {
            unindex(&mut self.incidents_by_key, &waiting.key, &id);
            self.metrics.unjoined();
        }
        let _ = self.joined.expire(now);
        self.set_pending();
    }

    fn set_pending(&self) {
        self.metrics
            .set_pending(Waiting::Incident, self.incidents.len());
        self.metrics.set_pending(Waiting::Drop, self.drops.len());
    }

    fn offer_incident(
        &mut self,
        node: &str,
        incident: &v1::Incident,
        now: SystemTime,
    ) -> Option<v1::Event> {
        let id = (node.to_owned(), incident.incident_id);
        // A later state of the incident replaces the one waiting.
        if let Some(waiting) = self.incidents.remove(&id) {
            unindex(&mut self.incidents_by_key, &waiting.key, &id);
        }
        let candidate = [v1::FailurePlace::BeyondNode, v1::FailurePlace::Unseen]
            .map(|place| place as i32)
            .contains(&incident.place)
            && incident.event_kind != v1::IncidentEventKind::Joined as i32
            && self.joined.get(&id).is_none();
        if !candidate {
            return None;
        }
        let tuples = tuples::of_incident(incident);
        let key = tuples::incident_key(&tuples)?;
        if let Some(joined) = self.join(node, incident, &tuples, now) {
            let _ = self.joined.insert(id, (), now + self.config.wait);
            return Some(joined);
        }
        index(&mut self.incidents_by_key, key, &id);
        let waiting = WaitingIncident {
            incident: incident.clone(),
            tuples,
            key,
        };
        if let Some((left, waiting)) = self.incidents.insert(id, waiting, now + self.config.wait) {
            unindex(&mut self.incidents_by_key, &waiting.key, &left);
            self.metrics.join_lost(Waiting::Incident);
        }
        None
    }

    fn offer_drop(
        &mut self,
        event: &Arc<v1::Event>,
        drop: &v1::DropEvent,
        now: SystemTime,
    ) -> Vec<v1::Event> {
        let node = event.node.as_str();
        let id = (node.to_owned(), drop.flow_id);
        if let Some(waiting) = self.drops.remove(&id) {
            for key in waiting.tuples.keys() {
                unindex(&mut self.drops_by_key, &key, &id);
            }
        }
        let tuples = DropTuples::of(drop);
        let keys = tuples.keys();
        for key in &keys {
            index(&mut self.drops_by_key, *key, &id);
        }
        let waiting = WaitingDrop {
            event: Arc::clone(event),
            tuples,
        };
        if let Some((left, waiting)) = self.drops.insert(id, waiting, now + self.config.wait) {
            for key in waiting.tuples.keys() {
                unindex(&mut self.drops_by_key, &key, &left);
            }
            self.metrics.join_lost(Waiting::Drop);
        }
        // Incidents of other nodes waiting under one of the drop's keys.
        let waiting: Vec<Id> = keys
            .iter()
            .filter_map(|key| self.incidents_by_key.get(key))
            .flatten()
            .filter(|incident| incident.0 != node)
            .cloned()
            .collect::<HashSet<Id>>()
            .into_iter()
            .collect();
        let mut joined = Vec::new();
        for id in waiting {
            let Some(incident) = self.incidents.get(&id) else {
                continue;
            };
            if let Some(event) = self.join(&id.0, &incident.incident, &incident.tuples, now) {
                if let Some(waiting) = self.incidents.remove(&id) {
                    unindex(&mut self.incidents_by_key, &waiting.key, &id);
                }
                let _ = self.joined.insert(id, (), now + self.config.wait);
                joined.push(event);
            }
        }
        joined
    }

    /// The cluster incident `incident` (of `node`) makes with the drops
    /// waiting now, if any matches: the drops of the node with the best
    /// match (then the latest drop).
    fn join(
        &self,
        node: &str,
        incident: &v1::Incident,
        tuples: &[FlowTuple],
        now: SystemTime,
    ) -> Option<v1::Event> {
        let key = tuples::incident_key(tuples)?;
        let mut by_node: BTreeMap<&str, (v1::TupleMatch, Vec<&v1::DropEvent>)> = BTreeMap::new();
        for id in self.drops_by_key.get(&key).into_iter().flatten() {
            if id.0 == node {
                continue;
            }
            let Some((waiting, drop)) = self
                .drops
                .get(id)
                .and_then(|waiting| Some((waiting, waiting.drop()?)))
            else {
                continue;
            };
            let Some(matched) = waiting.tuples.matches(tuples) else {
                continue;
            };
            if !self.in_time(incident, drop) {
                continue;
            }
            let entry = by_node
                .entry(id.0.as_str())
                .or_insert((matched, Vec::new()));
            if tuples::rank(matched) > tuples::rank(entry.0) {
                entry.0 = matched;
            }
            entry.1.push(drop);
        }
        let (remote, (matched, mut drops)) =
            by_node.into_iter().max_by_key(|(_, (matched, drops))| {
                (
                    tuples::rank(*matched),
                    drops
                        .iter()
                        .filter_map(|drop| drop.last_seen.as_ref().and_then(convert::time_of))
                        .max(),
                )
            })?;
        drops.sort_by_key(|drop| drop.first_seen.as_ref().and_then(convert::time_of));
        self.metrics.joined(matched);
        Some(joined(
            node,
            incident,
            remote,
            drops.into_iter().cloned().collect(),
            matched,
            now,
        ))
    }

    /// True when the drop's span and the incident's overlap, give or take
    /// the window; a missing time does not constrain.
    fn in_time(&self, incident: &v1::Incident, drop: &v1::DropEvent) -> bool {
        let time = |timestamp: &Option<pbjson_types::Timestamp>| {
            timestamp.as_ref().and_then(convert::time_of)
        };
        let window = self.config.window;
        let starts_in_time = match (time(&drop.first_seen), time(&incident.last_seen)) {
            (Some(drop_first), Some(incident_last)) => drop_first <= incident_last + window,
            _ => true,
        };
        let ends_in_time = match (time(&drop.last_seen), time(&incident.first_seen)) {
            (Some(drop_last), Some(incident_first)) => drop_last + window >= incident_first,
            _ => true,
        };
        starts_in_time && ends_in_time
    }
}

/// The cluster incident: `incident` of `node`, dropped on `remote`.
fn joined(
    node: &str,
    incident: &v1::Incident,
    remote: &str,
    drops: Vec<v1::DropEvent>,
    matched: v1::TupleMatch,
    now: SystemTime,
) -> v1::Event {
    let mut joined = incident.clone();
    joined.event_kind = v1::IncidentEventKind::Joined as i32;
    joined.place = v1::FailurePlace::OtherNode as i32;
    if let Some(explanation) = drops.iter().rev().find_map(|drop| drop.explanation.clone()) {
        joined.explanation = Some(explanation);
    }
    joined.summary = summary(
        &incident.summary,
        remote,
        &drops,
        joined.explanation.as_ref(),
    );
    joined.remote = Some(v1::RemoteDrops {
        node: remote.to_owned(),
        drops,
        r#match: matched as i32,
        decided_place: incident.place,
    });
    v1::Event {
        event: Some(v1::event::Event::Incident(joined)),
        kind: v1::EventKind::Incident as i32,
        time: Some(convert::timestamp(now)),
        node: node.to_owned(),
    }
}

/// The deciding node's summary, then where it died: `…; dropped on node
/// b (NETFILTER_DROP), denied by ingress policy shop/deny-all`.
fn summary(
    decided: &str,
    remote: &str,
    drops: &[v1::DropEvent],
    explanation: Option<&v1::Explanation>,
) -> String {
    let mut reasons: Vec<&str> = drops
        .iter()
        .filter_map(|drop| drop.reason.as_ref())
        .map(|reason| reason.name.as_str())
        .collect();
    reasons.dedup();
    let mut line = format!("{decided}; dropped on node {remote}");
    if !reasons.is_empty() {
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    if let Some(denied) = explanation.and_then(denied_by) {
        line.push_str(&format!(", {denied}"));
    }
    line
}

/// `denied by ingress policy ns/a, ns/b` for a denying explanation.
fn denied_by(explanation: &v1::Explanation) -> Option<String> {
    let names = |report: &Option<v1::DirectionReport>| -> String {
        report
            .iter()
            .flat_map(|report| &report.policies)
            .map(|policy| format!("{}/{}", policy.namespace, policy.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let direction = |word: &str, report: &Option<v1::DirectionReport>| {
        let policies = names(report);
        if policies.is_empty() {
            format!("{word} (no policy named)")
        } else {
            format!("{word} policy {policies}")
        }
    };
    match v1::Verdict::try_from(explanation.verdict).ok()? {
        v1::Verdict::DenyIngress => Some(format!(
            "denied by {}",
            direction("ingress", &explanation.ingress)
        )),
        v1::Verdict::DenyEgress => Some(format!(
            "denied by {}",
            direction("egress", &explanation.egress)
        )),
        v1::Verdict::DenyBoth => Some(format!(
            "denied by {} and {}",
            direction("egress", &explanation.egress),
            direction("ingress", &explanation.ingress)
        )),
        v1::Verdict::Allow | v1::Verdict::Unknown => None,
    }
}

/// The join as a step of the collector's line.
pub struct Joiner {
    joins: Joins,
}

impl Joiner {
    /// A step with nothing waiting.
    pub fn new(config: JoinConfig, metrics: Arc<CollectorMetrics>) -> Self {
        Self {
            joins: Joins::new(config, metrics),
        }
    }

    /// Passes every event of `input` to `output`, each followed by the
    /// cluster incidents it completes, until `input` closes or `stopping`
    /// turns true; then passes on what is queued and returns (closing
    /// `output`).
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Arc<v1::Event>>,
        output: mpsc::Sender<Arc<v1::Event>>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                event = input.recv() => event,
                _ = tick.tick() => {
                    self.joins.expire(SystemTime::now());
                    continue;
                }
                _ = stopping.wait_for(|stopping| *stopping) => break,
            };
            let Some(event) = event else { break };
            if self.pass(event, &output).await.is_err() {
                return;
            }
        }
        while let Ok(event) = input.try_recv() {
            if self.pass(event, &output).await.is_err() {
                return;
            }
        }
    }

    /// Passes `event` and what it completes on; `Err` when the merge
    /// stopped taking events.
    async fn pass(
        &mut self,
        event: Arc<v1::Event>,
        output: &mpsc::Sender<Arc<v1::Event>>,
    ) -> Result<(), ()> {
        let joined = self.joins.offer(&event, SystemTime::now());
        output.send(event).await.map_err(drop)?;
        for event in joined {
            tracing::debug!(node = %event.node, "incident joined across nodes");
            output.send(Arc::new(event)).await.map_err(drop)?;
        }
        Ok(())
    }
}
