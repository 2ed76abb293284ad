//! What leaves the process (an `Observe` stream, a JSON line, a push to a
//! collector, a NATS message) carries a flow's explanation on its `NEW`
//! and `END` events only: the explanation of a flow does not change, and
//! `UPDATE` events (one per sample while the flow keeps dropping) would
//! repeat it. Inside the process (the hub, filters, metrics, the
//! OpenTelemetry records, the collector's joins) every event keeps it.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use dropscope_proto::v1;

/// Flows whose explanation a [`Carry`] holds, at most (oldest first out).
pub const CARRIED: usize = 65_536;

/// `event` as it leaves the process: an `UPDATE` drop without its
/// explanation, anything else as it is.
pub fn on_the_wire(event: &v1::Event) -> Cow<'_, v1::Event> {
    match &event.event {
        Some(v1::event::Event::Drop(drop))
            if drop.kind == v1::DropEventKind::Update as i32 && drop.explanation.is_some() =>
        {
            let mut light = event.clone();
            if let Some(v1::event::Event::Drop(drop)) = &mut light.event {
                drop.explanation = None;
            }
            Cow::Owned(light)
        }
        _ => Cow::Borrowed(event),
    }
}

/// A node's flow.
type FlowKey = (String, u64);

/// The receiving side: puts a flow's explanation back on the `UPDATE`
/// events that left without it, from the flow's `NEW` event (a reader
/// that came in after `NEW` gets it from `END`). Bounded: at most
/// [`CARRIED`] flows, oldest first out.
#[derive(Default)]
pub struct Carry {
    by_flow: HashMap<FlowKey, Arc<v1::Explanation>>,
    order: VecDeque<FlowKey>,
}

impl Carry {
    /// The explanation held for `node`'s `flow_id`.
    pub fn get(&self, node: &str, flow_id: u64) -> Option<Arc<v1::Explanation>> {
        self.by_flow.get(&(node.to_owned(), flow_id)).cloned()
    }

    /// Holds `explanation` for `node`'s `flow_id`.
    pub fn insert(&mut self, node: &str, flow_id: u64, explanation: Arc<v1::Explanation>) {
        let key = (node.to_owned(), flow_id);
        if self.by_flow.insert(key.clone(), explanation).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CARRIED {
            if let Some(oldest) = self.order.pop_front() {
                self.by_flow.remove(&oldest);
            }
        }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.by_flow.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.by_flow.is_empty()
    }

    /// Remembers the explanation of a drop that has one; gives an `UPDATE`
    /// without one its flow's.
    pub fn fill(&mut self, event: &mut v1::Event) {
        let Some(v1::event::Event::Drop(drop)) = &mut event.event else {
            return;
        };
        match &drop.explanation {
            Some(explanation) => {
                let held = self.get(&event.node, drop.flow_id);
                if held.as_deref() != Some(explanation) {
                    self.insert(&event.node, drop.flow_id, Arc::new(explanation.clone()));
                }
            }
            None if drop.kind == v1::DropEventKind::Update as i32 => {
                drop.explanation = self
                    .get(&event.node, drop.flow_id)
                    .map(Arc::unwrap_or_clone);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_event(kind: v1::DropEventKind) -> v1::Event {
        v1::Event {
            event: Some(v1::event::Event::Drop(v1::DropEvent {
                kind: kind as i32,
                explanation: Some(v1::Explanation {
                    verdict: v1::Verdict::DenyIngress as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn explained(event: &v1::Event) -> bool {
        matches!(&event.event, Some(v1::event::Event::Drop(drop)) if drop.explanation.is_some())
    }

    #[test]
    fn only_updates_leave_without_their_explanation() {
        for (kind, kept) in [
            (v1::DropEventKind::New, true),
            (v1::DropEventKind::Update, false),
            (v1::DropEventKind::End, true),
        ] {
            let event = drop_event(kind);
            assert_eq!(explained(&on_the_wire(&event)), kept, "{kind:?}");
            assert!(explained(&event), "the original keeps it");
        }
    }

    #[test]
    fn a_carry_puts_the_explanation_back_on_updates() {
        let mut carry = Carry::default();
        let with_node = |kind| {
            let mut event = drop_event(kind);
            event.node = "a".to_owned();
            event
        };
        let mut update = on_the_wire(&with_node(v1::DropEventKind::Update)).into_owned();
        carry.fill(&mut update);
        assert!(!explained(&update), "nothing held before NEW");
        carry.fill(&mut with_node(v1::DropEventKind::New));
        carry.fill(&mut update);
        assert!(explained(&update));
        let mut other_node = on_the_wire(&drop_event(v1::DropEventKind::Update)).into_owned();
        carry.fill(&mut other_node);
        assert!(!explained(&other_node), "flows are per node");
    }

    #[test]
    fn a_carry_is_bounded_oldest_first() {
        let mut carry = Carry::default();
        for flow in 0..(CARRIED as u64 + 10) {
            carry.insert("a", flow, Arc::new(v1::Explanation::default()));
        }
        assert_eq!(carry.len(), CARRIED);
        assert!(carry.get("a", 0).is_none());
        assert!(carry.get("a", CARRIED as u64 + 9).is_some());
    }
}
