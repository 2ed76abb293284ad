//! The bounded set of `namespace` label values: the first namespaces seen
//! keep their own value, later ones share `other`, drops without a known
//! namespace get `none`.

use std::{
    collections::HashSet,
    sync::{Arc, PoisonError, RwLock},
};

/// The label value of drops whose namespace is not known.
const NONE: &str = "none";

/// The label value of drops in a namespace past the bound.
const OTHER: &str = "other";

/// Namespace label values, at most `max` distinct namespaces.
#[derive(Debug)]
pub(super) struct NamespaceLabels {
    max: usize,
    admitted: RwLock<HashSet<Arc<str>>>,
    none: Arc<str>,
    other: Arc<str>,
}

impl NamespaceLabels {
    /// Room for `max` namespaces.
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            admitted: RwLock::new(HashSet::new()),
            none: NONE.into(),
            other: OTHER.into(),
        }
    }

    /// The label value for a drop in `namespace`: the namespace itself while
    /// there is room (or it already has a value), `other` past the bound,
    /// `none` when unknown.
    pub(super) fn label(&self, namespace: Option<&str>) -> Arc<str> {
        let Some(namespace) = namespace else {
            return Arc::clone(&self.none);
        };
        if let Some(value) = self
            .admitted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
        {
            return Arc::clone(value);
        }
        let mut admitted = self
            .admitted
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = admitted.get(namespace) {
            return Arc::clone(value);
        }
        if admitted.len() >= self.max {
            return Arc::clone(&self.other);
        }
        let value: Arc<str> = namespace.into();
        admitted.insert(Arc::clone(&value));
        tracing::debug!(
            namespace,
            admitted = admitted.len(),
            "namespace label added"
        );
        if admitted.len() == self.max {
            tracing::info!(
                max_namespaces = self.max,
                "namespace label bound reached: drops in further namespaces count as other"
            );
        }
        value
    }
}
