//! The kernel's flow counters, memory-mapped: the agent reads them in place,
//! with atomic loads, while the kernel adds to them. The one word the agent
//! writes is a retired slot's `first_ns`, zeroed so that no CPU's memory of
//! its recent flow still counts into it ([`CounterArray::disown`]).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use dropscope_abi::FlowCounters;

use super::Error;

/// A shared mapping of the `COUNTERS` array.
pub struct CounterArray {
    base: NonNull<u8>,
    mapped_len: usize,
    slots: u32,
    // Keeps the map alive as long as the mapping.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory that is only accessed through
// atomic loads and stores; it is unmapped once, on drop.
unsafe impl Send for CounterArray {}

impl CounterArray {
    /// Maps `map`, an array of `slots` [`FlowCounters`] created with
    /// `BPF_F_MMAPABLE`.
    pub fn map(map: MapData, slots: u32) -> Result<Self, Error> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = std::mem::size_of::<FlowCounters>() * slots as usize;
        let mapped_len = bytes.div_ceil(page) * page;
        // SAFETY: we map the map's fd shared; the kernel checks the length
        // against the map's size.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ | libc::PROT_WRITE,
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
        let word = |field: usize| {
            self.word(slot, field)
                .map(|word| word.load(Ordering::Relaxed))
        };
        Some(FlowCounters {
            packets: word(std::mem::offset_of!(FlowCounters, packets))?,
            bytes: word(std::mem::offset_of!(FlowCounters, bytes))?,
            first_ns: word(std::mem::offset_of!(FlowCounters, first_ns))?,
            tcp_flags: word(std::mem::offset_of!(FlowCounters, tcp_flags))?,
        })
    }

    /// Zeroes `slot`'s `first_ns`: the kernel's per-CPU memory of a recent
    /// flow only counts into a slot whose `first_ns` is the one it saw, so
    /// once the flow is out of `FLOWS` this ends every way into the slot.
    /// False for a slot out of range.
    pub fn disown(&self, slot: u32) -> bool {
        self.word(slot, std::mem::offset_of!(FlowCounters, first_ns))
            .map(|word| word.store(0, Ordering::Relaxed))
            .is_some()
    }

    /// The word at `field` of `slot`; `None` for a slot out of range.
    fn word(&self, slot: u32, field: usize) -> Option<&AtomicU64> {
        if slot >= self.slots {
            return None;
        }
        let offset = slot as usize * std::mem::size_of::<FlowCounters>() + field;
        // SAFETY: offset is inside the mapping (slot < slots) and 8-byte
        // aligned (FlowCounters is four u64s, the mapping page-aligned); the
        // kernel writes these words atomically or as single stores, and the
        // reference lives no longer than the mapping (`&self`).
        Some(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) })
    }
}

impl Drop for CounterArray {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_len) };
    }
}
