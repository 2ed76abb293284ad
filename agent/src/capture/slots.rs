//! The life of a counter slot on the agent's side: known from its flow's
//! first record, sampled while it changes, retired when idle, and given back
//! to the kernel only after a grace period, so that an increment racing with
//! the retirement is still counted.

use std::collections::HashMap;

use dropscope_abi::{FlowCounters, FlowKey};

/// A slot in use by a flow.
#[derive(Clone, Copy, Debug)]
struct Active {
    key: FlowKey,
    reported_packets: u64,
    /// When a sweep last saw the count grow (0: never since the first
    /// drop, which the counters date themselves).
    grew_ns: u64,
}

impl Active {
    /// The time of the flow's latest drop, as well as user space knows it.
    fn last_ns(&self, counters: &FlowCounters) -> u64 {
        self.grew_ns.max(counters.first_ns)
    }
}

/// A slot whose flow left the kernel's table, waiting to be handed back.
#[derive(Clone, Copy, Debug)]
struct Retired {
    slot: u32,
    since_ns: u64,
    reported_packets: u64,
    last_ns: u64,
    /// The slot's `first_ns` (the agent zeroes it in the kernel's copy).
    first_ns: u64,
}

/// A slot's counters and the time of its latest drop. The kernel dates
/// only a flow's first drop (a clock read per repeated drop was a sixth of
/// the hook's cost); a later drop is dated by the sweep that saw the count
/// grow, so `last_ns` is late by at most one sample interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The counters as read.
    pub counters: FlowCounters,
    /// Monotonic ns of the latest drop (see above).
    pub last_ns: u64,
}

/// What a sweep found for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The counts changed since the last report.
    Changed(u32, Observed),
    /// The flow was idle: remove `FlowKey` from the kernel's table; the
    /// slot is now retired.
    Idle(u32, FlowKey),
    /// The grace period is over: these are the final counts; give the slot
    /// back to the kernel.
    Final(u32, Observed),
}

/// The slots the agent knows, and the rules of their life.
#[derive(Debug, Default)]
pub struct SlotTable {
    active: HashMap<u32, Active>,
    retired: Vec<Retired>,
}

impl SlotTable {
    /// Records that a new flow owns `slot`, reported with `packets` already.
    pub fn claim(&mut self, slot: u32, key: FlowKey, packets: u64) {
        self.active.insert(
            slot,
            Active {
                key,
                reported_packets: packets,
                grew_ns: 0,
            },
        );
    }

    /// Puts a retired slot back in use: its flow could not be removed from
    /// the kernel's table (so the agent did not disown it), and the slot
    /// must not be handed back yet.
    pub fn reactivate(&mut self, slot: u32, key: FlowKey) {
        let retired = self
            .retired
            .iter()
            .position(|retired| retired.slot == slot)
            .map(|at| self.retired.swap_remove(at));
        self.active.insert(
            slot,
            Active {
                key,
                reported_packets: retired.map_or(0, |retired| retired.reported_packets),
                grew_ns: retired.map_or(0, |retired| retired.last_ns),
            },
        );
    }

    /// Every slot's final counts at exit, `now_ns` (the programs are
    /// detached): active and retired alike, emptying the table.
    pub fn finish(
        &mut self,
        now_ns: u64,
        mut read: impl FnMut(u32) -> Option<FlowCounters>,
    ) -> Vec<(u32, Observed)> {
        let mut finals = Vec::with_capacity(self.len());
        for (slot, active) in self.active.drain() {
            if let Some(counters) = read(slot) {
                let grew = counters.packets != active.reported_packets;
                let last_ns = if grew {
                    now_ns
                } else {
                    active.last_ns(&counters)
                };
                finals.push((slot, Observed { counters, last_ns }));
            }
        }
        for retired in self.retired.drain(..) {
            if let Some(counters) = read(retired.slot) {
                finals.push((retired.slot, final_of(&retired, counters, now_ns)));
            }
        }
        finals
    }

    /// Number of slots in use or waiting to be given back.
    pub fn len(&self) -> usize {
        self.active.len() + self.retired.len()
    }

    /// True when no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One pass over every slot: `read` gives its counters now (kernel
    /// monotonic ns in `now_ns`). A flow whose count has not grown for
    /// `idle_ns` is retired; a retired slot is final after `grace_ns`.
    pub fn sweep(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        grace_ns: u64,
        mut read: impl FnMut(u32) -> Option<FlowCounters>,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.retired.retain(|retired| {
            if now_ns.saturating_sub(retired.since_ns) < grace_ns {
                return true;
            }
            let counters = read(retired.slot).unwrap_or_default();
            findings.push(Finding::Final(
                retired.slot,
                final_of(retired, counters, now_ns),
            ));
            false
        });
        let mut idle = Vec::new();
        for (slot, active) in &mut self.active {
            let Some(counters) = read(*slot) else {
                continue;
            };
            if counters.packets != active.reported_packets {
                active.reported_packets = counters.packets;
                active.grew_ns = now_ns;
                findings.push(Finding::Changed(
                    *slot,
                    Observed {
                        counters,
                        last_ns: now_ns,
                    },
                ));
            }
            if now_ns.saturating_sub(active.last_ns(&counters)) >= idle_ns {
                idle.push((*slot, active.last_ns(&counters), counters.first_ns));
            }
        }
        for (slot, last_ns, first_ns) in idle {
            if let Some(active) = self.active.remove(&slot) {
                findings.push(Finding::Idle(slot, active.key));
                self.retired.push(Retired {
                    slot,
                    since_ns: now_ns,
                    reported_packets: active.reported_packets,
                    last_ns,
                    first_ns,
                });
            }
        }
        findings
    }
}

/// A retired slot's final observation: drops that raced with the
/// retirement are dated now, and its first drop is the one it had before
/// the agent disowned the slot.
fn final_of(retired: &Retired, mut counters: FlowCounters, now_ns: u64) -> Observed {
    let last_ns = if counters.packets != retired.reported_packets {
        now_ns
    } else {
        retired.last_ns
    };
    counters.first_ns = retired.first_ns;
    Observed { counters, last_ns }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(packets: u64) -> FlowCounters {
        FlowCounters {
            packets,
            bytes: packets * 60,
            first_ns: 1,
            tcp_flags: 2,
        }
    }

    fn observed(counters: FlowCounters, last_ns: u64) -> Observed {
        Observed { counters, last_ns }
    }

    #[test]
    fn reports_changes_then_retires_then_finalises() {
        let mut table = SlotTable::default();
        table.claim(7, FlowKey::default(), 1);

        assert!(
            table
                .sweep(150, 1_000, 500, |_| Some(counters(1)))
                .is_empty(),
            "nothing changed"
        );

        assert_eq!(
            table.sweep(250, 1_000, 500, |_| Some(counters(3))),
            vec![Finding::Changed(7, observed(counters(3), 250))],
            "growth is dated by the sweep that saw it"
        );

        assert_eq!(
            table.sweep(1_300, 1_000, 500, |_| Some(counters(3))),
            vec![Finding::Idle(7, FlowKey::default())],
            "idle a timeout after the count last grew"
        );
        assert_eq!(table.len(), 1, "retired slots still count until given back");

        // A packet that raced with the retirement lands in the final count.
        assert!(
            table
                .sweep(1_500, 1_000, 500, |_| Some(counters(4)))
                .is_empty(),
            "grace not over"
        );
        assert_eq!(
            table.sweep(1_800, 1_000, 500, |_| Some(counters(4))),
            vec![Finding::Final(7, observed(counters(4), 1_800))]
        );
        assert!(table.is_empty());
    }

    #[test]
    fn a_single_drop_is_dated_by_the_kernel_to_the_end() {
        let mut table = SlotTable::default();
        table.claim(2, FlowKey::default(), 1);
        assert_eq!(
            table.sweep(2_000, 1_000, 500, |_| Some(counters(1))),
            vec![Finding::Idle(2, FlowKey::default())]
        );
        assert_eq!(
            table.sweep(2_600, 1_000, 500, |_| Some(counters(1))),
            vec![Finding::Final(2, observed(counters(1), 1))],
            "its last drop is its first, at first_ns"
        );
    }

    #[test]
    fn a_slot_whose_flow_could_not_be_removed_stays_in_use() {
        let mut table = SlotTable::default();
        table.claim(3, FlowKey::default(), 1);
        let idle = counters(1);
        assert_eq!(
            table.sweep(2_000, 1_000, 500, |_| Some(idle)),
            vec![Finding::Idle(3, FlowKey::default())]
        );
        table.reactivate(3, FlowKey::default());
        // Never finalised while reactivated, nor reported as changed;
        // retried as idle next sweep.
        let findings = table.sweep(3_000, 1_000, 500, |_| Some(idle));
        assert_eq!(findings, vec![Finding::Idle(3, FlowKey::default())]);
    }

    #[test]
    fn at_exit_every_slot_gets_its_final_count() {
        let mut table = SlotTable::default();
        table.claim(1, FlowKey::default(), 1);
        table.claim(2, FlowKey::default(), 1);
        // Slot 1 goes idle and retires; slot 2 grows.
        table.sweep(5_000, 1_000, 500, |slot| Some(counters(u64::from(slot))));
        let mut finals = table.finish(6_000, |slot| Some(counters(if slot == 1 { 1 } else { 20 })));
        finals.sort_by_key(|(slot, _)| *slot);
        assert_eq!(
            finals,
            [
                (1, observed(counters(1), 1)),
                (2, observed(counters(20), 6_000)),
            ]
        );
        assert!(table.is_empty());
    }
}
