//! A burst of watch events (a rollout) applied to the built store the way
//! the watcher applies it (`enrich::watch::run`): what the streams have
//! ready, at most `MAX_BATCH` at a time, in batches of at most
//! `WRITE_BUDGET` under one write lock each, on tokio's fair `RwLock`;
//! meanwhile another thread explains flows under the read lock, timing
//! each from asking for the lock to the answer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use dropscope::{
    enrich::{
        store::{
            Store, WatchEvent,
            batch::{self, MAX_BATCH, WRITE_BUDGET},
        },
        view::View,
    },
    explain::{Flow, explain},
};
use tokio::sync::RwLock;

/// What applying the burst cost, and what explanations waited meanwhile.
pub struct Burst {
    /// Events applied.
    pub events: usize,
    /// From the first batch to the last.
    pub total: Duration,
    /// Write-lock holds.
    pub batches: usize,
    /// Each write-lock hold, sorted.
    pub holds: Vec<Duration>,
    /// Each explanation during the burst (lock wait included), sorted.
    pub reads: Vec<Duration>,
}

/// Applies `events` to `store` in batches while `flows` are explained in a
/// loop on another thread; returns the store and the figures.
pub fn run(store: Store, events: Vec<WatchEvent>, flows: Vec<Flow>) -> (Store, Burst) {
    let count = events.len();
    let lock = Arc::new(RwLock::new(store));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let lock = Arc::clone(&lock);
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut reads = Vec::new();
            for flow in flows.iter().cycle() {
                if done.load(Ordering::Acquire) {
                    break;
                }
                let started = Instant::now();
                let store = lock.blocking_read();
                let _ = std::hint::black_box(explain(&View::new(&store), flow));
                drop(store);
                reads.push(started.elapsed());
            }
            reads
        })
    };
    let started = Instant::now();
    let mut holds = Vec::new();
    let mut events = events.into_iter();
    loop {
        let ready: Vec<WatchEvent> = events.by_ref().take(MAX_BATCH).collect();
        if ready.is_empty() {
            break;
        }
        let mut pending = ready.into_iter().peekable();
        while pending.peek().is_some() {
            let mut store = lock.blocking_write();
            let held = Instant::now();
            batch::apply_within(&mut store, &mut pending, WRITE_BUDGET, |store, event| {
                if let Err(error) = store.apply(event) {
                    panic!("bench object rejected: {error}");
                }
            });
            drop(store);
            holds.push(held.elapsed());
        }
    }
    let total = started.elapsed();
    done.store(true, Ordering::Release);
    let mut reads = match reader.join() {
        Ok(reads) => reads,
        Err(_) => panic!("the explaining thread panicked"),
    };
    let store = match Arc::try_unwrap(lock) {
        Ok(lock) => lock.into_inner(),
        Err(_) => panic!("the store is still shared"),
    };
    holds.sort_unstable();
    reads.sort_unstable();
    let burst = Burst {
        events: count,
        total,
        batches: holds.len(),
        holds,
        reads,
    };
    (store, burst)
}
