//! In-kernel aggregation: one record per flow on first sight, then only
//! counters.
//!
//! `FLOWS` maps a [`FlowKey`] to a slot of the memory-mapped `COUNTERS`
//! array. Slots come from the `FREE_SLOTS` queue, which the agent fills at
//! start and refills when it retires an idle flow. The agent reads the
//! counters in place, so counts never travel through the ring buffer and a
//! repeated drop costs two atomic adds.
//!
//! A burst of drops of one flow on one CPU (a blocked client retrying, a
//! stream into a closed port) skips the hash lookup too: each CPU remembers
//! the flow it counted last and its slot (`Scratch::recent`), and a drop
//! with the same key goes straight to the slot, once the slot's `first_ns`
//! proves it still belongs to that flow. User space zeroes `first_ns` after
//! removing a retired flow from `FLOWS`, so a remembered slot stops
//! matching before it can be handed out again, and an add racing with the
//! retirement lands within the grace period that precedes the final count.
//!
//! A repeated drop reads no clock: in a VM the clock read was a sixth of
//! the hook's cost. The kernel keeps the time of a flow's first drop; user
//! space dates later drops by the sample that saw the count grow (to within
//! one sample interval), and retires a flow whose count stopped growing.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::BPF_NOEXIST;
use dropscope_abi::{FlowCounters, FlowKey};

use crate::maps::{COUNTERS, FLOWS, FREE_SLOTS, SCRATCH};

/// Where a drop went.
pub enum Slot {
    /// Added to the counters of a flow user space already knows.
    Existing,
    /// A new flow now owns this slot, with the drop counted in it.
    New(u32),
    /// No slot could be had (all in use): the drop stands alone.
    Full,
}

/// Counts the first dropped packet of a flow the caller found no slot for
/// (`add_to_existing`), `len` bytes at `now`.
#[inline(always)]
pub fn account(key: &FlowKey, len: u32, tcp_flags: u8, now: u64) -> Slot {
    // The caller found no slot for the flow just before: take one; should
    // another CPU create the flow meanwhile, the insert below says so.
    let slot = match FREE_SLOTS.pop() {
        Ok(Some(slot)) => slot,
        _ => return Slot::Full,
    };
    let fresh = FlowCounters {
        packets: 1,
        bytes: len as u64,
        first_ns: now,
        tcp_flags: tcp_flags as u64,
    };
    if COUNTERS.set(slot, &fresh, 0).is_err() {
        let _ = FREE_SLOTS.push(&slot, 0);
        return Slot::Full;
    }
    if FLOWS.insert(key, &slot, BPF_NOEXIST as u64).is_ok() {
        remember(key, slot, now);
        return Slot::New(slot);
    }
    // Another CPU created the flow meanwhile, or the map is full.
    let _ = FREE_SLOTS.push(&slot, 0);
    if add_to_existing(key, len, tcp_flags) {
        Slot::Existing
    } else {
        Slot::Full
    }
}

/// True when no slot is free now (a peek: the race with a slot being
/// given back is settled by [`account`]).
#[inline(always)]
pub fn table_full() -> bool {
    !matches!(FREE_SLOTS.peek(), Ok(Some(_)))
}

/// Adds one dropped packet to its flow if the flow already has a slot: the
/// fast path of a repeated drop. False when the flow is new.
#[inline(always)]
pub fn add_to_existing(key: &FlowKey, len: u32, tcp_flags: u8) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch; a program run is not preempted by another
    // run on the same CPU (recursion is refused by the kernel).
    let recent = unsafe { &(*scratch).recent };
    if recent.first_ns != 0
        && same_flow(&recent.key, key)
        && let Some(counters) = COUNTERS.get_ptr_mut(recent.slot)
        // SAFETY: a pointer into the array map; a single aligned load.
        && unsafe { (&raw const (*counters).first_ns).read_volatile() } == recent.first_ns
    {
        add(counters, len, tcp_flags);
        return true;
    }
    let Some(slot) = FLOWS.get_ptr(key) else {
        return false;
    };
    // SAFETY: map values stay valid for the program's run.
    let slot = unsafe { *slot };
    let Some(counters) = COUNTERS.get_ptr_mut(slot) else {
        return false;
    };
    add(counters, len, tcp_flags);
    // SAFETY: as above.
    let first_ns = unsafe { (&raw const (*counters).first_ns).read_volatile() };
    remember(key, slot, first_ns);
    true
}

/// Makes `key` this CPU's recent flow, owning `slot` since `first_ns` (0,
/// a slot being retired, remembers nothing).
#[inline(always)]
fn remember(key: &FlowKey, slot: u32, first_ns: u64) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: as in `add_to_existing`.
    let recent = unsafe { &mut (*scratch).recent };
    recent.key = *key;
    recent.slot = slot;
    recent.first_ns = first_ns;
}

/// Whether two keys are the same flow: word by word, most variable first
/// (ports, then addresses).
#[inline(always)]
fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    const WORDS: usize = core::mem::size_of::<FlowKey>() / 8;
    const ORDER: [usize; WORDS] = [4, 3, 1, 2, 0, 5, 6, 7];
    let a = (a as *const FlowKey).cast::<u64>();
    let b = (b as *const FlowKey).cast::<u64>();
    for index in ORDER {
        // SAFETY: index < WORDS; FlowKey is 8-byte aligned plain data.
        if unsafe { a.add(index).read() != b.add(index).read() } {
            return false;
        }
    }
    true
}

/// Counts one packet of `len` bytes in `counters`.
#[inline(always)]
fn add(counters: *mut FlowCounters, len: u32, tcp_flags: u8) {
    // SAFETY: the pointer is into the array map, 8-byte aligned; the agent
    // only reads these words, and every writer here uses atomics.
    unsafe {
        // The BPF target has no `AtomicU64::fetch_add`; the intrinsic with
        // an unused result compiles to the kernel's atomic add instruction.
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*counters).packets, 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            &raw mut (*counters).bytes,
            len as u64,
        );
        // A single aligned 64-bit load and store: the BPF backend selects
        // no atomic load/store, and a plain one is not torn.
        let flags = &raw mut (*counters).tcp_flags;
        let seen = flags.read_volatile();
        if seen & tcp_flags as u64 != tcp_flags as u64 {
            // A racing update may lose a bit: flags are a hint, counts are exact.
            flags.write_volatile(seen | tcp_flags as u64);
        }
    }
}
