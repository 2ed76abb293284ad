//! What leaves the kernel: ring-buffer records and the per-CPU statistics
//! that account for every selected drop (in a record, in a flow's counters,
//! or lost, and why).

use aya_ebpf::maps::ring_buf::RingBufEntry;
use dropscope_abi::{DropRecord, SocketStat, Stat};

use crate::maps::{EVENTS, SOCKET_STATS, STATS};

/// Adds one to a per-CPU statistic.
#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(counter) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot of this CPU; programs do not migrate while running.
        unsafe { *counter += 1 };
    }
}

/// Reserves room for one record; `None` when the ring buffer is full.
#[inline(always)]
pub fn reserve() -> Option<RingBufEntry<DropRecord>> {
    EVENTS.reserve::<DropRecord>(0)
}

/// Adds one to a per-CPU statistic of the socket and tc hooks.
#[inline(always)]
pub fn count_socket(stat: SocketStat) {
    if let Some(counter) = SOCKET_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot of this CPU; programs do not migrate while running.
        unsafe { *counter += 1 };
    }
}
