//! [`Event`]: what flows from `track` to the sinks, one of a drop, a loss
//! or an incident. Apart from the types it carries, so that incidents (which
//! hold drop events) and drop events import one way.

use std::sync::Arc;

use super::{
    event::{DropEvent, LossEvent},
    incident::Incident,
};

/// What flows to the sinks.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A dropped flow.
    Drop(Arc<DropEvent>),
    /// Lost drops or events.
    Loss(LossEvent),
    /// A failure a client suffered, joined with its evidence.
    Incident(Arc<Incident>),
}
