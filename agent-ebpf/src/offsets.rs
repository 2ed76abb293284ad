//! Kernel struct offsets, set by the agent at load time from the running
//! kernel's BTF (`EbpfLoader::set_global`), so one object runs on many kernels.

use dropscope_abi::{
    ConntrackTupleOffsets, KernelOffsets, OFFSET_MISSING, SocketOffsets, TracepointOffsets,
};

const MISSING_TUPLE: ConntrackTupleOffsets = ConntrackTupleOffsets {
    src_addr: OFFSET_MISSING,
    src_port: OFFSET_MISSING,
    src_l3num: OFFSET_MISSING,
    dst_addr: OFFSET_MISSING,
    dst_port: OFFSET_MISSING,
    dst_protonum: OFFSET_MISSING,
};

/// Overwritten in `.rodata` by the agent before the program is loaded.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    skb_window_start: 0,
    skb_window_len: 0,
    skb_head: OFFSET_MISSING,
    skb_network_header: OFFSET_MISSING,
    skb_len: OFFSET_MISSING,
    skb_dev: OFFSET_MISSING,
    skb_iif: OFFSET_MISSING,
    skb_nfct: OFFSET_MISSING,
    skb_sk: OFFSET_MISSING,
    dev_ifindex: OFFSET_MISSING,
    dev_nd_net: OFFSET_MISSING,
    sk_net: OFFSET_MISSING,
    net_ns_inum: OFFSET_MISSING,
    ct_tuple_original: OFFSET_MISSING,
    ct_tuple_reply: OFFSET_MISSING,
    tuple: MISSING_TUPLE,
    tracepoint: TracepointOffsets {
        skbaddr: 8,
        location: 16,
        reason: 36,
    },
};

/// Overwritten in `.rodata` by the agent before the socket programs load;
/// the defaults are Linux 6.18's.
#[unsafe(no_mangle)]
static SOCKET_OFFSETS: SocketOffsets = SocketOffsets {
    state_skaddr: 8,
    state_oldstate: 16,
    state_newstate: 20,
    state_sport: 24,
    state_dport: 26,
    state_family: 28,
    state_protocol: 30,
    state_saddr: 32,
    state_daddr: 36,
    state_saddr_v6: 40,
    state_daddr_v6: 56,
    retransmit_skaddr: 16,
    retransmit_state: 24,
    retransmit_sport: 28,
    sk_num: OFFSET_MISSING,
    sk_err: OFFSET_MISSING,
    sk_net: OFFSET_MISSING,
    net_ns_inum: OFFSET_MISSING,
};

/// The socket tracepoints' field offsets and socket fields of the running
/// kernel.
#[inline(always)]
pub fn socket() -> &'static SocketOffsets {
    // SAFETY: as in `get`.
    unsafe { &*core::ptr::read_volatile(&(&raw const SOCKET_OFFSETS)) }
}

/// The offsets of the running kernel.
#[inline(always)]
pub fn get() -> &'static KernelOffsets {
    // SAFETY: the pointer is read back through a volatile load, so the
    // compiler cannot fold the placeholder values the agent overwrites at
    // load time, and nothing is copied onto the 512-byte BPF stack.
    unsafe { &*core::ptr::read_volatile(&(&raw const OFFSETS)) }
}

/// True when the running kernel has the field at `offset`.
#[inline(always)]
pub fn present(offset: u32) -> bool {
    offset != OFFSET_MISSING
}
