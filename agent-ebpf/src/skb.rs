//! From an `sk_buff` to the tuple in its headers (post-NAT: what is on the
//! wire at the point of the drop), its TCP flags and where it was.
//!
//! Reads are the cost of this hook, so they are as cheap as the hook
//! allows. Under `tp_btf` the program's argument is a BTF-typed pointer and
//! the offsets live in frozen `.rodata`, so the verifier sees constants and
//! lets the program load the per-packet fields directly ([`TypedSkb`]: one
//! plain load each, no helper call). The classic tracepoint hands over a
//! bare address: there the fields come from one copy of the window of the
//! struct that holds them (the agent computes it from BTF), with a read of
//! its own for anything outside ([`CopiedSkb`]). Either way the IP header
//! and the start of the L4 header come from one 40-byte read (IPv4 without
//! options), or a second one of 24 bytes (IPv6, IPv4 options).

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

/// Reads of one `sk_buff`'s fields at load-time offsets, and of the
/// structs its pointers lead to.
pub trait SkbFields {
    /// The field at `offset`; an error when it cannot be read.
    fn field<T: Copy>(&self, offset: u32) -> Result<T, i32>;

    /// The field at `offset` of the struct at `pointer`, a pointer this
    /// reader returned (or one read through such a pointer), used straight
    /// away, never taken back from memory the program wrote.
    fn deref<T: Copy>(&self, pointer: u64, offset: u32) -> Result<T, i32>;
}

/// An `sk_buff` the verifier knows the type of (a `tp_btf` argument):
/// fields are plain loads at constant offsets, which the kernel checks
/// against the struct's BTF at load time and turns into fault-safe loads.
pub struct TypedSkb {
    addr: u64,
}

impl TypedSkb {
    /// The skb at `addr`, which must be the BTF-typed program argument.
    #[inline(always)]
    pub fn new(addr: u64) -> Self {
        Self { addr }
    }
}

impl SkbFields for TypedSkb {
    #[inline(always)]
    fn field<T: Copy>(&self, offset: u32) -> Result<T, i32> {
        // `addr` is the kernel's `struct sk_buff *` argument: a typed
        // pointer like those `deref` follows.
        self.deref(self.addr, offset)
    }

    #[inline(always)]
    fn deref<T: Copy>(&self, pointer: u64, offset: u32) -> Result<T, i32> {
        if !offsets::present(offset) {
            return Err(-1);
        }
        // SAFETY: `pointer` is typed (the program's argument, or loaded
        // from a member of a typed struct: the verifier follows the
        // member's BTF type) and `offset` a field offset from the running
        // kernel's BTF (frozen `.rodata`): the verifier checks the access
        // against the struct's layout and the JIT makes it a load that
        // cannot fault. Fields are naturally aligned.
        Ok(unsafe { core::ptr::read_volatile((pointer + offset as u64) as *const T) })
    }
}

/// An `sk_buff` at a bare address (the classic tracepoint), with its
/// per-packet fields copied in one read.
pub struct CopiedSkb<'a> {
    addr: u64,
    window: Option<&'a [u8; SKB_WINDOW_MAX as usize + 8]>,
    start: u32,
    len: u32,
}

impl CopiedSkb<'_> {
    /// Copies the window of `skb` the offsets describe (if any).
    #[inline(always)]
    pub fn load(addr: u64, off: &KernelOffsets) -> Self {
        let mut skb = CopiedSkb {
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
}

impl SkbFields for CopiedSkb<'_> {
    /// The field at `offset`, from the window when it lies inside.
    #[inline(always)]
    fn field<T: Copy>(&self, offset: u32) -> Result<T, i32> {
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

    #[inline(always)]
    fn deref<T: Copy>(&self, pointer: u64, offset: u32) -> Result<T, i32> {
        read::at(pointer, offset)
    }
}

/// Parses the IP and L4 headers into `tuple` and returns the TCP flags (0
/// for other protocols); `None` for non-IP or unreadable packets.
#[inline(always)]
pub fn packet(skb: &impl SkbFields, off: &KernelOffsets, tuple: &mut Tuple) -> Option<u8> {
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
    // The first 40 bytes hold an IPv4 header without options and the 14
    // bytes of L4 it needs; the rest only for IPv6 or IPv4 options. A read
    // that fails never leaves bytes of an earlier packet to be parsed.
    // SAFETY: as above.
    let mut valid = if unsafe { helper(ip as *const u8, &mut headers[..40]).is_ok() } {
        40
    } else {
        headers.fill(0);
        // SAFETY: as above; near the end of the buffer, just IPv4's header.
        if unsafe { helper(ip as *const u8, &mut headers[..20]).is_ok() } {
            20
        } else {
            return None;
        }
    };
    if valid == 40 && headers[0] != 0x45 {
        // SAFETY: as above.
        if unsafe { helper((ip + 40) as *const u8, &mut headers[40..]).is_ok() } {
            valid = HEADER_BYTES;
        } else {
            headers[40..].fill(0);
        }
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
    // The usual places, IPv4 without options and IPv6 without extension
    // headers: constant indexes, a few loads instead of a byte loop.
    if offset == 20 && valid >= 34 {
        return Some(fixed::<20>(h));
    }
    if offset == 40 && valid >= 54 {
        return Some(fixed::<40>(h));
    }
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

/// The 14 bytes at the constant `AT` of the header copy.
#[inline(always)]
fn fixed<const AT: usize>(h: &[u8; HEADER_BYTES]) -> [u8; 14] {
    const { assert!(AT + 14 <= HEADER_BYTES) };
    let mut bytes = [0u8; 14];
    bytes.copy_from_slice(&h[AT..AT + 14]);
    bytes
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
pub fn len(skb: &impl SkbFields, off: &KernelOffsets) -> u32 {
    skb.field(off.skb_len).unwrap_or(0)
}

/// `skb->dev`, as an opaque key (0 without a device).
#[inline(always)]
pub fn device(skb: &impl SkbFields, off: &KernelOffsets) -> u64 {
    skb.field(off.skb_dev).unwrap_or(0)
}

/// Devices and network namespace of the skb, for a new flow's record.
/// Fields the kernel does not have, or that cannot be read, stay 0.
#[inline(always)]
pub fn placement(skb: &impl SkbFields, off: &KernelOffsets) -> Placement {
    let mut placement = Placement {
        ifindex: 0,
        ingress_ifindex: 0,
        netns: 0,
    };
    if offsets::present(off.skb_iif) {
        placement.ingress_ifindex = skb.field(off.skb_iif).unwrap_or(0);
    }
    // The device read afresh (not taken from the flow key), so that under
    // tp_btf it is still a typed pointer and `deref` a plain load.
    let dev: u64 = skb.field(off.skb_dev).unwrap_or(0);
    let net: u64 = if dev != 0 {
        placement.ifindex = skb.deref(dev, off.dev_ifindex).unwrap_or(0);
        skb.deref(dev, off.dev_nd_net).unwrap_or(0)
    } else if offsets::present(off.skb_sk) {
        match skb.field::<u64>(off.skb_sk) {
            Ok(sk) if sk != 0 => skb.deref(sk, off.sk_net).unwrap_or(0),
            _ => 0,
        }
    } else {
        0
    };
    if net != 0 {
        placement.netns = skb.deref(net, off.net_ns_inum).unwrap_or(0);
    }
    placement
}
