//! What a benchmark measures of a process besides its own numbers: the CPU
//! it used over a span, read from `/proc/<pid>/stat`, and the median and
//! spread of repeated samples.

use std::time::Instant;

use anyhow::{Context, Result};

/// A process's CPU time (user and system) over a span.
pub struct CpuClock {
    pid: u32,
    started: Instant,
    ticks: u64,
}

impl CpuClock {
    /// Starts the span now for process `pid`.
    pub fn start(pid: u32) -> Result<Self> {
        Ok(Self {
            pid,
            started: Instant::now(),
            ticks: cpu_ticks(pid)?,
        })
    }

    /// Percent of one core the process used since [`Self::start`].
    pub fn percent(&self) -> Result<f64> {
        let ticks = cpu_ticks(self.pid)? - self.ticks;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(100.0 * ticks as f64 / per_second / self.started.elapsed().as_secs_f64())
    }
}

/// User plus system clock ticks of `pid` so far.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces and parentheses),
    // from field 3 on: utime is field 14, stime field 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime in stat")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime in stat")?.parse()?;
    Ok(utime + stime)
}

/// Median, min and max of `values` (sorted in place); `None` when empty.
pub fn median_and_spread(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    ))
}
