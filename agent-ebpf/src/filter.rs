//! The first check on every freed skb: is its drop reason selected?

use crate::maps::REASON_FILTER;

/// True when user space asked for drops with this reason.
#[inline(always)]
pub fn selected(reason: u32) -> bool {
    match REASON_FILTER.get(0) {
        Some(filter) => filter.contains(reason),
        None => false,
    }
}
