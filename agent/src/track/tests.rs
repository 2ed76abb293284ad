//! Tracking tests: typed records in, events out.

use std::time::{Duration, SystemTime};

use super::*;
use crate::{model::TcpFlags, testkit::mk_drop_record as drop_record};

fn sample(slot: u32, packets: u64, ended: bool) -> FlowSample {
    FlowSample {
        slot,
        packets,
        bytes: packets * 60,
        first: SystemTime::UNIX_EPOCH,
        last: SystemTime::UNIX_EPOCH + Duration::from_secs(packets),
        tcp_flags: TcpFlags(0x02),
        ended,
    }
}

fn drop_of(event: &Event) -> &DropEvent {
    match event {
        Event::Drop(drop) => drop,
        other => panic!("expected a drop event, got {other:?}"),
    }
}

#[test]
fn a_flow_is_new_then_updated_then_ended_with_cumulative_counts() {
    let mut tracker = Tracker::new();
    let new = tracker.on_record(Record::Drop(drop_record(3)));
    let first = drop_of(&new[0]);
    assert_eq!(
        (first.kind, first.packets, first.bytes),
        (EventKind::New, 1, 60)
    );
    assert!(first.overflow.is_none());

    let update = tracker.on_record(Record::Sample(sample(3, 4, false)));
    let update = drop_of(&update[0]);
    assert_eq!(
        (update.kind, update.packets, update.flow_id),
        (EventKind::Update, 4, first.flow_id)
    );
    assert_eq!(
        (first.new_packets, update.new_packets),
        (1, 3),
        "each event says how many drops it adds"
    );
    assert_eq!(
        update.packet, first.packet,
        "updates carry the flow's tuple"
    );

    let end = tracker.on_record(Record::Sample(sample(3, 5, true)));
    let end = drop_of(&end[0]);
    assert_eq!(
        (end.kind, end.packets, end.new_packets),
        (EventKind::End, 5, 1)
    );
    assert!(tracker.is_empty(), "ended flows are forgotten");
    assert!(
        tracker
            .on_record(Record::Sample(sample(3, 6, false)))
            .is_empty()
    );
}

fn overflow(bucket: u32, packets: u64, folded: u64, ended: bool) -> OverflowSample {
    let record = drop_record(0);
    OverflowSample {
        bucket,
        reason: record.reason,
        location: record.location,
        packet: record.packet,
        packets,
        bytes: packets * 60,
        folded,
        first: SystemTime::UNIX_EPOCH,
        last: SystemTime::UNIX_EPOCH + Duration::from_secs(packets),
        tcp_flags: record.tcp_flags,
        ended,
    }
}

#[test]
fn an_overflow_bucket_is_reported_like_a_flow_counting_from_where_it_stood() {
    let mut tracker = Tracker::new();
    let new = tracker.on_record(Record::Overflow(overflow(7, 100, 90, false)));
    let first = drop_of(&new[0]);
    assert_eq!(
        (first.kind, first.packets, first.new_packets),
        (EventKind::New, 100, 100)
    );
    assert_eq!(
        first.overflow.map(|overflow| overflow.folded_packets),
        Some(90)
    );
    let update = tracker.on_record(Record::Overflow(overflow(7, 250, 230, false)));
    let update = drop_of(&update[0]);
    assert_eq!(
        (
            update.kind,
            update.flow_id,
            update.packets,
            update.new_packets
        ),
        (EventKind::Update, first.flow_id, 250, 150)
    );
    let end = tracker.on_record(Record::Overflow(overflow(7, 250, 230, true)));
    let end = drop_of(&end[0]);
    assert_eq!(
        (end.kind, end.packets, end.new_packets),
        (EventKind::End, 250, 0)
    );
    assert!(tracker.is_empty());

    // The bucket grows again: a new aggregate, counted from 250.
    let again = tracker.on_record(Record::Overflow(overflow(7, 260, 239, false)));
    let again = drop_of(&again[0]);
    assert_ne!(again.flow_id, first.flow_id);
    assert_eq!(
        (again.kind, again.packets, again.new_packets),
        (EventKind::New, 10, 10)
    );
    assert_eq!(
        again.overflow.map(|overflow| overflow.folded_packets),
        Some(9)
    );
}

#[test]
fn flows_get_distinct_ids() {
    let mut tracker = Tracker::new();
    let a = tracker.on_record(Record::Drop(drop_record(1)));
    let b = tracker.on_record(Record::Drop(drop_record(2)));
    assert_ne!(drop_of(&a[0]).flow_id, drop_of(&b[0]).flow_id);
    assert_eq!(tracker.len(), 2);
}

#[test]
fn kernel_losses_become_loss_events_with_deltas() {
    let mut tracker = Tracker::new();
    let stats = |lost| KernelStats {
        lost_ring_full: lost,
        ..KernelStats::default()
    };
    assert!(tracker.on_record(Record::Stats(stats(0))).is_empty());
    let events = tracker.on_record(Record::Stats(stats(7)));
    match &events[..] {
        [Event::Loss(loss)] => {
            assert_eq!(
                (loss.source, loss.lost_drops, loss.total_drops),
                (LossSource::KernelRingFull, 7, 7)
            );
        }
        other => panic!("expected one loss event, got {other:?}"),
    }
    let events = tracker.on_record(Record::Stats(stats(9)));
    assert!(matches!(
        &events[..],
        [Event::Loss(LossEvent {
            lost_drops: 2,
            total_drops: 9,
            ..
        })]
    ));
    assert_eq!(tracker.kernel_stats().lost_ring_full, 9);
}

#[test]
fn unreadable_and_undecodable_drops_are_counted_losses() {
    let mut tracker = Tracker::new();
    let events = tracker.on_record(Record::Stats(KernelStats {
        not_ip: 2,
        read_errors: 1,
        undecodable: 4,
        ..KernelStats::default()
    }));
    let losses: Vec<(LossSource, u64)> = events
        .iter()
        .map(|event| match event {
            Event::Loss(loss) => (loss.source, loss.lost_drops),
            other => panic!("expected losses, got {other:?}"),
        })
        .collect();
    assert_eq!(
        losses,
        [
            (LossSource::KernelUnreadable, 3),
            (LossSource::Undecodable, 4)
        ]
    );
}

#[test]
fn a_flow_whose_first_record_was_undecodable_is_a_loss_of_its_final_count() {
    let mut tracker = Tracker::new();
    // Slot 5 was claimed by a record user space could not decode.
    assert!(
        tracker
            .on_record(Record::Sample(sample(5, 3, false)))
            .is_empty(),
        "counted once, at the end"
    );
    match &tracker.on_record(Record::Sample(sample(5, 4, true)))[..] {
        [Event::Loss(loss)] => {
            assert_eq!((loss.source, loss.lost_drops), (LossSource::Undecodable, 4));
        }
        other => panic!("expected one loss, got {other:?}"),
    }
}

#[test]
fn an_overflow_bucket_first_seen_in_its_final_report_still_opens_before_it_ends() {
    let mut tracker = Tracker::new();
    let events = tracker.on_record(Record::Overflow(overflow(9, 12, 0, true)));
    let kinds: Vec<(EventKind, u64)> = events
        .iter()
        .map(|event| (drop_of(event).kind, drop_of(event).new_packets))
        .collect();
    assert_eq!(kinds, [(EventKind::New, 12), (EventKind::End, 0)]);
    assert!(tracker.is_empty());
}
