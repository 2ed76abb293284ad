//! The conntrack entry an skb carries (`skb->_nfct`): its original tuple
//! (before NAT, e.g. to the Service VIP) and its reply tuple (after NAT,
//! reversed). A connection dropped before confirmation never reaches the
//! conntrack table, so reading it here, at drop time, is the only way to see
//! both tuples of the same packet.

use dropscope_abi::{
    CT_INFO_MASK, CT_PRESENT, ConntrackTupleOffsets, FAMILY_IPV4, FAMILY_IPV6, KernelOffsets, Tuple,
};

use crate::{offsets, read, skb::Skb};

/// `NFCT_PTRMASK`: the low 3 bits of `_nfct` hold `enum ip_conntrack_info`.
const NFCT_PTRMASK: u64 = !7;

/// Writes the conntrack tuples of `skb` into `original` and `reply` and
/// returns the `ct_info` byte: [`CT_PRESENT`] plus ctinfo, or 0 when the skb
/// carries no entry (the tuples are then left as they were).
#[inline(always)]
pub fn read_into(skb: &Skb, off: &KernelOffsets, original: &mut Tuple, reply: &mut Tuple) -> u8 {
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
    if tuple(conn + off.ct_tuple_original as u64, &off.tuple, original).is_none()
        || tuple(conn + off.ct_tuple_reply as u64, &off.tuple, reply).is_none()
    {
        return 0;
    }
    CT_PRESENT | (nfct as u8 & CT_INFO_MASK)
}

#[inline(always)]
fn tuple(base: u64, off: &ConntrackTupleOffsets, out: &mut Tuple) -> Option<()> {
    let l3num: u16 = read::at(base, off.src_l3num).ok()?;
    // A conntrack template (zones, OVS) has no tuple: family 0. Only a real
    // IPv4/IPv6 entry counts as present.
    if l3num != FAMILY_IPV4 as u16 && l3num != FAMILY_IPV6 as u16 {
        return None;
    }
    let src_port: [u8; 2] = read::at(base, off.src_port).ok()?;
    let dst_port: [u8; 2] = read::at(base, off.dst_port).ok()?;
    out.src_addr = read::at(base, off.src_addr).ok()?;
    out.dst_addr = read::at(base, off.dst_addr).ok()?;
    out.protocol = read::at(base, off.dst_protonum).ok()?;
    out.src_port = u16::from_be_bytes(src_port);
    out.dst_port = u16::from_be_bytes(dst_port);
    out.family = l3num as u8;
    out._pad = [0; 2];
    Some(())
}
