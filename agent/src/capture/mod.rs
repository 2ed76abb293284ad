//! Reads what the kernel programs produce: new flows from the ring buffer
//! (asynchronously, as they come), flow counters and kernel statistics on a
//! timer. Emits [`Record`]s to `track`.
//!
//! The output queue is bounded and this step waits on it rather than drop
//! a record: under pressure the kernel's ring buffer fills instead, and the
//! kernel counts exactly what it could not send (`LostRingFull`). So a loss
//! is always counted once, where it happens.

pub mod overflow;
pub mod slots;
pub mod sockets;
pub mod stats;

use std::time::Duration;

use aya::maps::{HashMap, MapData, PerCpuArray, Queue, RingBuf};
use dropscope_abi::{FlowKey, OverflowBucket};
use tokio::{io::unix::AsyncFd, sync::mpsc};

pub use slots::{Finding, Observed, SlotTable};
pub use stats::StatsReader;

use crate::{
    decode::{self, Decoder},
    kernel::{CounterArray, KernelMaps},
    model::{Record, record::KernelStats},
};

/// How the kernel's maps are read.
#[derive(Clone, Copy, Debug)]
pub struct CaptureConfig {
    /// How often flow counters and statistics are sampled.
    pub sample_interval: Duration,
    /// A flow with no drop for this long is retired (its `end` event).
    pub idle_timeout: Duration,
}

/// What can stop the capture step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Waiting on the ring buffer failed.
    #[error("ring buffer: {0}")]
    RingBuffer(#[source] std::io::Error),
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// aya's error.
        source: Box<aya::maps::MapError>,
    },
    /// Reading kernel statistics failed.
    #[error(transparent)]
    Kernel(#[from] crate::kernel::Error),
}

/// The capture step: owns the kernel maps it reads.
pub struct Capture {
    events: AsyncFd<RingBuf<MapData>>,
    flows: HashMap<MapData, FlowKey, u32>,
    free_slots: Queue<MapData, u32>,
    counters: CounterArray,
    stats: StatsReader,
    slots: SlotTable,
    overflow_map: PerCpuArray<MapData, OverflowBucket>,
    overflow: overflow::OverflowTable,
    decoder: Decoder,
    config: CaptureConfig,
    last_stats: KernelStats,
    undecodable: Undecodable,
}

/// Records that could not be decoded.
#[derive(Clone, Copy, Debug, Default)]
struct Undecodable {
    /// All of them (for the log).
    records: u64,
    /// Those that stood for one drop on their own (no flow slot): losses.
    /// A record that started a flow is accounted with its flow's count.
    single_drops: u64,
}

/// Records read from the ring per turn, so a ring that refills as fast as
/// it is read never starves the counter sweep.
const DRAIN_PER_TURN: usize = 1024;

impl Capture {
    /// Takes over the kernel's maps.
    pub fn new(maps: KernelMaps, decoder: Decoder, config: CaptureConfig) -> Self {
        Self {
            events: maps.events,
            flows: maps.flows,
            free_slots: maps.free_slots,
            counters: maps.counters,
            stats: StatsReader::new(maps.stats, maps.program),
            slots: SlotTable::default(),
            overflow_map: maps.overflow,
            overflow: overflow::OverflowTable::default(),
            decoder,
            config,
            last_stats: KernelStats::default(),
            undecodable: Undecodable::default(),
        }
    }

    /// Runs until `output` closes or `shutdown` fires. The pipeline fires
    /// `shutdown` after detaching the programs; [`Capture::finish`] then
    /// reports every count exactly. When reading fails, the final counts
    /// held so far are still sent before the error is returned.
    pub async fn run(
        mut self,
        output: mpsc::Sender<Record>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Error> {
        match self.read_until_shutdown(&output, shutdown).await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::error!(%error, "capture failed; sending the final counts it holds");
                if let Err(final_error) = self.finish(&output).await {
                    tracing::error!(error = %final_error, "the final counts could not be read either");
                }
                Err(error)
            }
        }
    }

    async fn read_until_shutdown(
        &mut self,
        output: &mpsc::Sender<Record>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let output = output.clone();
        let mut tick = tokio::time::interval(self.config.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ready = self.events.readable_mut() => {
                    let mut guard = ready.map_err(Error::RingBuffer)?;
                    let (records, more) = drain(
                        guard.get_inner_mut(),
                        &mut self.decoder,
                        &mut self.undecodable,
                        DRAIN_PER_TURN,
                    );
                    if !more {
                        guard.clear_ready();
                    }
                    if !self.forward(records, &output).await {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if !self.sweep(&output).await? {
                        return Ok(());
                    }
                }
                _ = shutdown.changed() => {
                    self.finish(&output).await?;
                    return Ok(());
                }
            }
        }
    }

    /// The end of the run, with the programs already detached: waits one
    /// grace period for invocations still in flight, takes the last records
    /// from the ring, sends the final counts of every flow (`end`), and
    /// the final statistics.
    async fn finish(&mut self, output: &mpsc::Sender<Record>) -> Result<(), Error> {
        tokio::time::sleep(self.config.sample_interval.min(GRACE_AT_EXIT)).await;
        // Detached: the ring only holds what was written before; take all.
        let (records, _) = drain(
            self.events.get_mut(),
            &mut self.decoder,
            &mut self.undecodable,
            usize::MAX,
        );
        self.forward(records, output).await;
        let counters = &self.counters;
        let now_ns = self.decoder.clock().monotonic_now();
        let finals = self.slots.finish(now_ns, |slot| counters.read(slot));
        for (slot, observed) in finals {
            let sample = self
                .decoder
                .sample(slot, &observed.counters, observed.last_ns, true);
            if output.send(Record::Sample(sample)).await.is_err() {
                return Ok(());
            }
        }
        let kernel = self.stats.read()?;
        let reports = self
            .overflow
            .finish(&self.overflow_map, kernel.overflow + kernel.ring_full)
            .map_err(overflow_error)?;
        if !self.forward_overflow(reports, output).await {
            return Ok(());
        }
        let stats = self.read_stats()?;
        self.last_stats = stats;
        let _ = output.send(Record::Stats(stats)).await;
        Ok(())
    }

    /// Registers the slots of new flows and hands the records on; false
    /// when the output has closed.
    async fn forward(
        &mut self,
        records: Vec<(Option<Record>, SlotKey)>,
        output: &mpsc::Sender<Record>,
    ) -> bool {
        for (record, key) in records {
            // Claimed even when undecodable: a slot must never leak.
            if let Some(slot) = key.slot {
                self.slots.claim(slot, key.key, 1);
            }
            if let Some(record) = record
                && output.send(record).await.is_err()
            {
                return false;
            }
        }
        true
    }

    /// Samples counters and statistics; false when the output has closed.
    async fn sweep(&mut self, output: &mpsc::Sender<Record>) -> Result<bool, Error> {
        let clock = *self.decoder.clock();
        let now_ns = clock.monotonic_now();
        let idle_ns = self.config.idle_timeout.as_nanos() as u64;
        let grace_ns = self.config.sample_interval.as_nanos() as u64;
        let counters = &self.counters;
        let findings = self
            .slots
            .sweep(now_ns, idle_ns, grace_ns, |slot| counters.read(slot));
        for finding in findings {
            // A flow's final counts go out before its slot is handed back:
            // out of the table, they would be lost with the error if the
            // hand-back failed.
            let (record, hand_back) = match finding {
                Finding::Changed(slot, observed) => (
                    self.decoder
                        .sample(slot, &observed.counters, observed.last_ns, false),
                    None,
                ),
                Finding::Idle(slot, key) => {
                    match self.flows.remove(&key) {
                        // Gone already is as good as removed. Out of the
                        // table, the slot is disowned: no CPU's memory of
                        // its recent flow counts into it any longer.
                        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {
                            self.counters.disown(slot);
                        }
                        Err(error) => {
                            // Still mapped: the slot cannot be handed back yet.
                            tracing::warn!(%error, slot, "could not remove an idle flow; retrying");
                            self.slots.reactivate(slot, key);
                        }
                    }
                    continue;
                }
                Finding::Final(slot, observed) => (
                    self.decoder
                        .sample(slot, &observed.counters, observed.last_ns, true),
                    Some(slot),
                ),
            };
            if output.send(Record::Sample(record)).await.is_err() {
                return Ok(false);
            }
            if let Some(slot) = hand_back
                && let Err(source) = self.free_slots.push(&slot, 0)
            {
                return Err(Error::Map {
                    map: dropscope_abi::maps::FREE_SLOTS,
                    source: Box::new(source),
                });
            }
        }
        let kernel = self.stats.read()?;
        let reports = self
            .overflow
            .sweep(
                &self.overflow_map,
                kernel.overflow + kernel.ring_full,
                now_ns,
                idle_ns,
            )
            .map_err(overflow_error)?;
        if !self.forward_overflow(reports, output).await {
            return Ok(false);
        }
        let stats = self.read_stats()?;
        if stats != self.last_stats {
            self.last_stats = stats;
            if output.send(Record::Stats(stats)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn overflow_error(source: aya::maps::MapError) -> Error {
    Error::Map {
        map: dropscope_abi::maps::OVERFLOW,
        source: Box::new(source),
    }
}

impl Capture {
    /// Hands on the overflow buckets to report; false when the output has
    /// closed. A bucket whose key does not decode (the kernel only counts
    /// parsed packets, so never expected) is a counted loss.
    async fn forward_overflow(
        &mut self,
        reports: Vec<overflow::BucketReport>,
        output: &mpsc::Sender<Record>,
    ) -> bool {
        for report in reports {
            match self
                .decoder
                .overflow(report.bucket, &report.summed, report.ended)
            {
                Ok(sample) => {
                    if output.send(Record::Overflow(sample)).await.is_err() {
                        return false;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, bucket = report.bucket, "undecodable overflow bucket");
                    self.undecodable.single_drops +=
                        report.summed.packets.saturating_sub(report.previous);
                }
            }
        }
        true
    }

    /// The kernel's statistics plus the single drops user space could not
    /// decode.
    fn read_stats(&self) -> Result<KernelStats, Error> {
        let mut stats = self.stats.read()?;
        stats.undecodable = self.undecodable.single_drops;
        Ok(stats)
    }
}

/// The counter slot a ring-buffer record claims, and its kernel key.
#[derive(Clone, Copy, Debug)]
struct SlotKey {
    slot: Option<u32>,
    key: FlowKey,
}

/// Reads up to `limit` records waiting in the ring buffer: each decoded
/// record (or `None` when it could not be decoded) with the slot it claims,
/// and whether the limit stopped the reading.
fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut Decoder,
    undecodable: &mut Undecodable,
    limit: usize,
) -> (Vec<(Option<Record>, SlotKey)>, bool) {
    let mut records = Vec::new();
    while records.len() < limit {
        let Some(item) = ring.next() else {
            return (records, false);
        };
        match decoder.drop_record(&item) {
            Ok((drop, key)) => {
                let slot = Some(drop.slot);
                records.push((Some(Record::Drop(drop)), SlotKey { slot, key }));
            }
            Err(error) => {
                undecodable.records += 1;
                if undecodable.records == 1 {
                    tracing::warn!(%error, "undecodable kernel record (further ones are logged at debug)");
                } else {
                    tracing::debug!(%error, total = undecodable.records, "undecodable kernel record");
                }
                match decode::claimed_slot(&item) {
                    Some((slot, key)) => records.push((
                        None,
                        SlotKey {
                            slot: Some(slot),
                            key,
                        },
                    )),
                    None => undecodable.single_drops += 1,
                }
            }
        }
    }
    (records, true)
}

/// How long the agent waits at exit for hook invocations still in flight.
const GRACE_AT_EXIT: std::time::Duration = std::time::Duration::from_millis(200);
