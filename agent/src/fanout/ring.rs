//! The hub's bounded ring of published events. Each entry carries its
//! sequence number and the running sum of dropped packets before it, so a
//! reader overtaken by the ring knows exactly how many events and drops it
//! missed. Evicted events leave one mark per second (bounded), so a request
//! for history that is gone can say how much is gone.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, SystemTime},
};

use dropscope_proto::v1;

use crate::model::{LossEvent, LossSource};

use super::Start;

/// Marks kept for evicted events (one per second that had evictions).
const MAX_MARKS: usize = 4096;

/// One published event.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its place in the stream, from 1.
    pub seq: u64,
    /// When it was published.
    pub time: SystemTime,
    /// The message every sink sends.
    pub event: Arc<v1::Event>,
    /// Dropped packets it adds (a drop event's `new_packets`).
    pub drops: u64,
    cum_before: u64,
}

/// A reader's place: the next sequence number and the packets before it.
#[derive(Clone, Copy, Debug)]
pub struct Position {
    seq: u64,
    cum_before: u64,
}

/// The result of one read.
pub enum Read {
    /// The entry at the position, which moved past it.
    Entry(Entry),
    /// The ring had moved past the position: it now points at the oldest
    /// entry held.
    Overtaken {
        /// Events skipped.
        events: u64,
        /// Dropped packets they stood for.
        drops: u64,
    },
    /// Nothing new.
    Empty,
}

/// The history's state, for status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryStats {
    /// Events it can hold.
    pub capacity: usize,
    /// Events held now.
    pub held: usize,
    /// Events pushed out since start.
    pub evicted: u64,
    /// Events published since start.
    pub published: u64,
    /// Publication time of the oldest event held.
    pub oldest: Option<SystemTime>,
}

struct Mark {
    second: u64,
    seq: u64,
    cum_before: u64,
}

impl Mark {
    fn position(&self) -> Position {
        Position {
            seq: self.seq,
            cum_before: self.cum_before,
        }
    }
}

impl Position {
    /// Before the first event ever published.
    const START: Self = Self {
        seq: 1,
        cum_before: 0,
    };
}

pub struct Ring {
    entries: VecDeque<Entry>,
    capacity: usize,
    next_seq: u64,
    cum: u64,
    evicted: u64,
    newest_evicted: Option<SystemTime>,
    marks: VecDeque<Mark>,
    marks_trimmed: bool,
    closed: bool,
}

fn second_of(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            // Grows as events come: a large --history costs nothing idle.
            entries: VecDeque::new(),
            capacity,
            next_seq: 1,
            cum: 0,
            evicted: 0,
            newest_evicted: None,
            marks: VecDeque::new(),
            marks_trimmed: false,
            closed: false,
        }
    }

    /// Appends an event; returns its sequence number.
    pub fn push(&mut self, time: SystemTime, event: Arc<v1::Event>, drops: u64) -> u64 {
        if self.entries.len() == self.capacity {
            self.evict();
        }
        let seq = self.next_seq;
        self.entries.push_back(Entry {
            seq,
            time,
            event,
            drops,
            cum_before: self.cum,
        });
        self.next_seq += 1;
        self.cum += drops;
        seq
    }

    fn evict(&mut self) {
        let Some(oldest) = self.entries.pop_front() else {
            return;
        };
        self.evicted += 1;
        self.newest_evicted = Some(oldest.time);
        let second = second_of(oldest.time);
        if self.marks.back().is_none_or(|mark| mark.second != second) {
            if self.marks.len() == MAX_MARKS {
                self.marks.pop_front();
                self.marks_trimmed = true;
            }
            self.marks.push_back(Mark {
                second,
                seq: oldest.seq,
                cum_before: oldest.cum_before,
            });
        }
    }

    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The oldest position still readable.
    fn front(&self) -> Position {
        match self.entries.front() {
            Some(entry) => Position {
                seq: entry.seq,
                cum_before: entry.cum_before,
            },
            None => self.end(),
        }
    }

    fn end(&self) -> Position {
        Position {
            seq: self.next_seq,
            cum_before: self.cum,
        }
    }

    /// Where a reader starting at `start` begins, and the history loss it
    /// must be told first (with the time of the newest missing event).
    pub fn position(&self, start: Start) -> (Position, Option<(LossEvent, Option<SystemTime>)>) {
        match start {
            Start::Live => (self.end(), None),
            Start::Oldest => (self.front(), None),
            Start::Since(since) => {
                let index = self.entries.partition_point(|entry| entry.time < since);
                let position = match self.entries.get(index) {
                    Some(entry) => Position {
                        seq: entry.seq,
                        cum_before: entry.cum_before,
                    },
                    None => self.end(),
                };
                let gone = index == 0 && self.newest_evicted.is_some_and(|newest| newest >= since);
                let loss = if gone {
                    self.history_loss(self.mark_at_second(second_of(since)))
                } else {
                    None
                };
                (position, loss)
            }
        }
    }

    /// Where a reader of the last `count` events for which `keep` holds
    /// begins; when fewer are held and events were evicted, the history
    /// loss of everything evicted (any of it could have matched).
    pub fn position_last_matching(
        &self,
        count: u64,
        keep: &dyn Fn(&v1::Event) -> bool,
    ) -> (Position, Option<(LossEvent, Option<SystemTime>)>) {
        if count == 0 {
            return (self.end(), None);
        }
        let mut found = 0;
        for entry in self.entries.iter().rev() {
            if keep(&entry.event) {
                found += 1;
                if found == count {
                    let position = Position {
                        seq: entry.seq,
                        cum_before: entry.cum_before,
                    };
                    return (position, None);
                }
            }
        }
        (self.front(), self.history_loss(Position::START))
    }

    /// The first evicted event published in this second or later. When
    /// the oldest marks were trimmed and the second is before every mark
    /// kept, everything evicted is counted (an upper bound).
    fn mark_at_second(&self, second: u64) -> Position {
        let index = self.marks.partition_point(|mark| mark.second < second);
        if index == 0 && self.marks_trimmed {
            return Position::START;
        }
        self.marks
            .get(index)
            .map_or_else(|| self.front(), Mark::position)
    }

    /// The loss from `from` up to the oldest entry held.
    fn history_loss(&self, from: Position) -> Option<(LossEvent, Option<SystemTime>)> {
        let front = self.front();
        let events = front.seq.saturating_sub(from.seq);
        if events == 0 {
            return None;
        }
        let drops = front.cum_before.saturating_sub(from.cum_before);
        let loss = LossEvent {
            source: LossSource::History,
            lost: events,
            total: events,
            lost_drops: drops,
            total_drops: drops,
            time: SystemTime::now(),
        };
        Some((loss, self.newest_evicted))
    }

    /// Reads at `position` and moves it.
    pub fn read(&self, position: &mut Position) -> Read {
        let front = self.front();
        if position.seq < front.seq {
            let events = front.seq - position.seq;
            let drops = front.cum_before.saturating_sub(position.cum_before);
            *position = front;
            return Read::Overtaken { events, drops };
        }
        let index = (position.seq - front.seq) as usize;
        match self.entries.get(index) {
            Some(entry) => {
                position.seq = entry.seq + 1;
                position.cum_before = entry.cum_before + entry.drops;
                Read::Entry(entry.clone())
            }
            None => Read::Empty,
        }
    }

    /// The time of the newest event held.
    pub fn newest_time(&self) -> Option<SystemTime> {
        self.entries.back().map(|entry| entry.time)
    }

    pub fn stats(&self) -> HistoryStats {
        HistoryStats {
            capacity: self.capacity,
            held: self.entries.len(),
            evicted: self.evicted,
            published: self.next_seq - 1,
            oldest: self.entries.front().map(|entry| entry.time),
        }
    }
}
