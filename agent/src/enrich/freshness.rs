//! How current the store's view of each kind is, on the live path: listing,
//! synced, stale (its watch fails: the last known objects are kept and
//! explanations still use them) or forbidden (RBAC: nothing of the kind is
//! known, see `skipped`). `GetStatus` reports it per kind, so an outage or
//! a missing RBAC rule is one line away, and a forbidden kind is not ready
//! while the others are.

use std::{collections::BTreeMap, time::SystemTime};

use super::change::Kind;

/// The state of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindState {
    /// Being listed (at start, or again after `410 Gone`).
    Listing,
    /// Listed, and its watch delivers.
    Synced,
    /// Its watch has failed since `since`; the last known objects are kept.
    Stale {
        /// When the first failure of this outage happened.
        since: SystemTime,
        /// The latest failure, as the client reported it.
        error: String,
    },
    /// RBAC forbids listing it.
    Forbidden {
        /// The API server's answer.
        reason: String,
    },
}

/// Every kind's state; kinds never heard of are absent.
#[derive(Clone, Debug, Default)]
pub struct Freshness {
    kinds: BTreeMap<Kind, (KindState, SystemTime)>,
}

impl Freshness {
    /// `kind` is being listed (kept stale if it was: the listing has not
    /// answered yet).
    pub fn listing(&mut self, kind: Kind, now: SystemTime) {
        if !matches!(self.state(kind), Some(KindState::Stale { .. })) {
            self.set(kind, KindState::Listing, now);
        }
    }

    /// `kind` delivers: listed, or an event of it arrived.
    pub fn delivered(&mut self, kind: Kind, now: SystemTime) {
        if self.state(kind) != Some(&KindState::Synced) {
            self.set(kind, KindState::Synced, now);
        }
    }

    /// `kind`'s watch failed with `error`; true when this starts an outage
    /// of the kind (it was not stale before).
    pub fn failed(&mut self, kind: Kind, error: String, now: SystemTime) -> bool {
        let since = match self.state(kind) {
            Some(KindState::Stale { since, .. }) => Some(*since),
            _ => None,
        };
        self.set(
            kind,
            KindState::Stale {
                since: since.unwrap_or(now),
                error,
            },
            now,
        );
        since.is_none()
    }

    /// RBAC forbids `kind`.
    pub fn forbidden(&mut self, kind: Kind, reason: String, now: SystemTime) {
        self.set(kind, KindState::Forbidden { reason }, now);
    }

    /// Every stale kind is reachable again (the API server answered): its
    /// watch resumes where it stopped, or lists again.
    pub fn resumed(&mut self, now: SystemTime) -> Vec<Kind> {
        let stale: Vec<Kind> = self
            .kinds
            .iter()
            .filter(|(_, (state, _))| matches!(state, KindState::Stale { .. }))
            .map(|(kind, _)| *kind)
            .collect();
        for kind in &stale {
            self.set(*kind, KindState::Synced, now);
        }
        stale
    }

    /// True when some kind's watch is failing.
    pub fn any_stale(&self) -> bool {
        self.kinds
            .values()
            .any(|(state, _)| matches!(state, KindState::Stale { .. }))
    }

    /// The state of `kind`, if it was heard of.
    pub fn state(&self, kind: Kind) -> Option<&KindState> {
        self.kinds.get(&kind).map(|(state, _)| state)
    }

    /// Every kind heard of: its state and when it entered it.
    pub fn kinds(&self) -> impl Iterator<Item = (Kind, &KindState, SystemTime)> {
        self.kinds
            .iter()
            .map(|(kind, (state, since))| (*kind, state, *since))
    }

    fn set(&mut self, kind: Kind, state: KindState, now: SystemTime) {
        self.kinds.insert(kind, (state, now));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn an_outage_is_stale_from_its_first_failure_until_the_server_answers() {
        let mut freshness = Freshness::default();
        freshness.listing(Kind::Pod, at(1));
        freshness.delivered(Kind::Pod, at(2));
        assert!(!freshness.any_stale());

        assert!(freshness.failed(Kind::Pod, "connection refused".into(), at(10)));
        assert!(!freshness.failed(Kind::Pod, "still refused".into(), at(20)));
        assert_eq!(
            freshness.state(Kind::Pod),
            Some(&KindState::Stale {
                since: at(10),
                error: "still refused".into()
            }),
            "stale since the outage began, with the latest error"
        );
        // A relist that has not answered yet keeps it stale.
        freshness.listing(Kind::Pod, at(21));
        assert!(freshness.any_stale());

        assert_eq!(freshness.resumed(at(30)), [Kind::Pod]);
        assert_eq!(freshness.state(Kind::Pod), Some(&KindState::Synced));
        assert!(!freshness.any_stale());
    }

    #[test]
    fn a_forbidden_kind_stays_forbidden_and_alone() {
        let mut freshness = Freshness::default();
        freshness.delivered(Kind::Pod, at(1));
        freshness.forbidden(Kind::NetworkPolicy, "forbidden".into(), at(1));
        assert_eq!(freshness.resumed(at(2)), Vec::<Kind>::new());
        assert_eq!(freshness.state(Kind::Pod), Some(&KindState::Synced));
        assert!(matches!(
            freshness.state(Kind::NetworkPolicy),
            Some(KindState::Forbidden { .. })
        ));
    }
}
