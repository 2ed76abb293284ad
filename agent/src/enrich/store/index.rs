//! Label indexes: items by label key, then value, kept by the store in
//! [`super::Store::apply`] and read by the view; and counts that forget a
//! key at zero.

use std::collections::BTreeMap;

use super::{HashMap, Str};

/// Items by label key, then value.
pub type LabelIndex<T> = HashMap<Str, HashMap<Str, Vec<T>>>;

/// Files `item` under `key=value`.
pub fn insert<T>(index: &mut LabelIndex<T>, key: &Str, value: &Str, item: T) {
    index
        .entry(key.clone())
        .or_default()
        .entry(value.clone())
        .or_default()
        .push(item);
}

/// Takes the items `is_item` picks out of `key=value`, forgetting the value
/// and the key once empty.
pub fn remove_by<T>(
    index: &mut LabelIndex<T>,
    key: &str,
    value: &str,
    is_item: impl Fn(&T) -> bool,
) {
    let Some(values) = index.get_mut(key) else {
        return;
    };
    if let Some(items) = values.get_mut(value) {
        items.retain(|other| !is_item(other));
        if items.is_empty() {
            values.remove(value);
        }
    }
    if values.is_empty() {
        index.remove(key);
    }
}

/// The items filed under `key=value` (none when there are none).
pub fn get<'i, T>(index: &'i LabelIndex<T>, key: &str, value: &str) -> &'i [T] {
    index
        .get(key)
        .and_then(|values| values.get(value))
        .map_or(&[], Vec::as_slice)
}

/// A map of counts (hash or ordered) that forgets a key at zero.
pub trait CountMap<K> {
    /// Takes one from `key`'s count; removes it at zero.
    fn decrement(&mut self, key: &K);
}

impl<K: std::hash::Hash + Eq> CountMap<K> for HashMap<K, u32> {
    fn decrement(&mut self, key: &K) {
        if let Some(count) = self.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.remove(key);
            }
        }
    }
}

impl<K: Ord> CountMap<K> for BTreeMap<K, u32> {
    fn decrement(&mut self, key: &K) {
        if let Some(count) = self.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.remove(key);
            }
        }
    }
}
