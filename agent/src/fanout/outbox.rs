//! The sending side of a sink whose receiver acknowledges (the push to a
//! collector, the publish to NATS JetStream): reads a cursor on the hub,
//! numbers each event (a loss the cursor suffered becomes a `LossEvent`
//! in the stream), and keeps what was sent until it is acknowledged, so a
//! new connection sends it again.

use std::{collections::VecDeque, sync::Arc};

use dropscope_proto::v1;

use super::{Cursor, Hub, Item, Start, loss_message};

/// A numbered event.
pub type Numbered = (u64, Arc<v1::Event>);

/// Events taken from the hub and not yet acknowledged.
pub struct Outbox {
    cursor: Cursor,
    node: String,
    unacked: VecDeque<Numbered>,
    next: u64,
}

impl Outbox {
    /// An outbox of `hub` from the oldest event it holds, named `peer` in
    /// the hub's subscriber list; numbers start at 1.
    pub fn new(hub: &Hub, peer: &str) -> Self {
        Self {
            cursor: hub.cursor(Start::Oldest, peer),
            node: hub.node().to_owned(),
            unacked: VecDeque::new(),
            next: 1,
        }
    }

    /// The next item, when one comes (`None`: the hub closed).
    pub async fn next(&mut self) -> Option<Numbered> {
        let item = self.cursor.next().await?;
        Some(self.take(item))
    }

    /// The next item if one is there now.
    pub fn try_next(&mut self) -> Option<Numbered> {
        let item = self.cursor.try_next()?;
        Some(self.take(item))
    }

    /// Everything up to `sequence` was acknowledged.
    pub fn acknowledged(&mut self, sequence: u64) {
        while self
            .unacked
            .front()
            .is_some_and(|(seq, _)| *seq <= sequence)
        {
            self.unacked.pop_front();
        }
    }

    /// What was sent and not acknowledged, oldest first.
    pub fn unacknowledged(&self) -> Vec<Numbered> {
        self.unacked.iter().cloned().collect()
    }

    /// How many events wait for their acknowledgement.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    /// True when every event sent was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }

    fn take(&mut self, item: Item) -> Numbered {
        let message = match item {
            Item::Event(entry) => entry.event,
            Item::Lost(loss, until) => Arc::new(loss_message(&loss, until, &self.node)),
        };
        self.cursor.delivered();
        let numbered = (self.next, message);
        self.next += 1;
        self.unacked.push_back(numbered.clone());
        numbered
    }
}
