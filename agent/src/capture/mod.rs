//! Reads what the kernel programs produce: new flows from the ring buffer
//! (asynchronously, as they come), flow counters and kernel statistics on a
//! timer. Emits [`Record`]s to `track`.
//!
//! The output queue is bounded and this step waits on it rather than drop
//! a record: under pressure the kernel's ring buffer fills instead, and the
//! kernel counts exactly what it could not send (`LostRingFull`). So a loss
//! is always counted once, where it happens.

pub mod counters;
pub mod slots;
pub mod stats;

use aya::maps::{HashMap, MapData, Queue, RingBuf};
use dropscope_abi::FlowKey;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

pub use counters::CounterArray;
pub use slots::{Finding, SlotTable};
pub use stats::StatsReader;

use crate::{
    config::CaptureConfig,
    decode::Decoder,
    kernel::KernelMaps,
    model::{Record, record::KernelStats},
};

/// What can stop the capture step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Mapping a map into memory failed.
    #[error("mmap of map {map} failed: {source}")]
    Mmap {
        /// The map.
        map: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
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
    decoder: Decoder,
    config: CaptureConfig,
    last_stats: KernelStats,
    undecodable: u64,
}

impl Capture {
    /// Takes over the kernel's maps.
    pub fn new(maps: KernelMaps, decoder: Decoder, config: CaptureConfig) -> Result<Self, Error> {
        // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
        // owns the ring buffer, and always returns that same fd.
        let events = unsafe { AsyncFd::register_with_interest(maps.events, Interest::READABLE) }
            .map_err(|error| Error::RingBuffer(std::io::Error::other(error.to_string())))?;
        Ok(Self {
            events,
            flows: maps.flows,
            free_slots: maps.free_slots,
            counters: CounterArray::map(maps.counters, maps.slots)?,
            stats: StatsReader::new(maps.stats, maps.program),
            slots: SlotTable::default(),
            decoder,
            config,
            last_stats: KernelStats::default(),
            undecodable: 0,
        })
    }

    /// Runs until `output` closes or `shutdown` fires; a last sweep then
    /// reports the counts that are still pending.
    pub async fn run(
        mut self,
        output: mpsc::Sender<Record>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let mut tick = tokio::time::interval(self.config.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ready = self.events.readable_mut() => {
                    let mut guard = ready.map_err(Error::RingBuffer)?;
                    let records = drain(guard.get_inner_mut(), &mut self.decoder, &mut self.undecodable);
                    guard.clear_ready();
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
                    // Pick up what is already in the ring, then the pending counts.
                    let records = drain(self.events.get_mut(), &mut self.decoder, &mut self.undecodable);
                    self.forward(records, &output).await;
                    self.sweep(&output).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Registers the slots of new flows and hands the records on; false
    /// when the output has closed.
    async fn forward(
        &mut self,
        records: Vec<(Record, FlowKey)>,
        output: &mpsc::Sender<Record>,
    ) -> bool {
        for (record, key) in records {
            if let Record::Drop(drop) = &record
                && let Some(slot) = drop.slot
            {
                self.slots.claim(slot, key, 1);
            }
            if output.send(record).await.is_err() {
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
            let record = match finding {
                Finding::Changed(slot, counters) => {
                    Record::Sample(self.decoder.sample(slot, &counters, false))
                }
                Finding::Idle(_, key) => {
                    if let Err(error) = self.flows.remove(&key) {
                        tracing::warn!(%error, "could not remove an idle flow from the kernel table");
                    }
                    continue;
                }
                Finding::Final(slot, counters) => {
                    if let Err(source) = self.free_slots.push(&slot, 0) {
                        return Err(Error::Map {
                            map: dropscope_abi::maps::FREE_SLOTS,
                            source: Box::new(source),
                        });
                    }
                    Record::Sample(self.decoder.sample(slot, &counters, true))
                }
            };
            if output.send(record).await.is_err() {
                return Ok(false);
            }
        }
        let stats = self.stats.read()?;
        if stats != self.last_stats {
            self.last_stats = stats;
            if output.send(Record::Stats(stats)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Reads every record waiting in the ring buffer, with the kernel key of
/// each new flow.
fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut Decoder,
    undecodable: &mut u64,
) -> Vec<(Record, FlowKey)> {
    let mut records = Vec::new();
    while let Some(item) = ring.next() {
        match decoder.drop_record(&item) {
            Ok((drop, key)) => records.push((Record::Drop(drop), key)),
            Err(error) => {
                *undecodable += 1;
                tracing::warn!(%error, total = *undecodable, "undecodable kernel record");
            }
        }
    }
    records
}
