//! The event filters of `Observer.Observe`: receives the request's `allow`
//! and `deny` lists (`dropscope.v1.EventFilter`) and the running kernel's
//! drop reason names, compiles them once into [`Filters`] (or a
//! [`FilterError`] naming the field path, for `INVALID_ARGUMENT`), and
//! answers for each [`Event`] of the stream whether it is sent.
//!
//! Semantics, as Hubble's whitelist and blacklist: an event passes when the
//! allow list is empty or one of its filters matches, and no deny filter
//! matches. Inside a filter every non-empty field must match and the values
//! of one field are ORed. A `LossEvent` always passes, whatever the filters.
//! Field meanings are those documented in `observer.proto`, and every field
//! applies to drop events and incidents alike: fields about pods,
//! namespaces, labels, workloads and Services read the identities of both
//! ends (a drop's explanation, an incident's own identities and its
//! explanation's), policies, verdicts and hints read the explanation, so an
//! event without identities or explanation does not match a filter that
//! sets any of them; drop reasons and TCP flags match an incident through
//! its joined drops. Fields only one kind of event carries (`drop_kind`;
//! `incident_kind`, `place`, `dns_name`) do not match the other kind.

mod error;
mod event;
mod event_filter;
pub mod selector;
#[cfg(test)]
mod tests;
mod value;

use dropscope_proto::v1::{Event, EventFilter, event::Event as Payload};

pub use error::{FilterError, Problem};
pub use selector::{LabelSelector, SelectorError};

use event::EventView;
use event_filter::Filter;

/// The compiled `allow` and `deny` lists of one `ObserveRequest`.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// An event must match one of these, unless there are none.
    allow: Vec<Filter>,
    /// An event must match none of these.
    deny: Vec<Filter>,
    /// True when some filter matches tuple addresses (parsed per event only
    /// then).
    reads_addresses: bool,
}

impl Filters {
    /// Compiles the request's lists. `known_reasons` tells whether the
    /// running kernel defines a drop reason name (uppercase, without the
    /// `SKB_DROP_REASON_` prefix); `UNKNOWN_<code>` is accepted as well.
    ///
    /// Fails on the first value that cannot be compiled, naming its field
    /// path (`allow[1].ip[0]`).
    pub fn compile(
        allow: &[EventFilter],
        deny: &[EventFilter],
        known_reasons: &dyn Fn(&str) -> bool,
    ) -> Result<Filters, FilterError> {
        let list = |name: &str, filters: &[EventFilter]| {
            filters
                .iter()
                .enumerate()
                .map(|(index, filter)| {
                    Filter::compile(&format!("{name}[{index}]"), filter, known_reasons)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let allow = list("allow", allow)?;
        let deny = list("deny", deny)?;
        let reads_addresses = allow.iter().chain(&deny).any(Filter::reads_addresses);
        Ok(Filters {
            allow,
            deny,
            reads_addresses,
        })
    }

    /// True when `event` is to be sent: a `LossEvent` or a `NodeState`
    /// (both say what the stream may be missing), or an event that matches
    /// the allow list (when there is one) and no deny filter.
    pub fn matches(&self, event: &Event) -> bool {
        if matches!(event.event, Some(Payload::Loss(_) | Payload::NodeState(_)))
            || (self.allow.is_empty() && self.deny.is_empty())
        {
            return true;
        }
        let view = EventView::new(event, self.reads_addresses);
        (self.allow.is_empty() || self.allow.iter().any(|filter| filter.matches(&view)))
            && !self.deny.iter().any(|filter| filter.matches(&view))
    }
}
