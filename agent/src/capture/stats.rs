//! Kernel-side statistics: the per-CPU `STATS` counters summed over CPUs,
//! plus the program's recursion misses from the kernel's own bookkeeping.

use aya::maps::{MapData, PerCpuArray};
use dropscope_abi::Stat;

use super::Error;
use crate::{kernel::programs::ProgramStatsReader, model::record::KernelStats};

/// Reads [`KernelStats`].
pub struct StatsReader {
    stats: PerCpuArray<MapData, u64>,
    program: ProgramStatsReader,
}

impl StatsReader {
    /// Reads from the `STATS` map and the attached program.
    pub fn new(stats: PerCpuArray<MapData, u64>, program: ProgramStatsReader) -> Self {
        Self { stats, program }
    }

    /// Cumulative statistics now.
    pub fn read(&self) -> Result<KernelStats, Error> {
        let sum = |stat: Stat| -> Result<u64, Error> {
            let values = self
                .stats
                .get(&(stat as u32), 0)
                .map_err(|source| Error::Map {
                    map: dropscope_abi::maps::STATS,
                    source: Box::new(source),
                })?;
            Ok(values.iter().sum())
        };
        let mut stats = KernelStats {
            seen: 0,
            filtered: sum(Stat::Filtered)?,
            not_ip: sum(Stat::NotIp)?,
            aggregated: sum(Stat::Aggregated)?,
            new_flows: sum(Stat::NewFlow)?,
            overflow: sum(Stat::Overflow)?,
            ring_full: sum(Stat::RingFull)?,
            lost_ring_full: sum(Stat::LostRingFull)?,
            read_errors: sum(Stat::ReadErrors)?,
            recursion_misses: self.program.read()?.recursion_misses,
            undecodable: 0,
        };
        // Each invocation lands in exactly one counter.
        stats.seen = stats.filtered
            + stats.not_ip
            + stats.aggregated
            + stats.new_flows
            + stats.overflow
            + stats.ring_full
            + stats.lost_ring_full
            + stats.read_errors;
        Ok(stats)
    }
}
