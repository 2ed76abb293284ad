//! tc on the node's interfaces (host side of pod veths, the uplink): DNS
//! messages to or from port 53 go to user space with the start of their
//! payload, and so do a DNS client's packets after DNAT (to any port, e.g.
//! CoreDNS's 5353 on another node) and the answers before reverse NAT: the
//! client socket is remembered (`DNS_CLIENTS`) for a few seconds after each
//! query. A pending connect's SYN leaving by an interface is noted on its
//! `CONNECTS` entry (the evidence that it left this node). Every other
//! packet costs the header loads and one map lookup. The program never
//! changes a packet's fate: it always returns "next".
//!
//! Watched interfaces carry Ethernet frames (user space attaches only to
//! `ARPHRD_ETHER` devices), so the IP header is at byte 14.

use aya_ebpf::{
    EbpfContext as _,
    bindings::__sk_buff,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_skb_load_bytes},
    programs::TcContext,
};
use dropscope_abi::{
    DNS_CAPTURE, DnsRecord, FAMILY_IPV4, FAMILY_IPV6, KIND_DNS, RECORD_VERSION, RecordHeader,
    SocketStat, SourceKey, Tuple, maps::DNS_CLIENT_TTL_NS, proto,
};

use crate::{
    emit,
    maps::{CONNECTS, DNS_CLIENTS, SOCKET_EVENTS, SYN_SOURCES},
};

const ETH_HEADER: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const DNS_PORT: u16 = 53;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Where the transport header and payload are.
struct Transport {
    tuple: Tuple,
    /// Offset of the L4 header.
    l4: usize,
    /// Offset of the payload.
    payload: usize,
    /// TCP flags (0 for UDP).
    flags: u8,
}

/// A `T` at `offset` of the packet: read in place when the bytes are in
/// the linear part of the skb (the usual case for headers; bounds checked
/// against `data_end`, as the verifier requires), else copied with
/// `bpf_skb_load_bytes`.
#[inline(always)]
fn read<T: Copy>(ctx: &TcContext, offset: usize) -> Result<T, i32> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() <= end {
        // SAFETY: `start + offset .. + size_of::<T>()` lies within the
        // packet's linear data, checked against `data_end` just above.
        Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
    } else {
        ctx.load(offset).map_err(|_| -1)
    }
}

/// Looks at one packet in `direction`.
#[inline(always)]
pub fn on_packet(ctx: &TcContext, direction: u8) -> Result<(), i32> {
    let skb = ctx.as_ptr() as *mut __sk_buff;
    // SAFETY: the context the kernel passed; `protocol` and `ifindex` are
    // readable in tc programs.
    let (ethertype, ifindex) = unsafe { (u16::from_be((*skb).protocol as u16), (*skb).ifindex) };
    let Some(transport) = transport(ctx, ethertype)? else {
        return Ok(());
    };
    let tuple = &transport.tuple;
    if tuple.protocol == proto::TCP
        && direction == dropscope_abi::DIRECTION_EGRESS
        && transport.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    {
        syn_left(tuple, ifindex);
    }
    if tuple.dst_port == DNS_PORT {
        remember_client(tuple);
        dns(ctx, &transport, direction, ifindex);
    } else if tuple.src_port == DNS_PORT
        || (tuple.protocol == proto::UDP && is_dns_client(tuple, direction))
    {
        dns(ctx, &transport, direction, ifindex);
    }
    Ok(())
}

/// The client socket of a query, for its packets after translation.
#[inline(always)]
fn client_key(addr: [u8; 16], port: u16, tuple: &Tuple) -> SourceKey {
    SourceKey {
        addr,
        port,
        family: tuple.family,
        protocol: tuple.protocol,
    }
}

/// Notes that a query left this client socket now.
#[inline(always)]
fn remember_client(tuple: &Tuple) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = DNS_CLIENTS.insert(&client_key(tuple.src_addr, tuple.src_port, tuple), &now, 0);
}

/// True for a packet of a DNS client socket that queried recently: from it
/// when leaving (a query after DNAT), to it when arriving (an answer before
/// reverse NAT).
#[inline(always)]
fn is_dns_client(tuple: &Tuple, direction: u8) -> bool {
    let key = if direction == dropscope_abi::DIRECTION_EGRESS {
        client_key(tuple.src_addr, tuple.src_port, tuple)
    } else {
        client_key(tuple.dst_addr, tuple.dst_port, tuple)
    };
    // SAFETY: a value of this map, copied out at once.
    let Some(last_query) = (unsafe { DNS_CLIENTS.get(&key) }).copied() else {
        return false;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    now.saturating_sub(last_query) < DNS_CLIENT_TTL_NS
}

/// The tuple and offsets of a TCP or UDP packet; `None` for anything else.
#[inline(always)]
fn transport(ctx: &TcContext, ethertype: u16) -> Result<Option<Transport>, i32> {
    let mut tuple = Tuple::default();
    let l4 = if ethertype == ETH_P_IP {
        let version_ihl: u8 = read(ctx, ETH_HEADER)?;
        let fragment: u16 = u16::from_be(read(ctx, ETH_HEADER + 6)?);
        // Only first fragments carry the transport header.
        if fragment & 0x1fff != 0 {
            return Ok(None);
        }
        tuple.protocol = read(ctx, ETH_HEADER + 9)?;
        let saddr: [u8; 4] = read(ctx, ETH_HEADER + 12)?;
        let daddr: [u8; 4] = read(ctx, ETH_HEADER + 16)?;
        tuple.src_addr[..4].copy_from_slice(&saddr);
        tuple.dst_addr[..4].copy_from_slice(&daddr);
        tuple.family = FAMILY_IPV4;
        ETH_HEADER + usize::from(version_ihl & 0x0f) * 4
    } else if ethertype == ETH_P_IPV6 {
        // The transport header right after the fixed header only: packets
        // with extension headers are not followed.
        tuple.protocol = read(ctx, ETH_HEADER + 6)?;
        tuple.src_addr = read(ctx, ETH_HEADER + 8)?;
        tuple.dst_addr = read(ctx, ETH_HEADER + 24)?;
        tuple.family = FAMILY_IPV6;
        ETH_HEADER + 40
    } else {
        return Ok(None);
    };
    let ports: [u8; 4] = read(ctx, l4)?;
    tuple.src_port = u16::from_be_bytes([ports[0], ports[1]]);
    tuple.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    let (payload, flags) = if tuple.protocol == proto::TCP {
        let offset_flags: [u8; 2] = read(ctx, l4 + 12)?;
        (l4 + usize::from(offset_flags[0] >> 4) * 4, offset_flags[1])
    } else if tuple.protocol == proto::UDP {
        (l4 + 8, 0)
    } else {
        return Ok(None);
    };
    Ok(Some(Transport {
        tuple,
        l4,
        payload,
        flags,
    }))
}

/// A SYN leaving: if its socket is pending here, note where it left.
#[inline(always)]
fn syn_left(tuple: &Tuple, ifindex: u32) {
    let key = SourceKey {
        addr: tuple.src_addr,
        port: tuple.src_port,
        family: tuple.family,
        protocol: proto::TCP,
    };
    // SAFETY: a value of this map, copied out at once.
    let Some(sk) = (unsafe { SYN_SOURCES.get(&key) }).copied() else {
        return;
    };
    if let Some(pending) = CONNECTS.get_ptr_mut(&sk) {
        // SAFETY: a value of this map; a racing update loses at most one
        // count of SYNs seen leaving.
        unsafe {
            (*pending).left_ifindex = ifindex;
            (*pending).syns_left += 1;
        }
        emit::count_socket(SocketStat::SynsLeft);
    }
}

/// Sends a DNS message's start to user space.
#[inline(always)]
fn dns(ctx: &TcContext, transport: &Transport, direction: u8, ifindex: u32) {
    let len = ctx.len() as usize;
    if transport.payload >= len || transport.l4 >= len {
        return;
    }
    let payload_len = len - transport.payload;
    let Some(mut entry) = SOCKET_EVENTS.reserve::<DnsRecord>(0) else {
        emit::count_socket(SocketStat::DnsRingFull);
        return;
    };
    let record = entry.as_mut_ptr();
    let mut captured = payload_len;
    if captured > DNS_CAPTURE {
        captured = DNS_CAPTURE;
    }
    // SAFETY: `record` is the reserved entry, written field by field
    // before it is submitted; the copy length is bounded by the payload
    // array's size and is at least 1.
    unsafe {
        (*record).header = RecordHeader {
            kind: KIND_DNS,
            version: RECORD_VERSION,
            len: core::mem::size_of::<DnsRecord>() as u16,
            cpu: bpf_get_smp_processor_id(),
        };
        (*record).time_ns = bpf_ktime_get_ns();
        (*record).ifindex = ifindex;
        (*record).direction = direction;
        (*record)._pad = 0;
        (*record).payload_len = payload_len.min(usize::from(u16::MAX)) as u16;
        (*record)._pad2 = [0; 6];
        (*record).tuple = transport.tuple;
        // 1..=DNS_CAPTURE in a form the verifier can bound (the compiler
        // must not fold the mask away, hence the black box).
        let length = ((core::hint::black_box(captured) as u32).wrapping_sub(1)
            & (DNS_CAPTURE as u32 - 1))
            + 1;
        let copied = captured > 0
            && bpf_skb_load_bytes(
                ctx.as_ptr() as *const _,
                transport.payload as u32,
                (*record).payload.as_mut_ptr() as *mut _,
                length,
            ) == 0;
        (*record).captured = if copied { captured as u16 } else { 0 };
    }
    entry.submit(0);
    emit::count_socket(SocketStat::DnsRecords);
}
