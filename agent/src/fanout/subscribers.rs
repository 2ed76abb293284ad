//! Who is reading the hub and what each read and missed, for status and
//! metrics. Registered by [`Hub::cursor`](super::Hub::cursor), removed when
//! the cursor is dropped.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

/// One reader's counters.
#[derive(Debug)]
pub struct SubscriberStats {
    totals: Arc<Totals>,
    /// Unique per agent run.
    pub id: u64,
    /// Who it is (a socket peer, `stdout`, …).
    pub peer: String,
    /// When it subscribed.
    pub since: SystemTime,
    sent: AtomicU64,
    lost_events: AtomicU64,
    lost_drops: AtomicU64,
}

impl SubscriberStats {
    pub(super) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a loss; returns the totals.
    pub(super) fn lost(&self, events: u64, drops: u64) -> (u64, u64) {
        self.totals.events.fetch_add(events, Ordering::Relaxed);
        self.totals.drops.fetch_add(drops, Ordering::Relaxed);
        let events = self.lost_events.fetch_add(events, Ordering::Relaxed) + events;
        let drops = self.lost_drops.fetch_add(drops, Ordering::Relaxed) + drops;
        (events, drops)
    }

    /// A copy of the counters now.
    pub fn info(&self) -> SubscriberInfo {
        SubscriberInfo {
            id: self.id,
            peer: self.peer.clone(),
            since: self.since,
            sent_events: self.sent.load(Ordering::Relaxed),
            lost_events: self.lost_events.load(Ordering::Relaxed),
            lost_drops: self.lost_drops.load(Ordering::Relaxed),
        }
    }
}

/// What one reader read and missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Unique per agent run.
    pub id: u64,
    /// Who it is.
    pub peer: String,
    /// When it subscribed.
    pub since: SystemTime,
    /// Events read.
    pub sent_events: u64,
    /// Events missed by reading too slowly.
    pub lost_events: u64,
    /// Dropped packets those events stood for.
    pub lost_drops: u64,
}

/// Losses of every reader since start, closed ones included.
#[derive(Debug, Default)]
struct Totals {
    events: AtomicU64,
    drops: AtomicU64,
}

/// The open readers.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<SubscriberStats>>>,
    totals: Arc<Totals>,
}

impl Registry {
    pub fn register(&self, peer: String) -> Arc<SubscriberStats> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stats = Arc::new(SubscriberStats {
            totals: Arc::clone(&self.totals),
            id,
            peer,
            since: SystemTime::now(),
            sent: AtomicU64::new(0),
            lost_events: AtomicU64::new(0),
            lost_drops: AtomicU64::new(0),
        });
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&stats));
        stats
    }

    pub fn unregister(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Events and drops every reader missed since start.
    pub fn lost(&self) -> (u64, u64) {
        (
            self.totals.events.load(Ordering::Relaxed),
            self.totals.drops.load(Ordering::Relaxed),
        )
    }

    pub fn list(&self) -> Vec<SubscriberInfo> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|stats| stats.info())
            .collect()
    }
}
