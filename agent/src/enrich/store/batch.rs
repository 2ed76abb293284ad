//! Bursts of watch events (a rollout, a relist) applied in batches under
//! one write lock each, every batch bounded in time, so that readers of
//! the shared store (explanations) wait at most one batch, never the
//! whole burst. The watcher takes what its streams have ready (at most
//! [`MAX_BATCH`] items), then applies them [`WRITE_BUDGET`] at a time,
//! releasing the lock in between (tokio's lock is fair: readers queued
//! meanwhile go first).

use std::time::{Duration, Instant};

use super::Store;

/// The most items taken from the watch streams at once.
pub const MAX_BATCH: usize = 256;

/// How long one batch may hold the write lock (the first item of a batch
/// is always applied, whatever it costs).
pub const WRITE_BUDGET: Duration = Duration::from_micros(250);

/// Applies items from `pending` with `apply` until it is empty or `budget`
/// has passed since the call (at least one item when there is one);
/// returns how many it applied.
pub fn apply_within<T>(
    store: &mut Store,
    pending: &mut impl Iterator<Item = T>,
    budget: Duration,
    mut apply: impl FnMut(&mut Store, T),
) -> usize {
    let started = Instant::now();
    let mut applied = 0;
    while applied == 0 || started.elapsed() < budget {
        let Some(item) = pending.next() else { break };
        apply(store, item);
        applied += 1;
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_stops_at_its_budget_and_takes_at_least_one() {
        let mut store = Store::new();
        let mut pending = 0..10;
        let slow = |_: &mut Store, _: i32| std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            apply_within(&mut store, &mut pending, Duration::ZERO, slow),
            1
        );
        // Each item takes at least 2 ms: within 3 ms, one or two start
        // (two unless the machine stalled the first), never a third.
        let second = apply_within(&mut store, &mut pending, Duration::from_millis(3), slow);
        assert!(
            (1..=2).contains(&second),
            "{second} items started within a 3 ms budget"
        );
        let mut seen = Vec::new();
        let count = apply_within(
            &mut store,
            &mut pending,
            Duration::from_secs(60),
            |_, item| seen.push(item),
        );
        assert_eq!(count, 9 - second);
        assert_eq!(seen, (1 + second as i32..10).collect::<Vec<_>>());
        assert_eq!(
            apply_within(&mut store, &mut pending, Duration::from_secs(60), |_, _| {}),
            0
        );
    }
}
