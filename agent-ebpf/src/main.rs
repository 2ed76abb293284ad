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
    macros::{btf_tracepoint, cgroup_sock_addr, fentry, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, SockAddrContext, TracePointContext},
};

/// `tp_btf/kfree_skb(struct sk_buff *skb, void *location,
/// enum skb_drop_reason reason, ...)`: the preferred hook.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u64 = ctx.arg(2);
    hooks::kfree_skb::on_free(skb::TypedSkb::new(skb), location, reason as u32);
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
        (Ok(skb), Ok(location), Ok(reason)) => {
            hooks::kfree_skb::on_free(skb::CopiedSkb::load(skb, offsets::get()), location, reason)
        }
        _ => emit::count(dropscope_abi::Stat::ReadErrors),
    }
    0
}

/// cgroup `connect4` at the cgroup v2 root: what an IPv4 `connect()` asked
/// for. Always allows.
#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    hooks::sock_addr::on_connect4(&ctx);
    1
}

/// cgroup `connect6` at the cgroup v2 root: what an IPv6 `connect()` asked
/// for. Always allows.
#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    hooks::sock_addr::on_connect6(&ctx);
    1
}

/// `sock:inet_sock_set_state`: TCP sockets entering and leaving SYN_SENT.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if hooks::tcp::on_state(&ctx).is_err() {
        emit::count_socket(dropscope_abi::SocketStat::ConnectsUntracked);
    }
    0
}

/// `fentry/tcp_connect(struct sock *sk)`: a pending connect's port, as its
/// first SYN is built.
#[fentry(function = "tcp_connect")]
pub fn tcp_connect(ctx: FEntryContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    let _ = hooks::tcp::on_connect(sk);
    0
}

/// `tcp:tcp_retransmit_skb`: SYN retransmissions of pending connects.
#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let _ = hooks::tcp::on_retransmit(&ctx);
    0
}

/// `tcp:tcp_retransmit_synack`: a server socket here retransmitted its
/// SYN-ACK (counted; the handshake's last step went missing).
#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(_ctx: TracePointContext) -> u32 {
    emit::count_socket(dropscope_abi::SocketStat::SynAckRetransmits);
    0
}

/// The tc entry points, apart: the `classifier` macro's wrapper takes the
/// kernel's context pointer in a safe function.
#[allow(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "the classifier macro's wrapper takes the kernel's context pointer"
)]
mod classifiers {
    use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
    use dropscope_abi::{DIRECTION_EGRESS, DIRECTION_INGRESS};

    use crate::hooks;

    /// tc ingress on a watched interface: DNS messages arriving.
    #[classifier]
    pub fn tc_ingress(ctx: TcContext) -> i32 {
        let _ = hooks::tc::on_packet(&ctx, DIRECTION_INGRESS);
        TC_ACT_UNSPEC
    }

    /// tc egress on a watched interface: DNS messages and SYNs leaving.
    #[classifier]
    pub fn tc_egress(ctx: TcContext) -> i32 {
        let _ = hooks::tc::on_packet(&ctx, DIRECTION_EGRESS);
        TC_ACT_UNSPEC
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
