//! What the store could not use: objects skipped as invalid, by kind and
//! namespace/name, with the reason and the addresses they claimed; and
//! kinds that could not be listed at all (RBAC forbids them). Receives
//! every outcome of [`Store::apply`](super::store::Store::apply) (the live
//! watch and the snapshot loader alike); read by `explain` through
//! [`super::view::View::skipped`], so a verdict says when an object that
//! could decide it is missing instead of silently deciding without it.
//!
//! Bounded: at most [`MAX_SKIPPED`] objects are remembered by name, each
//! reason at most [`MAX_REASON`] bytes; beyond that only a count per kind
//! is kept ([`Skipped::unlisted`]), reset by the next full relist of the
//! kind. An entry is forgotten when a valid version of the same object is
//! applied, when it is deleted, or when a relist no longer has it.

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    change::{HashSet, Kind, Object},
    object::Key,
};

/// How many skipped objects are remembered by name (the rest are counted).
pub const MAX_SKIPPED: usize = 1024;

/// The longest reason kept, in bytes (longer ones are cut with `…`).
pub const MAX_REASON: usize = 256;

/// One object the store skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What is wrong with it, naming the field (at most [`MAX_REASON`] bytes).
    pub reason: String,
    /// The addresses it claimed (a Pod's `status.podIPs` unless it is
    /// host-network, a Service's ClusterIPs); empty for other kinds or when
    /// it claimed none.
    pub ips: Box<[IpAddr]>,
}

/// Everything the store could not use.
#[derive(Debug)]
pub struct Skipped {
    cap: usize,
    entries: BTreeMap<(Kind, Key), Entry>,
    /// Skipped objects not remembered (beyond the cap), per kind.
    unlisted: BTreeMap<Kind, u64>,
    /// The same count since the start of a relist in progress, per kind.
    unlisted_in_relist: BTreeMap<Kind, u64>,
    /// Kinds that could not be listed, with why.
    unavailable: BTreeMap<Kind, String>,
}

impl Default for Skipped {
    fn default() -> Self {
        Self::with_cap(MAX_SKIPPED)
    }
}

fn lowest(kind: Kind, namespace: &str) -> (Kind, Key) {
    (
        kind,
        Key {
            namespace: namespace.into(),
            name: "".into(),
        },
    )
}

/// The reason cut to [`MAX_REASON`] bytes on a character boundary.
fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

impl Skipped {
    /// Remembers at most `cap` objects by name.
    pub fn with_cap(cap: usize) -> Self {
        Self {
            cap,
            entries: BTreeMap::new(),
            unlisted: BTreeMap::new(),
            unlisted_in_relist: BTreeMap::new(),
            unavailable: BTreeMap::new(),
        }
    }

    /// Records a skipped object (replacing what was recorded for it);
    /// beyond the cap only counts it.
    pub fn record(&mut self, kind: Kind, key: Key, reason: String, ips: Box<[IpAddr]>) {
        let entry = Entry {
            reason: bounded(reason),
            ips,
        };
        let slot = (kind, key);
        if self.entries.len() < self.cap || self.entries.contains_key(&slot) {
            self.entries.insert(slot, entry);
            return;
        }
        *self.unlisted.entry(kind).or_default() += 1;
        if let Some(count) = self.unlisted_in_relist.get_mut(&kind) {
            *count += 1;
        }
    }

    /// Forgets an object: a valid version was applied, or it was deleted.
    pub fn forget(&mut self, kind: Kind, key: &Key) {
        self.entries.remove(&(kind, key.clone()));
    }

    /// A relist of `kind` starts: counting of unremembered objects restarts.
    pub fn relist_start(&mut self, kind: Kind) {
        self.unlisted_in_relist.insert(kind, 0);
    }

    /// A relist of `kind` is complete: entries it did not see are
    /// forgotten, the unremembered count is the relist's own, and the kind
    /// is available.
    pub fn relist_done(&mut self, kind: Kind, seen: &HashSet<Key>) {
        self.entries
            .retain(|(entry_kind, key), _| *entry_kind != kind || seen.contains(key));
        match self.unlisted_in_relist.remove(&kind) {
            Some(0) => {
                self.unlisted.remove(&kind);
            }
            Some(count) => {
                self.unlisted.insert(kind, count);
            }
            None => {}
        }
        self.unavailable.remove(&kind);
    }

    /// Records that no object of `kind` could be listed, and why.
    pub fn set_unavailable(&mut self, kind: Kind, reason: String) {
        self.unavailable.insert(kind, bounded(reason));
    }

    /// Why no object of `kind` could be listed; `None` when it was.
    pub fn unavailable(&self, kind: Kind) -> Option<&str> {
        self.unavailable.get(&kind).map(String::as_str)
    }

    /// How many skipped objects are remembered by name.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered, counted or unavailable.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.unlisted.is_empty() && self.unavailable.is_empty()
    }

    /// A skipped object by kind and key.
    pub fn get(&self, kind: Kind, key: &Key) -> Option<&Entry> {
        self.entries.get(&(kind, key.clone()))
    }

    /// Every skipped object of a kind, by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&Key, &Entry)> {
        self.entries
            .range(lowest(kind, "")..)
            .take_while(move |((entry_kind, _), _)| *entry_kind == kind)
            .map(|((_, key), entry)| (key, entry))
    }

    /// The skipped objects of a kind in `namespace`, and those that named
    /// no namespace (they could be anywhere), by name.
    pub fn in_namespace<'s>(
        &'s self,
        kind: Kind,
        namespace: &'s str,
    ) -> impl Iterator<Item = (&'s Key, &'s Entry)> + 's {
        let in_one = move |namespace: &'s str| {
            self.entries
                .range(lowest(kind, namespace)..)
                .take_while(move |((entry_kind, key), _)| {
                    *entry_kind == kind && key.namespace.as_ref() == namespace
                })
                .map(|((_, key), entry)| (key, entry))
        };
        let anywhere = (!namespace.is_empty()).then(|| in_one(""));
        in_one(namespace).chain(anywhere.into_iter().flatten())
    }

    /// Skipped objects of a kind that are not remembered by name (beyond
    /// the cap), since the kind's last relist.
    pub fn unlisted(&self, kind: Kind) -> u64 {
        self.unlisted.get(&kind).copied().unwrap_or(0)
    }
}

fn parse_ips<'a>(addresses: impl IntoIterator<Item = &'a String>) -> Box<[IpAddr]> {
    let mut ips: Vec<IpAddr> = addresses
        .into_iter()
        .filter_map(|address| address.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips.into_boxed_slice()
}

/// The addresses an object the store could not use claims, read as far as
/// it can be: a (not host-network) Pod's IPs, a Service's ClusterIPs.
pub fn claimed_ips(object: &Object) -> Box<[IpAddr]> {
    match object {
        Object::Pod(pod) => {
            if pod.spec.as_ref().and_then(|spec| spec.host_network) == Some(true) {
                return Box::default();
            }
            let status = pod.status.as_ref();
            parse_ips(
                status
                    .and_then(|status| status.pod_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|ip| &ip.ip)
                    .chain(status.and_then(|status| status.pod_ip.as_ref())),
            )
        }
        Object::Service(service) => {
            let spec = service.spec.as_ref();
            parse_ips(
                spec.and_then(|spec| spec.cluster_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .chain(spec.and_then(|spec| spec.cluster_ip.as_ref())),
            )
        }
        _ => Box::default(),
    }
}
