//! In-kernel aggregation: one record per flow on first sight, then only
//! counters.
//!
//! `FLOWS` maps a [`FlowKey`] to a slot of the memory-mapped `COUNTERS`
//! array. Slots come from the `FREE_SLOTS` queue, which the agent fills at
//! start and refills when it retires an idle flow. The agent reads the
//! counters in place, so counts never travel through the ring buffer and a
//! flood costs one atomic add per packet.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::BPF_NOEXIST;
use dropscope_abi::{FlowCounters, FlowKey};

use crate::maps::{COUNTERS, FLOWS, FREE_SLOTS};

/// Where a drop went.
pub enum Slot {
    /// Added to the counters of a flow user space already knows.
    Existing,
    /// A new flow now owns this slot, with the drop counted in it.
    New(u32),
    /// No slot could be had (all in use): the drop stands alone.
    Full,
}

/// Counts one dropped packet of `len` bytes at `now` against its flow.
#[inline(always)]
pub fn account(key: &FlowKey, len: u32, tcp_flags: u8, now: u64) -> Slot {
    if add_to_existing(key, len, tcp_flags, now) {
        return Slot::Existing;
    }
    let slot = match FREE_SLOTS.pop() {
        Ok(Some(slot)) => slot,
        _ => return Slot::Full,
    };
    let fresh = FlowCounters {
        packets: 1,
        bytes: len as u64,
        first_ns: now,
        last_ns: now,
        tcp_flags: tcp_flags as u64,
    };
    if COUNTERS.set(slot, &fresh, 0).is_err() {
        let _ = FREE_SLOTS.push(&slot, 0);
        return Slot::Full;
    }
    if FLOWS.insert(key, &slot, BPF_NOEXIST as u64).is_ok() {
        return Slot::New(slot);
    }
    // Another CPU created the flow meanwhile, or the map is full.
    let _ = FREE_SLOTS.push(&slot, 0);
    if add_to_existing(key, len, tcp_flags, now) {
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
pub fn add_to_existing(key: &FlowKey, len: u32, tcp_flags: u8, now: u64) -> bool {
    match FLOWS.get_ptr(key) {
        Some(slot) => {
            // SAFETY: map values stay valid for the program's run.
            add(unsafe { *slot }, len, tcp_flags, now);
            true
        }
        None => false,
    }
}

#[inline(always)]
fn add(slot: u32, len: u32, tcp_flags: u8, now: u64) {
    let Some(counters) = COUNTERS.get_ptr_mut(slot) else {
        return;
    };
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
        // Single aligned 64-bit loads and stores: the BPF backend selects
        // no atomic load/store, and a plain one is not torn.
        (&raw mut (*counters).last_ns).write_volatile(now);
        let flags = &raw mut (*counters).tcp_flags;
        let seen = flags.read_volatile();
        if seen & tcp_flags as u64 != tcp_flags as u64 {
            // A racing update may lose a bit: flags are a hint, counts are exact.
            flags.write_volatile(seen | tcp_flags as u64);
        }
    }
}
