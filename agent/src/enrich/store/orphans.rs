//! Orphan policies: those whose non-empty podSelector selects no pod of
//! their own namespace. The namespace's policy table
//! ([`super::namespaced`]) says when a policy becomes or stops being one;
//! this keeps them by key and grouped by podSelector, the groups found
//! through the selector's first `key=value` equality, so that "which
//! orphans select these labels" checks each distinct selector once instead
//! of every orphan of the cluster.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    HashMap, Key,
    index::{self, LabelIndex},
};
use crate::enrich::{object::Labels, policy::Policy, policy::Selector};

/// The cluster's orphan policies.
#[derive(Debug, Default)]
pub struct Orphans {
    /// By namespace and name.
    by_key: BTreeMap<Key, Arc<Policy>>,
    /// Grouped by podSelector.
    groups: HashMap<Selector, BTreeMap<Key, Arc<Policy>>>,
    /// The groups' selectors by their first `key=value` equality.
    selectors_by_label: LabelIndex<Selector>,
    /// The groups' selectors without an equality.
    selectors_unindexed: Vec<Selector>,
}

impl Orphans {
    /// Every orphan, by namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.by_key.values()
    }

    /// Records `policy` as an orphan.
    pub fn insert(&mut self, policy: Arc<Policy>) {
        let key = policy.key();
        let selector = &policy.pod_selector;
        let group = match self.groups.get_mut(selector) {
            Some(group) => group,
            None => {
                match selector.first_equality() {
                    Some((label, value)) => {
                        index::insert(&mut self.selectors_by_label, label, value, selector.clone())
                    }
                    None => self.selectors_unindexed.push(selector.clone()),
                }
                self.groups.entry(selector.clone()).or_default()
            }
        };
        group.insert(key.clone(), policy.clone());
        self.by_key.insert(key, policy);
    }

    /// Forgets the orphan with this key, if it is one.
    pub fn remove(&mut self, key: &Key) {
        let Some(policy) = self.by_key.remove(key) else {
            return;
        };
        let selector = &policy.pod_selector;
        let Some(group) = self.groups.get_mut(selector) else {
            return;
        };
        group.remove(key);
        if !group.is_empty() {
            return;
        }
        self.groups.remove(selector);
        match selector.first_equality() {
            Some((label, value)) => {
                index::remove_by(&mut self.selectors_by_label, label, value, |other| {
                    other == selector
                })
            }
            None => self.selectors_unindexed.retain(|other| other != selector),
        }
    }

    /// The orphans whose podSelector selects these labels, by namespace
    /// and name.
    pub fn selecting(&self, labels: &Labels) -> Vec<&Arc<Policy>> {
        let mut found: Vec<&Arc<Policy>> = Vec::new();
        let indexed = labels
            .iter()
            .flat_map(|(key, value)| index::get(&self.selectors_by_label, key, value));
        for selector in indexed.chain(self.selectors_unindexed.iter()) {
            if !selector.matches(labels) {
                continue;
            }
            if let Some(group) = self.groups.get(selector) {
                found.extend(group.values());
            }
        }
        found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        found.dedup_by(|a, b| Arc::ptr_eq(a, b));
        found
    }
}
