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
}

/// A slot whose flow left the kernel's table, waiting to be handed back.
#[derive(Clone, Copy, Debug)]
struct Retired {
    slot: u32,
    since_ns: u64,
}

/// What a sweep found for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The counts changed since the last report.
    Changed(u32, FlowCounters),
    /// The flow was idle: remove `FlowKey` from the kernel's table; the
    /// slot is now retired.
    Idle(u32, FlowKey),
    /// The grace period is over: these are the final counts; give the slot
    /// back to the kernel.
    Final(u32, FlowCounters),
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
            },
        );
    }

    /// Puts a retired slot back in use: its flow could not be removed from
    /// the kernel's table, so the slot must not be handed back yet.
    pub fn reactivate(&mut self, slot: u32, key: FlowKey) {
        self.retired.retain(|retired| retired.slot != slot);
        self.active.insert(
            slot,
            Active {
                key,
                reported_packets: 0,
            },
        );
    }

    /// Every slot's final counts, at exit (the programs are detached):
    /// active and retired alike, emptying the table.
    pub fn finish(
        &mut self,
        mut read: impl FnMut(u32) -> Option<FlowCounters>,
    ) -> Vec<(u32, FlowCounters)> {
        let slots = self
            .active
            .drain()
            .map(|(slot, _)| slot)
            .chain(self.retired.drain(..).map(|retired| retired.slot));
        slots
            .filter_map(|slot| read(slot).map(|counters| (slot, counters)))
            .collect()
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
    /// monotonic ns in `now_ns`). A flow idle for `idle_ns` is retired; a
    /// retired slot is final after `grace_ns`.
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
            findings.push(Finding::Final(retired.slot, counters));
            false
        });
        let mut idle = Vec::new();
        for (slot, active) in &mut self.active {
            let Some(counters) = read(*slot) else {
                continue;
            };
            if counters.packets != active.reported_packets {
                active.reported_packets = counters.packets;
                findings.push(Finding::Changed(*slot, counters));
            }
            if now_ns.saturating_sub(counters.last_ns) >= idle_ns {
                idle.push(*slot);
            }
        }
        for slot in idle {
            if let Some(active) = self.active.remove(&slot) {
                findings.push(Finding::Idle(slot, active.key));
                self.retired.push(Retired {
                    slot,
                    since_ns: now_ns,
                });
            }
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(packets: u64, last_ns: u64) -> FlowCounters {
        FlowCounters {
            packets,
            bytes: packets * 60,
            first_ns: 1,
            last_ns,
            tcp_flags: 2,
        }
    }

    #[test]
    fn reports_changes_then_retires_then_finalises() {
        let mut table = SlotTable::default();
        table.claim(7, FlowKey::default(), 1);
        let mut now_counters = counters(1, 100);

        assert!(
            table
                .sweep(150, 1_000, 500, |_| Some(now_counters))
                .is_empty(),
            "nothing changed"
        );

        now_counters = counters(3, 200);
        assert_eq!(
            table.sweep(250, 1_000, 500, |_| Some(now_counters)),
            vec![Finding::Changed(7, now_counters)]
        );

        assert_eq!(
            table.sweep(1_300, 1_000, 500, |_| Some(now_counters)),
            vec![Finding::Idle(7, FlowKey::default())]
        );
        assert_eq!(table.len(), 1, "retired slots still count until given back");

        // A packet that raced with the retirement lands in the final count.
        now_counters = counters(4, 1_250);
        assert!(
            table
                .sweep(1_500, 1_000, 500, |_| Some(now_counters))
                .is_empty(),
            "grace not over"
        );
        assert_eq!(
            table.sweep(1_800, 1_000, 500, |_| Some(now_counters)),
            vec![Finding::Final(7, now_counters)]
        );
        assert!(table.is_empty());
    }

    #[test]
    fn a_slot_whose_flow_could_not_be_removed_stays_in_use() {
        let mut table = SlotTable::default();
        table.claim(3, FlowKey::default(), 1);
        let idle = counters(1, 0);
        assert_eq!(
            table.sweep(2_000, 1_000, 500, |_| Some(idle)),
            vec![Finding::Idle(3, FlowKey::default())]
        );
        table.reactivate(3, FlowKey::default());
        // Never finalised while reactivated; retried as idle next sweep.
        let findings = table.sweep(3_000, 1_000, 500, |_| Some(idle));
        assert!(
            findings.contains(&Finding::Idle(3, FlowKey::default())),
            "{findings:?}"
        );
        assert!(
            !findings
                .iter()
                .any(|found| matches!(found, Finding::Final(..)))
        );
    }

    #[test]
    fn at_exit_every_slot_gets_its_final_count() {
        let mut table = SlotTable::default();
        table.claim(1, FlowKey::default(), 1);
        table.claim(2, FlowKey::default(), 1);
        table.sweep(5_000, 1_000, 500, |slot| {
            Some(counters(1, if slot == 1 { 0 } else { 4_900 }))
        });
        let mut finals = table.finish(|slot| Some(counters(u64::from(slot) * 10, 0)));
        finals.sort_by_key(|(slot, _)| *slot);
        assert_eq!(
            finals
                .iter()
                .map(|(slot, c)| (*slot, c.packets))
                .collect::<Vec<_>>(),
            [(1, 10), (2, 20)]
        );
        assert!(table.is_empty());
    }
}
