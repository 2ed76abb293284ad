//! Merging the nodes' streams in time order. Events wait in a bounded
//! window (`--merge-window`, 1 s by default) ordered by their own time, and
//! leave it oldest first once the window has passed over them; an event
//! older than what already left (a node far behind, or reconnecting with
//! its backlog) is published at once: ordering is best-effort beyond the
//! window. At most [`MAX_HELD`] events wait; past that the oldest leave
//! early, so memory stays bounded under any rate.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use dropscope_proto::v1;
use tokio::sync::mpsc;

use crate::{convert, fanout::Hub};

/// Events held in the window at most.
pub const MAX_HELD: usize = 65_536;

/// How often the window is checked.
const TICK: Duration = Duration::from_millis(50);

/// An event waiting, ordered by its time then arrival.
#[derive(Debug)]
struct Waiting {
    time: SystemTime,
    arrival: u64,
    event: Arc<v1::Event>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.arrival) == (other.time, other.arrival)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.arrival).cmp(&(other.time, other.arrival))
    }
}

/// The merge window in front of the collector's hub.
pub struct Merger {
    held: BinaryHeap<Reverse<Waiting>>,
    window: Duration,
    arrivals: u64,
}

impl Merger {
    /// An empty window of `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            held: BinaryHeap::new(),
            window,
            arrivals: 0,
        }
    }

    /// Takes events until `input` closes (the step in front of it stopped),
    /// publishing them to `hub` in time order within the window; at the
    /// end, publishes everything held and closes the hub (which ends every
    /// reader's stream).
    pub async fn run(mut self, mut input: mpsc::Receiver<Arc<v1::Event>>, hub: Hub) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = input.recv() => match event {
                    Some(event) => self.hold(event, &hub),
                    None => break,
                },
                _ = tick.tick() => self.release(SystemTime::now(), &hub),
            }
        }
        while let Some(Reverse(oldest)) = self.held.pop() {
            publish(&hub, oldest.event);
        }
        hub.close();
    }

    fn hold(&mut self, event: Arc<v1::Event>, hub: &Hub) {
        let time = event
            .time
            .as_ref()
            .and_then(convert::time_of)
            .unwrap_or_else(SystemTime::now);
        self.arrivals += 1;
        self.held.push(Reverse(Waiting {
            time,
            arrival: self.arrivals,
            event,
        }));
        while self.held.len() > MAX_HELD {
            if let Some(Reverse(oldest)) = self.held.pop() {
                publish(hub, oldest.event);
            }
        }
    }

    /// Publishes every event the window has passed over at `now`.
    fn release(&mut self, now: SystemTime, hub: &Hub) {
        let horizon = now
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        while self
            .held
            .peek()
            .is_some_and(|Reverse(oldest)| oldest.time <= horizon)
        {
            if let Some(Reverse(oldest)) = self.held.pop() {
                publish(hub, oldest.event);
            }
        }
    }
}

/// Publishes one node's event with what a reader that misses it misses.
pub(super) fn publish(hub: &Hub, event: Arc<v1::Event>) {
    let drops = match &event.event {
        Some(v1::event::Event::Drop(drop)) => drop.new_packets,
        Some(v1::event::Event::Loss(loss)) => loss.lost_drops,
        _ => 0,
    };
    hub.publish_message(event, drops);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{FanoutConfig, Item, Start};

    fn event(node: &str, seconds: u64) -> Arc<v1::Event> {
        Arc::new(v1::Event {
            node: node.to_owned(),
            time: Some(convert::timestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            )),
            kind: v1::EventKind::Loss as i32,
            event: Some(v1::event::Event::Loss(v1::LossEvent::default())),
        })
    }

    fn published(cursor: &mut crate::fanout::Cursor) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Some(Item::Event(entry)) = cursor.try_next() {
            out.push((
                entry.event.node.clone(),
                entry.event.time.as_ref().map_or(0, |time| time.seconds),
            ));
        }
        out
    }

    #[test]
    fn events_leave_in_time_order_once_the_window_passed() {
        let hub = Hub::new(FanoutConfig::default(), "collector");
        let mut cursor = hub.cursor(Start::Oldest, "test");
        let mut merger = Merger::new(Duration::from_secs(1));
        merger.hold(event("b", 102), &hub);
        merger.hold(event("a", 101), &hub);
        merger.hold(event("a", 103), &hub);
        merger.release(SystemTime::UNIX_EPOCH + Duration::from_secs(102), &hub);
        assert_eq!(published(&mut cursor), vec![("a".to_owned(), 101)]);
        merger.release(SystemTime::UNIX_EPOCH + Duration::from_secs(105), &hub);
        assert_eq!(
            published(&mut cursor),
            vec![("b".to_owned(), 102), ("a".to_owned(), 103)]
        );
    }

    #[test]
    fn a_full_window_lets_the_oldest_go_early() {
        let hub = Hub::new(FanoutConfig::default(), "collector");
        let mut cursor = hub.cursor(Start::Oldest, "test");
        let mut merger = Merger::new(Duration::from_secs(3600));
        for second in 0..(MAX_HELD as u64 + 2) {
            merger.hold(event("a", 1_000_000 + second), &hub);
        }
        let early = published(&mut cursor);
        assert_eq!(early.len(), 2);
        assert_eq!(early[0].1, 1_000_000);
    }
}
