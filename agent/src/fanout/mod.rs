//! The broadcast hub between `track` and the sinks: every subscriber gets
//! every event, a slow one misses events instead of slowing the others, and
//! what it missed reaches it as a loss event in its own stream. A bounded
//! history lets a late subscriber start with the recent past.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use tokio::sync::broadcast;

use crate::model::{Event, LossEvent, LossSource};

/// Sizes of the hub's queues.
#[derive(Clone, Copy, Debug)]
pub struct FanoutConfig {
    /// Events a subscriber may fall behind before it misses some.
    pub subscriber_queue: usize,
    /// Events kept for late subscribers.
    pub history: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            subscriber_queue: 4096,
            history: 1024,
        }
    }
}

/// The publishing side; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Event>,
    history: Arc<Mutex<VecDeque<Event>>>,
    history_len: usize,
}

impl Hub {
    /// A hub with these queue sizes.
    pub fn new(config: FanoutConfig) -> Self {
        let (sender, _) = broadcast::channel(config.subscriber_queue.max(1));
        Self {
            sender,
            history: Arc::new(Mutex::new(VecDeque::with_capacity(config.history))),
            history_len: config.history,
        }
    }

    /// Sends `event` to every subscriber and into the history.
    pub fn publish(&self, event: Event) {
        if self.history_len > 0 {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            if history.len() == self.history_len {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        // No subscriber is not an error: the history still has it.
        let _ = self.sender.send(event);
    }

    /// A new subscriber, starting with live events only.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            missed: 0,
        }
    }

    /// The events in the history, oldest first.
    pub fn history(&self) -> Vec<Event> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// One subscriber's stream.
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    missed: u64,
}

impl Subscription {
    /// The next event, or a loss event when this subscriber fell behind;
    /// `None` once the hub is gone.
    pub async fn next(&mut self) -> Option<Event> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(lost)) => {
                self.missed += lost;
                Some(Event::Loss(LossEvent {
                    source: LossSource::Subscriber,
                    lost,
                    total: self.missed,
                    time: SystemTime::now(),
                }))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Events this subscriber missed so far.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(total: u64) -> Event {
        Event::Loss(LossEvent {
            source: LossSource::KernelRingFull,
            lost: 1,
            total,
            time: SystemTime::UNIX_EPOCH,
        })
    }

    #[tokio::test]
    async fn a_slow_subscriber_gets_a_loss_event_then_continues() {
        let hub = Hub::new(FanoutConfig {
            subscriber_queue: 2,
            history: 3,
        });
        let mut slow = hub.subscribe();
        for total in 1..=5 {
            hub.publish(loss(total));
        }
        drop(hub.clone());
        match slow.next().await {
            Some(Event::Loss(LossEvent {
                source: LossSource::Subscriber,
                lost,
                ..
            })) => assert_eq!(lost, 3),
            other => panic!("expected a subscriber loss, got {other:?}"),
        }
        assert_eq!(slow.next().await, Some(loss(4)));
        assert_eq!(slow.next().await, Some(loss(5)));
        assert_eq!(slow.missed(), 3);
        assert_eq!(hub.history(), vec![loss(3), loss(4), loss(5)]);
        drop(hub);
        assert_eq!(slow.next().await, None, "stream ends with the hub");
    }
}
