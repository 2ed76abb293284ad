//! Drops beyond the flow table: when no slot is free, a drop is counted in
//! one of a fixed number of per-CPU buckets chosen by its (reason,
//! location, destination, protocol), so a storm of new flows (a SYN flood
//! from random ports) costs a few plain adds per packet and a bounded
//! number of events, while every drop stays counted. User space sums the
//! buckets over CPUs and reports each as one aggregate.

use dropscope_abi::{FlowKey, maps::OVERFLOW_BUCKETS};

use crate::maps::OVERFLOW;

/// Counts one drop of `key` in its bucket; false when the bucket could not
/// be reached (never expected: the index is masked to the array's size).
#[inline(always)]
pub fn count(key: &FlowKey, len: u32, tcp_flags: u8, now: u64) -> bool {
    let Some(bucket) = OVERFLOW.get_ptr_mut(bucket_of(key)) else {
        return false;
    };
    // SAFETY: this CPU's bucket; a program run is not preempted by another
    // run of itself on the same CPU (recursion is refused by the kernel).
    unsafe {
        if (*bucket).packets == 0 {
            (*bucket).key = *key;
            (*bucket).first_ns = now;
        } else if !same_key(&(*bucket).key, key) {
            (*bucket).folded += 1;
        }
        (*bucket).packets += 1;
        (*bucket).bytes += len as u64;
        (*bucket).last_ns = now;
        (*bucket).tcp_flags |= tcp_flags as u64;
    }
    true
}

/// A multiplicative hash of what identifies "the same failure": reason,
/// kernel location, destination address and port, protocol. The source is
/// left out, so a flood from many ports lands in one bucket.
#[inline(always)]
fn bucket_of(key: &FlowKey) -> u32 {
    let tuple = &key.tuple;
    let word = |offset: usize| {
        u32::from_ne_bytes([
            tuple.dst_addr[offset],
            tuple.dst_addr[offset + 1],
            tuple.dst_addr[offset + 2],
            tuple.dst_addr[offset + 3],
        ])
    };
    let mut hash: u32 = 0x9e37_79b9;
    for value in [
        word(0),
        word(4),
        word(8),
        word(12),
        (u32::from(tuple.dst_port) << 8) | u32::from(tuple.protocol),
        key.reason,
        key.location as u32,
        (key.location >> 32) as u32,
    ] {
        hash = (hash ^ value).wrapping_mul(0x0100_0193);
        hash ^= hash >> 15;
    }
    hash & (OVERFLOW_BUCKETS - 1)
}

#[inline(always)]
fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    a.tuple.src_port == b.tuple.src_port
        && a.tuple.dst_port == b.tuple.dst_port
        && a.tuple.src_addr == b.tuple.src_addr
        && a.tuple.dst_addr == b.tuple.dst_addr
        && a.tuple.protocol == b.tuple.protocol
        && a.reason == b.reason
        && a.location == b.location
        && a.device == b.device
}
