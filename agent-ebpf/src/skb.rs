//! From an `sk_buff` to the tuple in its headers (post-NAT: what is on the
//! wire at the point of the drop), its TCP flags and where it was.
//!
//! Reads are the cost of this hook, so they are batched: the per-packet
//! `sk_buff` fields come from one copy of the window of the struct that holds
//! them (the agent computes it from BTF), and the IP header with the start of
//! the L4 header from one 64-byte read. Anything outside falls back to a
//! read of its own.

use dropscope_abi::{FAMILY_IPV4, FAMILY_IPV6, KernelOffsets, SKB_WINDOW_MAX, Tuple, proto};

use crate::{maps::SCRATCH, offsets, read};

/// Where the skb was (read once per new flow).
pub struct Placement {
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
/// Bytes of IP + L4 header read at once.
const HEADER_BYTES: usize = 64;
/// Mask keeping window indexes inside the scratch buffer.
const WINDOW_MASK: u32 = SKB_WINDOW_MAX - 1;

/// An `sk_buff`, with its per-packet fields copied in one read.
pub struct Skb<'a> {
    addr: u64,
    window: Option<&'a [u8; SKB_WINDOW_MAX as usize + 8]>,
    start: u32,
    len: u32,
}

impl<'a> Skb<'a> {
    /// Copies the window of `skb` the offsets describe (if any).
    #[inline(always)]
    pub fn load(addr: u64, off: &KernelOffsets) -> Self {
        let mut skb = Skb {
            addr,
            window: None,
            start: off.skb_window_start,
            len: off.skb_window_len,
        };
        let len = skb.len as usize;
        if len == 0 || len > SKB_WINDOW_MAX as usize {
            return skb;
        }
        let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
            return skb;
        };
        // SAFETY: per-CPU scratch of this CPU; the read is bounded by the
        // buffer's length and bpf_probe_read_kernel validates the source.
        let copied = unsafe {
            let buffer = &mut (*scratch).skb;
            aya_ebpf::helpers::bpf_probe_read_kernel_buf(
                (addr + skb.start as u64) as *const u8,
                &mut buffer[..len],
            )
        };
        if copied.is_ok() {
            // SAFETY: as above; shared borrow for the rest of the run.
            skb.window = Some(unsafe { &(*scratch).skb });
        }
        skb
    }

    /// The field at `offset`, from the window when it lies inside.
    #[inline(always)]
    pub fn field<T: Copy>(&self, offset: u32) -> Result<T, i32> {
        if let Some(window) = self.window
            && offset >= self.start
            && offset - self.start + core::mem::size_of::<T>() as u32 <= self.len
        {
            let index = ((offset - self.start) & WINDOW_MASK) as usize;
            // SAFETY: index + size_of::<T>() <= len <= SKB_WINDOW_MAX, and
            // the buffer has 8 spare bytes; unaligned reads are allowed.
            return Ok(unsafe {
                core::ptr::read_unaligned(window.as_ptr().add(index).cast::<T>())
            });
        }
        read::at(self.addr, offset)
    }
}

/// Parses the IP and L4 headers into `tuple` and returns the TCP flags (0
/// for other protocols); `None` for non-IP or unreadable packets.
#[inline(always)]
pub fn packet(skb: &Skb, off: &KernelOffsets, tuple: &mut Tuple) -> Option<u8> {
    let head: u64 = skb.field(off.skb_head).ok()?;
    let network: u16 = skb.field(off.skb_network_header).ok()?;
    if head == 0 || network == HEADER_UNSET {
        return None;
    }
    let ip = head + network as u64;
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch of this CPU, not used elsewhere meanwhile;
    // bpf_probe_read_kernel validates the source.
    let headers = unsafe { &mut (*scratch).headers };
    let helper = aya_ebpf::helpers::bpf_probe_read_kernel_buf;
    // SAFETY: as above. Near the end of the buffer, read just the fixed
    // IPv6 header, then just the IPv4 one.
    let full = unsafe { helper(ip as *const u8, &mut headers[..]).is_ok() };
    let mut valid = HEADER_BYTES;
    if !full {
        // Never parse bytes left over from an earlier packet: clear, then
        // take what can be read.
        headers.fill(0);
        // SAFETY: as above.
        // SAFETY: as above.
        valid = if unsafe { helper(ip as *const u8, &mut headers[..40]).is_ok() } {
            40
        } else if unsafe { helper(ip as *const u8, &mut headers[..20]).is_ok() } {
            20
        } else {
            return None;
        };
    }
    let headers: &[u8; HEADER_BYTES] = headers;
    *tuple = Tuple::default();
    match headers[0] >> 4 {
        4 => ipv4(ip, headers, valid, tuple),
        6 if valid >= 40 => ipv6(ip, headers, valid, tuple),
        _ => None,
    }
}

#[inline(always)]
fn ipv4(ip: u64, h: &[u8; HEADER_BYTES], valid: usize, tuple: &mut Tuple) -> Option<u8> {
    let header_len = ((h[0] & 0x0f) as u32) * 4;
    if header_len < 20 {
        return None;
    }
    tuple.family = FAMILY_IPV4;
    tuple.protocol = h[9];
    tuple.src_addr[..4].copy_from_slice(&h[12..16]);
    tuple.dst_addr[..4].copy_from_slice(&h[16..20]);
    let fragment_offset = u16::from_be_bytes([h[6] & 0x1f, h[7]]);
    if fragment_offset != 0 {
        return Some(0);
    }
    Some(transport(ip, header_len, h, valid, tuple))
}

#[inline(always)]
fn ipv6(ip: u64, h: &[u8; HEADER_BYTES], valid: usize, tuple: &mut Tuple) -> Option<u8> {
    tuple.family = FAMILY_IPV6;
    tuple.src_addr.copy_from_slice(&h[8..24]);
    tuple.dst_addr.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut offset: u32 = 40;
    let mut first_fragment = true;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let ext: [u8; 2] = read::at(ip + offset as u64, 0).ok()?;
                next = ext[0];
                offset += (ext[1] as u32 + 1) * 8;
            }
            // Fragment header: 8 bytes; only the first fragment has ports.
            44 => {
                let ext: [u8; 4] = read::at(ip + offset as u64, 0).ok()?;
                next = ext[0];
                first_fragment = u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 == 0;
                offset += 8;
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                let ext: [u8; 2] = read::at(ip + offset as u64, 0).ok()?;
                next = ext[0];
                offset += (ext[1] as u32 + 2) * 4;
            }
            _ => break,
        }
    }
    tuple.protocol = next;
    if !first_fragment {
        return Some(0);
    }
    Some(transport(ip, offset, h, valid, tuple))
}

/// The first 14 bytes of the L4 header at `offset` from the IP header: from
/// the header copy when its `valid` bytes hold them, else read.
#[inline(always)]
fn l4_bytes(ip: u64, offset: u32, h: &[u8; HEADER_BYTES], valid: usize) -> Option<[u8; 14]> {
    if offset as usize + 14 <= valid {
        let start = (offset & 0x3f) as usize;
        let mut bytes = [0u8; 14];
        // Bounded copy: start + 14 <= HEADER_BYTES checked above.
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = *h.get(start + index)?;
        }
        return Some(bytes);
    }
    read::at(ip + offset as u64, 0).ok().or_else(|| {
        read::at::<[u8; 8]>(ip + offset as u64, 0)
            .ok()
            .map(|short| {
                let mut bytes = [0u8; 14];
                bytes[..8].copy_from_slice(&short);
                bytes
            })
    })
}

/// Fills ports (or ICMP type/code/id) and returns the TCP flags; leaves
/// them 0 when the L4 header cannot be read.
#[inline(always)]
fn transport(ip: u64, offset: u32, h: &[u8; HEADER_BYTES], valid: usize, tuple: &mut Tuple) -> u8 {
    let Some(l4) = l4_bytes(ip, offset, h, valid) else {
        return 0;
    };
    match tuple.protocol {
        proto::TCP => {
            tuple.src_port = u16::from_be_bytes([l4[0], l4[1]]);
            tuple.dst_port = u16::from_be_bytes([l4[2], l4[3]]);
            return l4[13];
        }
        proto::UDP | proto::SCTP => {
            tuple.src_port = u16::from_be_bytes([l4[0], l4[1]]);
            tuple.dst_port = u16::from_be_bytes([l4[2], l4[3]]);
        }
        proto::ICMP | proto::ICMPV6 => {
            let (kind, code) = (l4[0], l4[1]);
            if matches!(kind, 0 | 8 | 128 | 129) {
                tuple.src_port = u16::from_be_bytes([l4[4], l4[5]]);
            }
            tuple.dst_port = u16::from_be_bytes([kind, code]);
        }
        _ => {}
    }
    0
}

/// `skb->len` (0 when unreadable).
#[inline(always)]
pub fn len(skb: &Skb, off: &KernelOffsets) -> u32 {
    skb.field(off.skb_len).unwrap_or(0)
}

/// `skb->dev`, as an opaque key (0 without a device).
#[inline(always)]
pub fn device(skb: &Skb, off: &KernelOffsets) -> u64 {
    skb.field(off.skb_dev).unwrap_or(0)
}

/// Devices and network namespace of the skb, for a new flow's record.
/// Fields the kernel does not have, or that cannot be read, stay 0.
#[inline(always)]
pub fn placement(skb: &Skb, off: &KernelOffsets, dev: u64) -> Placement {
    let mut placement = Placement {
        ifindex: 0,
        ingress_ifindex: 0,
        netns: 0,
    };
    if offsets::present(off.skb_iif) {
        placement.ingress_ifindex = skb.field(off.skb_iif).unwrap_or(0);
    }
    let net: u64 = if dev != 0 {
        placement.ifindex = read::at(dev, off.dev_ifindex).unwrap_or(0);
        read::at(dev, off.dev_nd_net).unwrap_or(0)
    } else if offsets::present(off.skb_sk) {
        match skb.field::<u64>(off.skb_sk) {
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
