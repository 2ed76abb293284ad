//! Reads the socket and wire hooks' ring buffer (connects the kernel
//! decided, DNS messages) as they come, and their per-CPU counters on a
//! timer. Emits [`Record::Connect`], [`Record::Dns`] and
//! [`Record::SocketStats`] to `track`, on the same queue as the drop path.
//!
//! Like the drop path, it waits on its output rather than drop a record:
//! pressure fills the kernel ring, where the kernel counts what it could
//! not send. DNS records that are no readable message are counted
//! (`dns_unreadable`) and reported with the statistics.

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use dropscope_abi::SocketStat;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::Error;
use crate::{
    decode::socket::{SocketDecoder, SocketError, SocketRecord},
    kernel::SocketMaps,
    model::{Record, SocketStats},
};

/// Records read per turn, so the statistics timer is never starved.
const DRAIN_PER_TURN: usize = 1024;

/// The socket capture step.
pub struct SocketCapture {
    events: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    decoder: SocketDecoder,
    interval: Duration,
    unreadable: u64,
    last: SocketStats,
}

impl SocketCapture {
    /// Takes over the socket hooks' maps.
    pub fn new(maps: SocketMaps, decoder: SocketDecoder, interval: Duration) -> Self {
        Self {
            events: maps.events,
            stats: maps.stats,
            decoder,
            interval,
            unreadable: 0,
            last: SocketStats::default(),
        }
    }

    /// Runs until `output` closes or `shutdown` fires (after the programs
    /// were detached: then the ring is emptied and the last counters sent).
    pub async fn run(
        mut self,
        output: mpsc::Sender<Record>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ready = self.events.readable_mut() => {
                    let mut guard = ready.map_err(Error::RingBuffer)?;
                    let (records, more) = drain(
                        guard.get_inner_mut(),
                        &mut self.decoder,
                        &mut self.unreadable,
                        DRAIN_PER_TURN,
                    );
                    if !more {
                        guard.clear_ready();
                    }
                    if !send_all(records, &output).await {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if !self.send_stats(&output).await? {
                        return Ok(());
                    }
                }
                _ = shutdown.changed() => {
                    let (records, _) = drain(
                        self.events.get_mut(),
                        &mut self.decoder,
                        &mut self.unreadable,
                        usize::MAX,
                    );
                    if send_all(records, &output).await {
                        self.send_stats(&output).await?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Sends the counters when they changed; false when the output closed.
    async fn send_stats(&mut self, output: &mpsc::Sender<Record>) -> Result<bool, Error> {
        let stats = self.read_stats()?;
        if stats == self.last {
            return Ok(true);
        }
        self.last = stats;
        Ok(output.send(Record::SocketStats(stats)).await.is_ok())
    }

    fn read_stats(&self) -> Result<SocketStats, Error> {
        let read = |stat: SocketStat| -> Result<u64, Error> {
            let values = self
                .stats
                .get(&(stat as u32), 0)
                .map_err(|source| Error::Map {
                    map: dropscope_abi::maps::SOCKET_STATS,
                    source: Box::new(source),
                })?;
            Ok(values.iter().sum())
        };
        Ok(SocketStats {
            connects_tracked: read(SocketStat::ConnectsTracked)?,
            connects_untracked: read(SocketStat::ConnectsUntracked)?,
            connect_records: read(SocketStat::ConnectRecords)?,
            connect_ring_full: read(SocketStat::ConnectRingFull)?,
            syn_retransmits: read(SocketStat::SynRetransmits)?,
            dns_records: read(SocketStat::DnsRecords)?,
            dns_ring_full: read(SocketStat::DnsRingFull)?,
            syns_left: read(SocketStat::SynsLeft)?,
            synack_retransmits: read(SocketStat::SynAckRetransmits)?,
            dns_unreadable: self.unreadable,
        })
    }
}

/// Hands records on; false when the output has closed.
async fn send_all(records: Vec<Record>, output: &mpsc::Sender<Record>) -> bool {
    for record in records {
        if output.send(record).await.is_err() {
            return false;
        }
    }
    true
}

/// Up to `limit` records from the ring; true when more may be waiting.
fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &mut SocketDecoder,
    unreadable: &mut u64,
    limit: usize,
) -> (Vec<Record>, bool) {
    let mut records = Vec::new();
    while records.len() < limit {
        let Some(item) = ring.next() else {
            return (records, false);
        };
        match decoder.record(&item) {
            Ok(SocketRecord::Connect(seen)) => records.push(Record::Connect(seen)),
            Ok(SocketRecord::Dns(seen)) => records.push(Record::Dns(seen)),
            // A TCP segment in the middle of a DNS stream is no message.
            Err(SocketError::Dns { udp: false, .. }) => {}
            Err(error) => {
                *unreadable += 1;
                tracing::debug!(%error, total = *unreadable, "unreadable socket record");
            }
        }
    }
    (records, true)
}
