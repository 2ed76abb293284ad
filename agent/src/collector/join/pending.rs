//! What waits for a partner: a map with a deadline per entry and a bound
//! on its size. An entry leaves when its deadline passes ([`Pending::expire`])
//! or, when the map is full, the entry closest to its deadline leaves to
//! make room ([`Pending::insert`] returns it, so the caller counts it).

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    time::SystemTime,
};

/// Entries waiting until a deadline, at most `capacity` of them.
#[derive(Debug)]
pub struct Pending<K, V> {
    entries: HashMap<K, (V, (SystemTime, u64))>,
    /// Every entry's key by (deadline, insertion number): the next to
    /// leave first.
    deadlines: BTreeMap<(SystemTime, u64), K>,
    capacity: usize,
    inserted: u64,
}

impl<K: Clone + Eq + Hash, V> Pending<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            deadlines: BTreeMap::new(),
            capacity: capacity.max(1),
            inserted: 0,
        }
    }

    /// Keeps `value` under `key` until `deadline`, replacing what `key`
    /// held. When that makes one too many, returns the entry that left to
    /// make room (the one closest to its deadline).
    pub fn insert(&mut self, key: K, value: V, deadline: SystemTime) -> Option<(K, V)> {
        self.remove(&key);
        self.inserted += 1;
        let at = (deadline, self.inserted);
        self.deadlines.insert(at, key.clone());
        self.entries.insert(key, (value, at));
        if self.entries.len() > self.capacity {
            let (_, key) = self.deadlines.pop_first()?;
            let (value, _) = self.entries.remove(&key)?;
            return Some((key, value));
        }
        None
    }

    /// Takes the entry under `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, at) = self.entries.remove(key)?;
        self.deadlines.remove(&at);
        Some(value)
    }

    /// The entry under `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Takes out every entry whose deadline is at or before `now`, the
    /// earliest first.
    pub fn expire(&mut self, now: SystemTime) -> Vec<(K, V)> {
        let mut expired = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some((value, _)) = self.entries.remove(&key) {
                expired.push((key, value));
            }
        }
        expired
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
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
    fn entries_leave_at_their_deadline_and_a_replaced_one_keeps_only_its_new_one() {
        let mut pending = Pending::new(10);
        assert!(pending.insert("a", 1, at(10)).is_none());
        assert!(pending.insert("b", 2, at(20)).is_none());
        assert!(pending.insert("a", 3, at(30)).is_none());
        assert_eq!(pending.expire(at(15)), vec![]);
        assert_eq!(pending.expire(at(20)), vec![("b", 2)]);
        assert_eq!(pending.get(&"a"), Some(&3));
        assert_eq!(pending.expire(at(30)), vec![("a", 3)]);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn a_full_map_lets_the_entry_closest_to_its_deadline_go() {
        let mut pending = Pending::new(2);
        assert!(pending.insert("late", 1, at(50)).is_none());
        assert!(pending.insert("soon", 2, at(10)).is_none());
        assert_eq!(pending.insert("new", 3, at(40)), Some(("soon", 2)));
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.remove(&"late"), Some(1));
        assert_eq!(pending.expire(at(100)), vec![("new", 3)]);
    }
}
