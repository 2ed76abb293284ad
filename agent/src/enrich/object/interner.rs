//! Interning: equal strings, label sets, container port lists and
//! workloads share one allocation, so what thousands of replicas repeat
//! costs once.

use std::sync::Arc;

use super::{ContainerPort, Str, Workload};
use crate::enrich::change::HashSet;

/// Interns strings: equal strings share one allocation.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Str>,
    /// Whole label sets: the replicas of a workload share one.
    label_sets: HashSet<Arc<[(Str, Str)]>>,
    /// Whole container port lists, shared the same way.
    port_lists: HashSet<Arc<[ContainerPort]>>,
    /// Owning workloads: the replicas of a workload share one.
    workloads: HashSet<Arc<Workload>>,
}

impl Interner {
    /// The shared copy of `value`.
    pub fn get(&mut self, value: &str) -> Str {
        if let Some(found) = self.strings.get(value) {
            return found.clone();
        }
        let new: Str = Arc::from(value);
        self.strings.insert(new.clone());
        new
    }

    /// The shared copy of a label set.
    pub(super) fn label_set(&mut self, labels: Vec<(Str, Str)>) -> Arc<[(Str, Str)]> {
        if let Some(found) = self.label_sets.get(labels.as_slice()) {
            return found.clone();
        }
        let new: Arc<[(Str, Str)]> = Arc::from(labels);
        self.label_sets.insert(new.clone());
        new
    }

    /// The shared copy of a container port list.
    pub(super) fn port_list(&mut self, ports: Vec<ContainerPort>) -> Arc<[ContainerPort]> {
        if let Some(found) = self.port_lists.get(ports.as_slice()) {
            return found.clone();
        }
        let new: Arc<[ContainerPort]> = Arc::from(ports);
        self.port_lists.insert(new.clone());
        new
    }

    /// The shared copy of a workload.
    pub(super) fn workload(&mut self, kind: &str, name: &str) -> Arc<Workload> {
        let workload = Workload {
            kind: self.get(kind),
            name: self.get(name),
        };
        if let Some(found) = self.workloads.get(&workload) {
            return found.clone();
        }
        let new = Arc::new(workload);
        self.workloads.insert(new.clone());
        new
    }

    /// Values held: strings, label sets, port lists and workloads.
    pub fn len(&self) -> usize {
        self.strings.len() + self.label_sets.len() + self.port_lists.len() + self.workloads.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets strings, label sets, port lists and workloads no object uses
    /// any more (the shared sets first: they hold strings).
    pub fn prune(&mut self) {
        self.label_sets.retain(|set| Arc::strong_count(set) > 1);
        self.port_lists.retain(|list| Arc::strong_count(list) > 1);
        self.workloads
            .retain(|workload| Arc::strong_count(workload) > 1);
        self.strings.retain(|string| Arc::strong_count(string) > 1);
    }
}
