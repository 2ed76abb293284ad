//! dropscope's kernel programs: entry points only.
//!
//! Each entry point is a thin wrapper that pulls its arguments out of the
//! hook's context and hands them to the hook module; the hook's `Result` is
//! folded into the per-CPU statistics, never into the kernel's behaviour
//! (every program here only observes).
#![no_std]
#![no_main]
// Atomic add on the memory-mapped flow counters (see `aggregate`).
#![allow(
    internal_features,
    reason = "atomic_xadd: no fetch_add on the BPF target"
)]
#![feature(core_intrinsics)]

mod aggregate;
mod conntrack;
mod emit;
mod filter;
mod hooks;
mod maps;
mod offsets;
mod overflow;
mod read;
mod skb;

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};

/// `tp_btf/kfree_skb(struct sk_buff *skb, void *location,
/// enum skb_drop_reason reason, ...)`: the preferred hook.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u64 = ctx.arg(2);
    hooks::kfree_skb::on_free(skb, location, reason as u32);
    0
}

/// The floor of being attached, for `cargo xtask bench` only (`dropscope
/// agent --hook floor`): the same hook doing nothing but the reason filter,
/// so the benchmark can tell the cost of dropscope's work from the cost of
/// any program at all on this tracepoint.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_floor(ctx: BtfTracePointContext) -> i32 {
    let reason: u64 = ctx.arg(2);
    if !filter::selected(reason as u32) {
        emit::count(dropscope_abi::Stat::Filtered);
    }
    0
}

/// Classic `tracepoint/skb/kfree_skb`: the fallback where `tp_btf` cannot
/// attach. Field offsets come from the tracepoint's `format` file.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb_tracepoint(ctx: TracePointContext) -> u32 {
    let layout = offsets::get().tracepoint;
    // SAFETY: the offsets were read from this tracepoint's format file and
    // `read_at` goes through bpf_probe_read_kernel.
    let fields = unsafe {
        (
            ctx.read_at::<u64>(layout.skbaddr as usize),
            ctx.read_at::<u64>(layout.location as usize),
            ctx.read_at::<u32>(layout.reason as usize),
        )
    };
    match fields {
        (Ok(skb), Ok(location), Ok(reason)) => hooks::kfree_skb::on_free(skb, location, reason),
        _ => emit::count(dropscope_abi::Stat::ReadErrors),
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
