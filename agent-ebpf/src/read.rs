//! Reads of kernel memory at a base address plus a load-time offset.

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Reads a `T` at `base + offset` with `bpf_probe_read_kernel`.
#[inline(always)]
pub fn at<T>(base: u64, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel validates the address; a bad one
    // returns an error instead of faulting.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }
}
