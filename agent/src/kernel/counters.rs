//! The kernel's flow counters, memory-mapped: the agent reads them in place,
//! with atomic loads, while the kernel adds to them.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use dropscope_abi::FlowCounters;

use super::Error;

/// A read-only mapping of the `COUNTERS` array.
pub struct CounterArray {
    base: NonNull<u8>,
    mapped_len: usize,
    slots: u32,
    // Keeps the map alive as long as the mapping.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory that is only read through
// atomic loads; it is unmapped once, on drop.
unsafe impl Send for CounterArray {}

impl CounterArray {
    /// Maps `map`, an array of `slots` [`FlowCounters`] created with
    /// `BPF_F_MMAPABLE`.
    pub fn map(map: MapData, slots: u32) -> Result<Self, Error> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = std::mem::size_of::<FlowCounters>() * slots as usize;
        let mapped_len = bytes.div_ceil(page) * page;
        // SAFETY: we map the map's fd read-only and shared; the kernel
        // checks the length against the map's size.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(Error::Syscall {
                call: "mmap(COUNTERS)",
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(address.cast()).ok_or(Error::Syscall {
            call: "mmap(COUNTERS)",
            source: std::io::Error::other("mmap returned NULL"),
        })?;
        Ok(Self {
            base,
            mapped_len,
            slots,
            _map: map,
        })
    }

    /// The counters of `slot` now; `None` for a slot out of range.
    pub fn read(&self, slot: u32) -> Option<FlowCounters> {
        if slot >= self.slots {
            return None;
        }
        let word = |field: usize| {
            let offset = slot as usize * std::mem::size_of::<FlowCounters>() + field;
            // SAFETY: offset is inside the mapping (slot < slots) and 8-byte
            // aligned (FlowCounters is five u64s, the mapping page-aligned);
            // the kernel writes these words atomically or as single stores.
            unsafe {
                AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()).load(Ordering::Relaxed)
            }
        };
        // Packets first: the kernel bumps packets before last_ns, so a
        // reader never sees a count newer than its time.
        let packets = word(std::mem::offset_of!(FlowCounters, packets));
        Some(FlowCounters {
            packets,
            bytes: word(std::mem::offset_of!(FlowCounters, bytes)),
            first_ns: word(std::mem::offset_of!(FlowCounters, first_ns)),
            last_ns: word(std::mem::offset_of!(FlowCounters, last_ns)),
            tcp_flags: word(std::mem::offset_of!(FlowCounters, tcp_flags)),
        })
    }
}

impl Drop for CounterArray {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_len) };
    }
}
