//! Kernel monotonic nanoseconds → wall-clock time, converted once here.

use std::time::{Duration, SystemTime};

/// Maps `bpf_ktime_get_ns` (CLOCK_MONOTONIC) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock time at monotonic zero.
    boot: SystemTime,
}

impl Clock {
    /// Measures the offset between the two clocks now.
    pub fn now() -> Self {
        let monotonic = monotonic_ns();
        let wall = SystemTime::now();
        Self {
            boot: wall - Duration::from_nanos(monotonic),
        }
    }

    /// A clock whose monotonic zero is `boot` (for tests).
    pub fn with_boot(boot: SystemTime) -> Self {
        Self { boot }
    }

    /// The wall-clock time of a kernel monotonic timestamp.
    pub fn wall(&self, monotonic_ns: u64) -> SystemTime {
        self.boot + Duration::from_nanos(monotonic_ns)
    }

    /// The kernel monotonic timestamp now.
    pub fn monotonic_now(&self) -> u64 {
        monotonic_ns()
    }
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
