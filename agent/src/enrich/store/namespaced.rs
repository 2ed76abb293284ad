//! What one namespace holds: its pods (by name and by label) and its
//! policies (by name, and by the first `key=value` equality of their
//! podSelector), each policy with how many of the namespace's pods its
//! podSelector selects.
//!
//! Why the counts: a policy that selects no pod of its namespace is an
//! orphan (hints `policy_selects_no_pod`, `policy_in_other_namespace`).
//! Recomputing that on every pod event re-checked each policy of the
//! namespace against the namespace's pods; with a count per policy, a pod
//! event only checks the policies that may select that pod (found through
//! the label index) and moves their counts, and a policy event evaluates
//! its selector once per distinct label set of the namespace (replicas
//! share theirs), each set counted. The same policy index answers which
//! policies may isolate a pod, so `explain` checks those instead of every
//! policy of the namespace.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    HashMap, Str,
    index::{self, CountMap, LabelIndex},
    orphans::Orphans,
};
use crate::enrich::{
    object::{Labels, Pod},
    policy::Policy,
};

/// The pods of one namespace.
#[derive(Debug, Default)]
pub struct NamespacePods {
    /// By name.
    pub by_name: BTreeMap<Str, Arc<Pod>>,
    /// By label key, then value.
    pub by_label: LabelIndex<Arc<Pod>>,
    /// How many pods that selectors can match (not host-network) carry
    /// each distinct label set: a workload's replicas share one, so a
    /// selector is counted over a namespace's few label sets, not its pods.
    label_sets: HashMap<Labels, u32>,
}

impl NamespacePods {
    /// How many pods that selectors can match `policy`'s podSelector selects.
    fn selected_by(&self, policy: &Policy) -> u32 {
        self.label_sets
            .iter()
            .filter(|(labels, _)| policy.pod_selector.matches(labels))
            .map(|(_, count)| *count)
            .sum()
    }
}

/// A policy and how many pods of its namespace its podSelector selects
/// (not counted, 0, for an empty podSelector: it selects every pod).
#[derive(Debug)]
pub struct CountedPolicy {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Pods (not host-network) of the namespace it selects.
    pub selected: u32,
}

impl CountedPolicy {
    /// True when its podSelector is not empty and selects no pod.
    pub fn is_orphan(&self) -> bool {
        self.selected == 0 && !self.policy.pod_selector.is_empty()
    }
}

/// Policies by the first `key=value` equality of their podSelector. A
/// namespace holds few policies: a sorted vector, searched by binary
/// search, costs no allocation when a policy changes (hash tables of label
/// values emptied and refilled by each policy update made glibc consolidate
/// its free lists in the middle of an update: the slowest policy updates).
#[derive(Debug, Default)]
pub struct PolicyIndex {
    /// Those with an equality, as (key, value, policy), sorted by key and
    /// value.
    by_label: Vec<(Str, Str, Arc<Policy>)>,
    /// Those whose podSelector has no equality (`{}` included).
    unindexed: Vec<Arc<Policy>>,
}

impl PolicyIndex {
    /// The policies filed under `key=value`.
    fn filed_under(&self, key: &str, value: &str) -> &[(Str, Str, Arc<Policy>)] {
        let start = self
            .by_label
            .partition_point(|(k, v, _)| (k.as_ref(), v.as_ref()) < (key, value));
        let len = self.by_label[start..]
            .iter()
            .take_while(|(k, v, _)| k.as_ref() == key && v.as_ref() == value)
            .count();
        &self.by_label[start..start + len]
    }

    /// The policies whose podSelector may select these labels (a superset:
    /// the selector is still to be checked), each once, unordered.
    pub fn maybe_selecting<'s, 'l>(
        &'s self,
        labels: &'l Labels,
    ) -> impl Iterator<Item = &'s Arc<Policy>> + use<'s, 'l> {
        labels
            .iter()
            .flat_map(|(key, value)| self.filed_under(key, value))
            .map(|(_, _, policy)| policy)
            .chain(self.unindexed.iter())
    }

    fn insert(&mut self, policy: &Arc<Policy>) {
        match policy.pod_selector.first_equality() {
            Some((key, value)) => {
                let at = self
                    .by_label
                    .partition_point(|(k, v, _)| (k, v) <= (key, value));
                self.by_label
                    .insert(at, (key.clone(), value.clone(), policy.clone()));
            }
            None => self.unindexed.push(policy.clone()),
        }
    }

    fn remove(&mut self, policy: &Arc<Policy>) {
        match policy.pod_selector.first_equality() {
            Some(_) => self
                .by_label
                .retain(|(_, _, other)| !Arc::ptr_eq(other, policy)),
            None => self.unindexed.retain(|other| !Arc::ptr_eq(other, policy)),
        }
    }
}

/// The policies of one namespace.
#[derive(Debug, Default)]
pub struct NamespacePolicies {
    /// By name, with their counts.
    pub by_name: BTreeMap<Str, CountedPolicy>,
    /// By podSelector.
    pub index: PolicyIndex,
}

/// Everything one namespace holds.
#[derive(Debug, Default)]
pub struct Namespaced {
    /// Its pods.
    pub pods: NamespacePods,
    /// Its policies.
    pub policies: NamespacePolicies,
}

impl Namespaced {
    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.pods.by_name.is_empty() && self.policies.by_name.is_empty()
    }

    /// Adds a pod (none of that name is there) and counts it for the
    /// policies that select it.
    pub fn insert_pod(&mut self, pod: Arc<Pod>, orphans: &mut Orphans) {
        for (label, value) in pod.labels.iter() {
            index::insert(&mut self.pods.by_label, label, value, pod.clone());
        }
        if !pod.host_network {
            *self.pods.label_sets.entry(pod.labels.clone()).or_default() += 1;
            self.count_pod(&pod.labels, orphans, |selected| {
                *selected += 1;
                *selected == 1
            });
        }
        self.pods.by_name.insert(pod.name.clone(), pod);
    }

    /// Removes a pod by name, uncounting it; returns it.
    pub fn remove_pod(&mut self, name: &str, orphans: &mut Orphans) -> Option<Arc<Pod>> {
        let pod = self.pods.by_name.remove(name)?;
        for (label, value) in pod.labels.iter() {
            index::remove_by(&mut self.pods.by_label, label, value, |other| {
                Arc::ptr_eq(other, &pod)
            });
        }
        if !pod.host_network {
            self.pods.label_sets.decrement(&pod.labels);
            self.count_pod(&pod.labels, orphans, |selected| {
                *selected = selected.saturating_sub(1);
                *selected == 0
            });
        }
        Some(pod)
    }

    /// Applies `change` to the count of every policy that selects `labels`;
    /// when it says the policy's orphan state flipped, records the flip.
    fn count_pod(
        &mut self,
        labels: &Labels,
        orphans: &mut Orphans,
        change: impl Fn(&mut u32) -> bool,
    ) {
        let selecting = self
            .policies
            .index
            .maybe_selecting(labels)
            .filter(|policy| !policy.pod_selector.is_empty())
            .filter(|policy| policy.pod_selector.matches(labels));
        for policy in selecting {
            let Some(counted) = self.policies.by_name.get_mut(&policy.name) else {
                continue;
            };
            if change(&mut counted.selected) {
                if counted.is_orphan() {
                    orphans.insert(counted.policy.clone());
                } else {
                    orphans.remove(&counted.policy.key());
                }
            }
        }
    }

    /// Adds a policy (none of that name is there), counting the pods it
    /// selects (an empty podSelector selects every pod and is not counted).
    pub fn insert_policy(&mut self, policy: Arc<Policy>, orphans: &mut Orphans) {
        self.policies.index.insert(&policy);
        let selected = if policy.pod_selector.is_empty() {
            0
        } else {
            self.pods.selected_by(&policy)
        };
        let counted = CountedPolicy { selected, policy };
        if counted.is_orphan() {
            orphans.insert(counted.policy.clone());
        }
        self.policies
            .by_name
            .insert(counted.policy.name.clone(), counted);
    }

    /// Removes a policy by name; returns it.
    pub fn remove_policy(&mut self, name: &str, orphans: &mut Orphans) -> Option<Arc<Policy>> {
        let CountedPolicy { policy, .. } = self.policies.by_name.remove(name)?;
        orphans.remove(&policy.key());
        self.policies.index.remove(&policy);
        Some(policy)
    }
}
