//! The conntrack entry an skb carries (`skb->_nfct`): its original tuple
//! (before NAT, e.g. to the Service VIP) and its reply tuple (after NAT,
//! reversed). A connection dropped before confirmation never reaches the
//! conntrack table, so reading it here, at drop time, is the only way to see
//! both tuples of the same packet.
//!
//! Both tuples lie close together in `struct nf_conn` (`tuplehash[0]` and
//! `[1]`), so one read copies them both ([`CT_WINDOW`] bytes from the
//! original tuple) and the fields are taken from the copy: one helper call
//! instead of twelve, for each new flow. A kernel whose tuples lie further
//! apart gets a read per field.

use dropscope_abi::{
    CT_INFO_MASK, CT_PRESENT, ConntrackTupleOffsets, FAMILY_IPV4, FAMILY_IPV6, KernelOffsets, Tuple,
};

use crate::{
    maps::{CT_WINDOW, SCRATCH},
    offsets, read,
    skb::SkbFields,
};

/// Mask keeping copy indexes inside the scratch buffer, which has room for
/// the widest field (16 bytes) past the copy's end.
const CT_WINDOW_MASK: u32 = CT_WINDOW as u32 - 1;

/// `NFCT_PTRMASK`: the low 3 bits of `_nfct` hold `enum ip_conntrack_info`.
const NFCT_PTRMASK: u64 = !7;

/// Writes the conntrack tuples of `skb` into `original` and `reply` and
/// returns the `ct_info` byte: [`CT_PRESENT`] plus ctinfo, or 0 when the skb
/// carries no entry (the tuples are then left as they were).
#[inline(always)]
pub fn read_into(
    skb: &impl SkbFields,
    off: &KernelOffsets,
    original: &mut Tuple,
    reply: &mut Tuple,
) -> u8 {
    if !offsets::present(off.skb_nfct) || !offsets::present(off.ct_tuple_original) {
        return 0;
    }
    let Ok(nfct) = skb.field::<u64>(off.skb_nfct) else {
        return 0;
    };
    let conn = nfct & NFCT_PTRMASK;
    if conn == 0 {
        return 0;
    }
    let original_at = conn + off.ct_tuple_original as u64;
    let reply_at = conn + off.ct_tuple_reply as u64;
    let read = match copy(original_at, off) {
        Some(window) => {
            let reply_in_window = off.ct_tuple_reply - off.ct_tuple_original;
            tuple(&Copied { window, start: 0 }, &off.tuple, original).is_some()
                && tuple(
                    &Copied {
                        window,
                        start: reply_in_window,
                    },
                    &off.tuple,
                    reply,
                )
                .is_some()
        }
        None => {
            tuple(&Kernel(original_at), &off.tuple, original).is_some()
                && tuple(&Kernel(reply_at), &off.tuple, reply).is_some()
        }
    };
    if !read {
        return 0;
    }
    CT_PRESENT | (nfct as u8 & CT_INFO_MASK)
}

/// Copies [`CT_WINDOW`] bytes from `original_at` when both tuples fit in
/// them; `None` sends the caller to a read per field.
#[inline(always)]
fn copy(original_at: u64, off: &KernelOffsets) -> Option<&'static [u8; CT_WINDOW + 16]> {
    let reply_in_window = off.ct_tuple_reply.checked_sub(off.ct_tuple_original)?;
    let t = &off.tuple;
    let tuple_end = [
        t.src_addr.saturating_add(16),
        t.dst_addr.saturating_add(16),
        t.src_port.saturating_add(2),
        t.dst_port.saturating_add(2),
        t.src_l3num.saturating_add(2),
        t.dst_protonum.saturating_add(1),
    ]
    .into_iter()
    .fold(0, u32::max);
    if reply_in_window.saturating_add(tuple_end) > CT_WINDOW as u32 {
        return None;
    }
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch, not otherwise in use while the record is
    // written; bpf_probe_read_kernel validates the source.
    let buffer = unsafe { &mut (*scratch).conntrack };
    // SAFETY: as above.
    unsafe {
        aya_ebpf::helpers::bpf_probe_read_kernel_buf(
            original_at as *const u8,
            &mut buffer[..CT_WINDOW],
        )
    }
    .ok()?;
    Some(buffer)
}

/// Where a tuple's fields are read from.
trait TupleSource {
    /// The `T` at `offset` from the tuple's start.
    fn at<T: Copy>(&self, offset: u32) -> Option<T>;
}

/// Straight from kernel memory, a read per field.
struct Kernel(u64);

impl TupleSource for Kernel {
    #[inline(always)]
    fn at<T: Copy>(&self, offset: u32) -> Option<T> {
        read::at(self.0, offset).ok()
    }
}

/// From the copy of both tuples, the tuple starting `start` bytes in.
struct Copied {
    window: &'static [u8; CT_WINDOW + 16],
    start: u32,
}

impl TupleSource for Copied {
    #[inline(always)]
    fn at<T: Copy>(&self, offset: u32) -> Option<T> {
        let index = (self.start.wrapping_add(offset) & CT_WINDOW_MASK) as usize;
        // SAFETY: index < CT_WINDOW and the buffer has 16 bytes past it, at
        // least size_of::<T>() (`copy` checked the fields lie inside the
        // bytes copied); unaligned reads are allowed.
        Some(unsafe { core::ptr::read_unaligned(self.window.as_ptr().add(index).cast::<T>()) })
    }
}

#[inline(always)]
fn tuple(source: &impl TupleSource, off: &ConntrackTupleOffsets, out: &mut Tuple) -> Option<()> {
    let l3num: u16 = source.at(off.src_l3num)?;
    // A conntrack template (zones, OVS) has no tuple: family 0. Only a real
    // IPv4/IPv6 entry counts as present.
    if l3num != FAMILY_IPV4 as u16 && l3num != FAMILY_IPV6 as u16 {
        return None;
    }
    let src_port: [u8; 2] = source.at(off.src_port)?;
    let dst_port: [u8; 2] = source.at(off.dst_port)?;
    out.src_addr = source.at(off.src_addr)?;
    out.dst_addr = source.at(off.dst_addr)?;
    out.protocol = source.at(off.dst_protonum)?;
    out.src_port = u16::from_be_bytes(src_port);
    out.dst_port = u16::from_be_bytes(dst_port);
    out.family = l3num as u8;
    out._pad = [0; 2];
    Some(())
}
