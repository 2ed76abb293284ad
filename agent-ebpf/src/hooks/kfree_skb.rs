//! `kfree_skb`: every freed skb with a drop reason passes here.
//!
//! Order of work, cheapest first: the reason filter (normal frees stop
//! here), the packet headers, the aggregation lookup (repeat drops stop
//! there, having read no clock: see `aggregate`), and only for a new flow
//! the clock, the conntrack tuples and a ring-buffer record. With no free
//! flow slot the drop is counted in an overflow bucket instead: never one
//! record per packet.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns};
use dropscope_abi::{DropRecord, FlowKey, KIND_DROP, RECORD_VERSION, RecordHeader, Stat, Tuple};

use crate::{
    aggregate::{self, Slot},
    conntrack, emit, filter,
    maps::SCRATCH,
    offsets, overflow,
    skb::{self, SkbFields},
};

/// Handles one freed skb, whose fields `skb` reads.
#[inline(always)]
pub fn on_free(skb: impl SkbFields, location: u64, reason: u32) {
    if !filter::selected(reason) {
        emit::count(Stat::Filtered);
        return;
    }
    let off = offsets::get();
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        emit::count(Stat::ReadErrors);
        return;
    };
    // SAFETY: this CPU's scratch; nothing else uses `key` during the run.
    let key: &mut FlowKey = unsafe { &mut (*scratch).key };
    let Some(tcp_flags) = skb::packet(&skb, off, &mut key.tuple) else {
        emit::count(Stat::NotIp);
        return;
    };
    let len = skb::len(&skb, off);
    key.reason = reason;
    key._pad = 0;
    key.location = location;
    key.device = skb::device(&skb, off);
    let key: &FlowKey = key;
    if aggregate::add_to_existing(key, len, tcp_flags) {
        emit::count(Stat::Aggregated);
        return;
    }
    // (The coarse clock would be cheaper, but tracing programs may not
    // call bpf_ktime_get_coarse_ns.)
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // No slot to take: straight to the overflow bucket, without a ring
    // reservation (checked again below, after reserving, for the race).
    if aggregate::table_full() {
        emit::count(if overflow::count(key, len, tcp_flags, now) {
            Stat::Overflow
        } else {
            Stat::ReadErrors
        });
        return;
    }
    // Reserve before taking a slot: a new flow is only ever created with
    // its record on the way, so user space knows every slot in use.
    let Some(mut entry) = emit::reserve() else {
        // The agent is behind: the drop is still counted, aggregated by
        // destination, and the flow gets its record once there is room.
        emit::count(if overflow::count(key, len, tcp_flags, now) {
            Stat::RingFull
        } else {
            Stat::LostRingFull
        });
        return;
    };
    let slot = match aggregate::account(key, len, tcp_flags, now) {
        Slot::Existing => {
            entry.discard(0);
            emit::count(Stat::Aggregated);
            return;
        }
        Slot::New(slot) => slot,
        Slot::Full => {
            entry.discard(0);
            emit::count(if overflow::count(key, len, tcp_flags, now) {
                Stat::Overflow
            } else {
                Stat::ReadErrors
            });
            return;
        }
    };
    let placement = skb::placement(&skb, off);
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at reserved ring-buffer memory of the right
    // size; every field is written before submit. Written in place, not
    // built on the 512-byte BPF stack.
    unsafe {
        (*record).header = RecordHeader {
            kind: KIND_DROP,
            version: RECORD_VERSION,
            len: core::mem::size_of::<DropRecord>() as u16,
            cpu: bpf_get_smp_processor_id(),
        };
        (*record).slot = slot;
        (*record).len = len;
        (*record).time_ns = now;
        (*record).key = *key;
        (*record).ifindex = placement.ifindex;
        (*record).ingress_ifindex = placement.ingress_ifindex;
        (*record).tcp_flags = tcp_flags;
        (*record)._pad = [0; 2];
        (*record).netns = placement.netns;
        (*record).ct_original = Tuple::default();
        (*record).ct_reply = Tuple::default();
        (*record).ct_info = conntrack::read_into(
            &skb,
            off,
            &mut (*record).ct_original,
            &mut (*record).ct_reply,
        );
    }
    entry.submit(0);
    emit::count(Stat::NewFlow);
}
