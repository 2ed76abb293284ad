//! From an `sk_buff` to the tuple in its headers (post-NAT: what is on the
//! wire at the point of the drop), its TCP flags and where it was.

use dropscope_abi::{FAMILY_IPV4, FAMILY_IPV6, KernelOffsets, Tuple, proto};

use crate::{offsets, read};

/// What the headers of a dropped packet say.
pub struct Packet {
    /// Addresses, ports and protocol.
    pub tuple: Tuple,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
}

/// Where the skb was and how big it is.
pub struct Placement {
    /// `skb->len`.
    pub len: u32,
    /// `skb->dev->ifindex`, 0 without a device.
    pub ifindex: u32,
    /// `skb->skb_iif`.
    pub ingress_ifindex: u32,
    /// Network namespace inode of the device (or of the socket).
    pub netns: u32,
}

/// IPv6 extension headers walked before giving up on finding L4.
const MAX_IPV6_EXTENSIONS: u32 = 6;
/// `skb->network_header` value meaning "not set".
const HEADER_UNSET: u16 = 0xffff;

/// Parses the IP and L4 headers; `None` for non-IP or unreadable packets.
#[inline(always)]
pub fn packet(skb: u64, off: &KernelOffsets) -> Option<Packet> {
    let head: u64 = read::at(skb, off.skb_head).ok()?;
    let network: u16 = read::at(skb, off.skb_network_header).ok()?;
    if head == 0 || network == HEADER_UNSET {
        return None;
    }
    let ip = head + network as u64;
    let first: u8 = read::at(ip, 0).ok()?;
    match first >> 4 {
        4 => ipv4(ip),
        6 => ipv6(ip),
        _ => None,
    }
}

#[inline(always)]
fn ipv4(ip: u64) -> Option<Packet> {
    let h: [u8; 20] = read::at(ip, 0).ok()?;
    let header_len = ((h[0] & 0x0f) as u64) * 4;
    if header_len < 20 {
        return None;
    }
    let mut tuple = Tuple {
        family: FAMILY_IPV4,
        protocol: h[9],
        ..Tuple::default()
    };
    tuple.src_addr[..4].copy_from_slice(&h[12..16]);
    tuple.dst_addr[..4].copy_from_slice(&h[16..20]);
    let fragment_offset = u16::from_be_bytes([h[6] & 0x1f, h[7]]);
    let mut packet = Packet {
        tuple,
        tcp_flags: 0,
    };
    if fragment_offset == 0 {
        transport(ip + header_len, &mut packet);
    }
    Some(packet)
}

#[inline(always)]
fn ipv6(ip: u64) -> Option<Packet> {
    let h: [u8; 40] = read::at(ip, 0).ok()?;
    let mut tuple = Tuple {
        family: FAMILY_IPV6,
        ..Tuple::default()
    };
    tuple.src_addr.copy_from_slice(&h[8..24]);
    tuple.dst_addr.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut offset: u64 = 40;
    let mut first_fragment = true;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let ext: [u8; 2] = read::at(ip + offset, 0).ok()?;
                next = ext[0];
                offset += (ext[1] as u64 + 1) * 8;
            }
            // Fragment header: 8 bytes; only the first fragment has ports.
            44 => {
                let ext: [u8; 4] = read::at(ip + offset, 0).ok()?;
                next = ext[0];
                first_fragment = u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 == 0;
                offset += 8;
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                let ext: [u8; 2] = read::at(ip + offset, 0).ok()?;
                next = ext[0];
                offset += (ext[1] as u64 + 2) * 4;
            }
            _ => break,
        }
    }
    tuple.protocol = next;
    let mut packet = Packet {
        tuple,
        tcp_flags: 0,
    };
    if first_fragment {
        transport(ip + offset, &mut packet);
    }
    Some(packet)
}

/// Fills ports (or ICMP type/code/id) and TCP flags; leaves them 0 when the
/// L4 header cannot be read.
#[inline(always)]
fn transport(l4: u64, packet: &mut Packet) {
    let tuple = &mut packet.tuple;
    match tuple.protocol {
        proto::TCP => {
            if let Ok(h) = read::at::<[u8; 14]>(l4, 0) {
                tuple.src_port = u16::from_be_bytes([h[0], h[1]]);
                tuple.dst_port = u16::from_be_bytes([h[2], h[3]]);
                packet.tcp_flags = h[13];
            }
        }
        proto::UDP | proto::SCTP => {
            if let Ok(h) = read::at::<[u8; 4]>(l4, 0) {
                tuple.src_port = u16::from_be_bytes([h[0], h[1]]);
                tuple.dst_port = u16::from_be_bytes([h[2], h[3]]);
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            if let Ok(h) = read::at::<[u8; 8]>(l4, 0) {
                let (kind, code) = (h[0], h[1]);
                let echo = matches!(kind, 0 | 8 | 128 | 129);
                if echo {
                    tuple.src_port = u16::from_be_bytes([h[4], h[5]]);
                }
                tuple.dst_port = u16::from_be_bytes([kind, code]);
            }
        }
        _ => {}
    }
}

/// Length, devices and network namespace of the skb. Fields the kernel does
/// not have, or that cannot be read, stay 0.
#[inline(always)]
pub fn placement(skb: u64, off: &KernelOffsets) -> Placement {
    let mut placement = Placement {
        len: read::at(skb, off.skb_len).unwrap_or(0),
        ifindex: 0,
        ingress_ifindex: 0,
        netns: 0,
    };
    if offsets::present(off.skb_iif) {
        placement.ingress_ifindex = read::at(skb, off.skb_iif).unwrap_or(0);
    }
    let dev: u64 = read::at(skb, off.skb_dev).unwrap_or(0);
    let net: u64 = if dev != 0 {
        placement.ifindex = read::at(dev, off.dev_ifindex).unwrap_or(0);
        read::at(dev, off.dev_nd_net).unwrap_or(0)
    } else if offsets::present(off.skb_sk) {
        match read::at::<u64>(skb, off.skb_sk) {
            Ok(sk) if sk != 0 => read::at(sk, off.sk_net).unwrap_or(0),
            _ => 0,
        }
    } else {
        0
    };
    if net != 0 {
        placement.netns = read::at(net, off.net_ns_inum).unwrap_or(0);
    }
    placement
}
