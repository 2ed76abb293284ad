//! cgroup `connect4` / `connect6` at the cgroup v2 root: the destination a
//! `connect()` asked for, before any socket-level translation, kept per
//! thread until the socket enters SYN_SENT in the same call (see `tcp`).
//! Never changes the connect: the programs always allow.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::SockAddrContext};
use dropscope_abi::{AskedDestination, FAMILY_IPV4, FAMILY_IPV6, proto};

use crate::maps::CONNECTING;

/// Remembers an IPv4 TCP `connect()`'s destination.
#[inline(always)]
pub fn on_connect4(ctx: &SockAddrContext) {
    // SAFETY: the context pointer the kernel passed; these fields are
    // readable in every sock_addr program.
    let (protocol, ip, port) = unsafe {
        let addr = &*ctx.sock_addr;
        (addr.protocol, addr.user_ip4, addr.user_port)
    };
    if protocol != u32::from(proto::TCP) {
        return;
    }
    let mut asked = AskedDestination {
        family: FAMILY_IPV4,
        port: u16::from_be(port as u16),
        ..AskedDestination::default()
    };
    asked.addr[..4].copy_from_slice(&ip.to_ne_bytes());
    let _ = CONNECTING.insert(&bpf_get_current_pid_tgid(), &asked, 0);
}

/// Remembers an IPv6 TCP `connect()`'s destination.
#[inline(always)]
pub fn on_connect6(ctx: &SockAddrContext) {
    // SAFETY: as in `on_connect4`.
    let (protocol, words, port) = unsafe {
        let addr = &*ctx.sock_addr;
        (
            addr.protocol,
            [
                addr.user_ip6[0],
                addr.user_ip6[1],
                addr.user_ip6[2],
                addr.user_ip6[3],
            ],
            addr.user_port,
        )
    };
    if protocol != u32::from(proto::TCP) {
        return;
    }
    let mut asked = AskedDestination {
        family: FAMILY_IPV6,
        port: u16::from_be(port as u16),
        ..AskedDestination::default()
    };
    for (index, word) in words.iter().enumerate() {
        asked.addr[index * 4..index * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let _ = CONNECTING.insert(&bpf_get_current_pid_tgid(), &asked, 0);
}
