//! The broadcast hub between the pipeline and the sinks. Receives model
//! events (once each, from `pipeline`), converts each to the contract's
//! message once (`convert`), and keeps them in one bounded ring that is both
//! the history (`Observe`'s `number`, `first`, `since`) and the live queue.
//!
//! Why a ring and cursors rather than a channel per subscriber: a
//! subscriber is only a position in the ring, so a stalled one costs no
//! memory and never slows the publisher or the others; when the ring
//! overtakes it, it learns exactly how many events it missed and how many
//! dropped packets they stood for (each entry carries the running sum of
//! packets), as a loss event in its own stream. A request for history that
//! was already pushed out of the ring gets the same kind of message, with
//! source `History`.

pub mod outbox;
mod ring;
mod subscribers;

#[cfg(test)]
mod tests;

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use dropscope_proto::v1;
use tokio::sync::watch;

use self::ring::Ring;
pub use self::{
    ring::{Entry, HistoryStats},
    subscribers::{SubscriberInfo, SubscriberStats},
};
use crate::{
    convert,
    model::{Event, LossEvent, LossSource},
};

/// The size of the hub's ring.
#[derive(Clone, Copy, Debug)]
pub struct FanoutConfig {
    /// Events kept: the history a new subscriber can ask for, and how far a
    /// subscriber may fall behind before it misses events.
    pub history: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self { history: 16384 }
    }
}

/// The publishing and subscribing handle; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    ring: Mutex<Ring>,
    published: watch::Sender<u64>,
    node: String,
    subscribers: subscribers::Registry,
}

/// Where a new cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the next event published: live only.
    Live,
    /// At the oldest event held.
    Oldest,
    /// The first event published at or after this time.
    Since(SystemTime),
}

/// What a cursor reads.
#[derive(Clone, Debug)]
pub enum Item {
    /// The next event.
    Event(Entry),
    /// Events this cursor could not read: it fell behind the ring
    /// (`Subscriber`) or asked for history no longer held (`History`).
    Lost(LossEvent, Option<SystemTime>),
}

impl Hub {
    /// A hub whose events say they were seen on `node`.
    pub fn new(config: FanoutConfig, node: impl Into<String>) -> Self {
        let (published, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                ring: Mutex::new(Ring::new(config.history.max(1))),
                published,
                node: node.into(),
                subscribers: subscribers::Registry::default(),
            }),
        }
    }

    /// The node name events are stamped with.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.shared
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a message already in the contract's form (a collector's
    /// events, each stamped by its node) to every cursor; `drops` is what a
    /// reader that misses it misses (a drop's `new_packets`, a loss's
    /// `lost_drops`). It is held under its own time, so `since` means the
    /// nodes' time (also for history a collector read back at start), kept
    /// in order: never before the newest event held, never after now.
    pub fn publish_message(&self, message: Arc<v1::Event>, drops: u64) {
        let now = SystemTime::now();
        let mut ring = self.ring();
        let own = message
            .time
            .as_ref()
            .and_then(convert::time_of)
            .unwrap_or(now)
            .min(now);
        let time = ring.newest_time().map_or(own, |newest| own.max(newest));
        let seq = ring.push(time, message, drops);
        drop(ring);
        self.shared.published.send_replace(seq);
    }

    /// Converts `event` to the contract once and hands it to every cursor.
    pub fn publish(&self, event: &Event) {
        let now = SystemTime::now();
        // What a reader that misses this event misses: the drops it adds,
        // or the drops a kernel-side loss stands for.
        let drops = match event {
            Event::Drop(drop) => drop.new_packets,
            Event::Loss(loss) => loss.lost_drops,
            // An incident's drops are in the drop events it joins.
            Event::Incident(_) => 0,
        };
        let message = Arc::new(convert::event(event, &self.shared.node, now));
        let seq = self.ring().push(now, message, drops);
        self.shared.published.send_replace(seq);
    }

    /// Ends every cursor once it has read what is held.
    pub fn close(&self) {
        self.ring().close();
        self.shared.published.send_modify(|_| {});
    }

    /// A cursor starting at `start`, registered (for status) as `peer`.
    pub fn cursor(&self, start: Start, peer: impl Into<String>) -> Cursor {
        self.cursor_with(peer.into(), |ring| ring.position(start))
    }

    /// A cursor at the last `count` held events for which `keep` holds
    /// (`Observe`'s `number` with filters).
    pub fn cursor_last_matching(
        &self,
        count: u64,
        keep: &dyn Fn(&v1::Event) -> bool,
        peer: impl Into<String>,
    ) -> Cursor {
        self.cursor_with(peer.into(), |ring| ring.position_last_matching(count, keep))
    }

    /// A registered cursor at the position `place` finds; it is woken by
    /// every publish from then on.
    fn cursor_with(
        &self,
        peer: String,
        place: impl FnOnce(&Ring) -> (ring::Position, Option<(LossEvent, Option<SystemTime>)>),
    ) -> Cursor {
        let mut woken = self.shared.published.subscribe();
        woken.mark_unchanged();
        let (next, pending) = place(&self.ring());
        Cursor {
            hub: self.clone(),
            next,
            pending,
            woken,
            stats: self.shared.subscribers.register(peer),
        }
    }

    /// The history's state.
    pub fn history(&self) -> HistoryStats {
        self.ring().stats()
    }

    /// Every open cursor.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        self.shared.subscribers.list()
    }

    /// Events and dropped packets every reader (closed ones included)
    /// missed since start.
    pub fn subscriber_losses(&self) -> (u64, u64) {
        self.shared.subscribers.lost()
    }
}

/// One reader's position in the hub; dropping it unregisters it.
pub struct Cursor {
    hub: Hub,
    next: ring::Position,
    pending: Option<(LossEvent, Option<SystemTime>)>,
    woken: watch::Receiver<u64>,
    stats: Arc<SubscriberStats>,
}

impl Cursor {
    /// The next item, waiting for one to be published; `None` once the
    /// hub is closed and everything held was read.
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            self.woken.mark_unchanged();
            match self.try_next() {
                Some(item) => return Some(item),
                None if self.hub.ring().is_closed() => return None,
                None => {
                    if self.woken.changed().await.is_err() {
                        return self.try_next();
                    }
                }
            }
        }
    }

    /// The next item if one is there now.
    pub fn try_next(&mut self) -> Option<Item> {
        if let Some((loss, until)) = self.pending.take() {
            return Some(Item::Lost(loss, until));
        }
        let read = self.hub.ring().read(&mut self.next);
        match read {
            ring::Read::Entry(entry) => Some(Item::Event(entry)),
            ring::Read::Overtaken { events, drops } => {
                let (total_events, total_drops) = self.stats.lost(events, drops);
                Some(Item::Lost(
                    LossEvent {
                        source: LossSource::Subscriber,
                        lost: events,
                        total: total_events,
                        lost_drops: drops,
                        total_drops,
                        time: SystemTime::now(),
                    },
                    None,
                ))
            }
            ring::Read::Empty => None,
        }
    }

    /// Counts one event as delivered to this reader (after its filters).
    pub fn delivered(&self) {
        self.stats.sent();
    }

    /// What this cursor read and missed so far.
    pub fn stats(&self) -> &SubscriberStats {
        &self.stats
    }

    /// The node this cursor's hub stamps events with.
    pub fn node(&self) -> &str {
        self.hub.node()
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.hub.shared.subscribers.unregister(self.stats.id);
    }
}

/// A loss item as the contract's message, stamped like the hub's events.
pub fn loss_message(loss: &LossEvent, missing_until: Option<SystemTime>, node: &str) -> v1::Event {
    let mut message = convert::event(&Event::Loss(loss.clone()), node, loss.time);
    if let Some(v1::event::Event::Loss(converted)) = &mut message.event {
        converted.missing_until = missing_until.map(convert::timestamp);
    }
    message
}
