//! Recent kernel drops by the flow they belong to, so that an incident can
//! join the drops of its flow: keyed by the conntrack original tuple (the
//! flow before any NAT, as the client's socket sees it) and by the packet's
//! own tuple. Bounded in entries and in time.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::model::{DropEvent, Tuple};

/// Drop flows kept per tuple.
const PER_TUPLE: usize = 4;

/// Recent drop events by tuple.
#[derive(Debug)]
pub struct DropIndex {
    by_tuple: HashMap<Tuple, Vec<Arc<DropEvent>>>,
    /// How long a drop stays joinable after its last packet.
    window: Duration,
    /// Most tuples held.
    capacity: usize,
}

impl DropIndex {
    /// An empty index.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            by_tuple: HashMap::new(),
            window,
            capacity: capacity.max(1),
        }
    }

    /// Tuples held.
    pub fn len(&self) -> usize {
        self.by_tuple.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.by_tuple.is_empty()
    }

    /// The tuples a drop is found by.
    pub fn keys(drop: &DropEvent) -> impl Iterator<Item = Tuple> {
        let original = drop.conntrack.as_ref().map(|conntrack| conntrack.original);
        let packet = (original != Some(drop.packet)).then_some(drop.packet);
        original.into_iter().chain(packet)
    }

    /// Notes a drop event (its latest state replaces an earlier one of the
    /// same flow).
    pub fn observe(&mut self, drop: &Arc<DropEvent>) {
        if drop.overflow.is_some() {
            // An aggregate of many flows names none of them for sure.
            return;
        }
        if self.by_tuple.len() >= self.capacity {
            self.expire(drop.last_seen);
        }
        for key in Self::keys(drop) {
            if self.by_tuple.len() >= self.capacity && !self.by_tuple.contains_key(&key) {
                self.evict_oldest();
            }
            let flows = self.by_tuple.entry(key).or_default();
            match flows.iter_mut().find(|held| held.flow_id == drop.flow_id) {
                Some(held) => *held = Arc::clone(drop),
                None => {
                    if flows.len() == PER_TUPLE {
                        flows.remove(0);
                    }
                    flows.push(Arc::clone(drop));
                }
            }
        }
    }

    /// Drops of `flow` whose packets fell within `from..=until` (give or
    /// take a second), oldest first.
    pub fn find(&self, flow: &Tuple, from: SystemTime, until: SystemTime) -> Vec<Arc<DropEvent>> {
        let slack = Duration::from_secs(1);
        let from = from.checked_sub(slack).unwrap_or(from);
        let until = until + slack;
        self.by_tuple
            .get(flow)
            .map(|flows| {
                flows
                    .iter()
                    .filter(|drop| drop.last_seen >= from && drop.first_seen <= until)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets drops idle for longer than the window.
    pub fn expire(&mut self, now: SystemTime) {
        let Some(horizon) = now.checked_sub(self.window) else {
            return;
        };
        self.by_tuple.retain(|_, flows| {
            flows.retain(|drop| drop.last_seen >= horizon);
            !flows.is_empty()
        });
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .by_tuple
            .iter()
            .min_by_key(|(_, flows)| flows.iter().map(|drop| drop.last_seen).max())
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            self.by_tuple.remove(&key);
        }
    }
}
