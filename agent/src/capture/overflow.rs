//! The kernel's overflow buckets (drops that found no free flow slot),
//! summed over CPUs. A bucket is read only when the kernel's overflow
//! counter moved, and followed like a flow: reported while it grows, ended
//! once it has been idle for the idle timeout, reported anew if it grows
//! again. The kernel never resets a bucket, so counts stay exact.

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use dropscope_abi::{OverflowBucket, maps::OVERFLOW_BUCKETS};

/// What user space last reported of one bucket.
#[derive(Clone, Copy, Debug)]
struct Reported {
    summed: OverflowBucket,
    active: bool,
}

/// One bucket to report: its sums and whether it ends.
pub struct BucketReport {
    /// The bucket.
    pub bucket: u32,
    /// Its counters summed over CPUs, with the key of its first drop.
    pub summed: OverflowBucket,
    /// Idle for the timeout (or the agent stops): its last report.
    pub ended: bool,
    /// Drops the previous report of this bucket had counted.
    pub previous: u64,
}

/// The buckets seen so far.
#[derive(Debug, Default)]
pub struct OverflowTable {
    reported: HashMap<u32, Reported>,
    counted: u64,
}

impl OverflowTable {
    /// The buckets that grew since the last call (when the kernel's
    /// overflow counter says any did) and those that went idle.
    pub fn sweep(
        &mut self,
        map: &PerCpuArray<MapData, OverflowBucket>,
        overflow_stat: u64,
        now_ns: u64,
        idle_ns: u64,
    ) -> Result<Vec<BucketReport>, aya::maps::MapError> {
        let mut reports = Vec::new();
        if overflow_stat != self.counted {
            let (grown, complete) = self.grown(map, false)?;
            // A bucket caught half-written is read again next time.
            if complete {
                self.counted = overflow_stat;
            }
            reports = grown;
        }
        for (bucket, reported) in &mut self.reported {
            let idle = now_ns.saturating_sub(reported.summed.last_ns) >= idle_ns;
            if reported.active && idle && !reports.iter().any(|report| report.bucket == *bucket) {
                reported.active = false;
                reports.push(BucketReport {
                    bucket: *bucket,
                    summed: reported.summed,
                    ended: true,
                    previous: reported.summed.packets,
                });
            }
        }
        Ok(reports)
    }

    /// At exit, with the programs detached: every bucket that grew, and
    /// every active one, with its final counts.
    pub fn finish(
        &mut self,
        map: &PerCpuArray<MapData, OverflowBucket>,
        overflow_stat: u64,
    ) -> Result<Vec<BucketReport>, aya::maps::MapError> {
        if overflow_stat == 0 {
            return Ok(Vec::new());
        }
        self.counted = overflow_stat;
        Ok(self.grown(map, true)?.0)
    }

    /// Reads every bucket; reports those that grew (and, with `all_active`,
    /// those still active), marking what was reported. False when a bucket
    /// was caught while its first drop was being written (its key not yet
    /// there): it is left for the next read.
    fn grown(
        &mut self,
        map: &PerCpuArray<MapData, OverflowBucket>,
        all_active: bool,
    ) -> Result<(Vec<BucketReport>, bool), aya::maps::MapError> {
        let mut reports = Vec::new();
        let mut complete = true;
        for bucket in 0..OVERFLOW_BUCKETS {
            let per_cpu: PerCpuValues<OverflowBucket> = map.get(&bucket, 0)?;
            if per_cpu
                .iter()
                .any(|value| value.packets > 0 && value.key.tuple.family == 0)
            {
                complete = false;
                continue;
            }
            let summed = sum(&per_cpu);
            if summed.packets == 0 {
                continue;
            }
            let reported = self.reported.entry(bucket).or_insert(Reported {
                summed: OverflowBucket::default(),
                active: false,
            });
            let grew = summed.packets != reported.summed.packets;
            if grew || (all_active && reported.active) {
                let previous = reported.summed.packets;
                reported.summed = summed;
                reported.active = !all_active;
                reports.push(BucketReport {
                    bucket,
                    summed,
                    ended: all_active,
                    previous,
                });
            }
        }
        Ok((reports, complete))
    }
}

/// A bucket's counters over every CPU. Its key is that of the earliest
/// first drop; another CPU whose first flow differs has all its drops
/// counted as folded.
pub fn sum(values: &[OverflowBucket]) -> OverflowBucket {
    let used = || values.iter().filter(|value| value.packets > 0);
    let Some(first) = used().min_by_key(|value| value.first_ns) else {
        return OverflowBucket::default();
    };
    let mut total = OverflowBucket {
        first_ns: first.first_ns,
        key: first.key,
        ..OverflowBucket::default()
    };
    for value in used() {
        total.packets += value.packets;
        total.bytes += value.bytes;
        total.tcp_flags |= value.tcp_flags;
        total.last_ns = total.last_ns.max(value.last_ns);
        total.folded += if value.key == first.key {
            value.folded
        } else {
            value.packets
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use dropscope_abi::FlowKey;

    use super::*;

    fn bucket(packets: u64, folded: u64, first_ns: u64, port: u16) -> OverflowBucket {
        let mut key = FlowKey::default();
        key.tuple.src_port = port;
        OverflowBucket {
            packets,
            bytes: packets * 60,
            first_ns,
            last_ns: first_ns + 10,
            folded,
            tcp_flags: 0x02,
            key,
        }
    }

    #[test]
    fn cpus_sum_exactly_and_the_earliest_flow_names_the_bucket() {
        let summed = sum(&[
            bucket(5, 2, 200, 1111),
            OverflowBucket::default(),
            bucket(3, 1, 100, 2222),
        ]);
        assert_eq!(summed.packets, 8);
        assert_eq!(summed.bytes, 480);
        assert_eq!(summed.key.tuple.src_port, 2222, "the earliest first drop");
        assert_eq!(summed.first_ns, 100);
        assert_eq!(summed.last_ns, 210);
        assert_eq!(summed.folded, 1 + 5, "the other CPU's flow is folded in");
        assert_eq!(sum(&[OverflowBucket::default()]).packets, 0);
    }
}
