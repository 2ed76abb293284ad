//! The hub: history and live from one ring, exact losses for a reader the
//! ring overtook, history that is gone said as such.

use std::{sync::Arc, time::Duration};

use dropscope_proto::v1;

use super::*;
use crate::{
    model::{DropEvent, EventKind, Protocol},
    testkit::{mk_drop_event, mk_tuple},
};

fn drop_with(flow_id: u64, new_packets: u64) -> Event {
    let mut drop = DropEvent::clone(&mk_drop_event(
        flow_id,
        EventKind::New,
        mk_tuple([10, 0, 0, 1], 40000, [10, 0, 0, 2], 8080, Protocol::Tcp),
    ));
    drop.new_packets = new_packets;
    Event::Drop(Arc::new(drop))
}

fn flow_id(item: &Item) -> u64 {
    match item {
        Item::Event(entry) => match &entry.event.event {
            Some(v1::event::Event::Drop(drop)) => drop.flow_id,
            other => panic!("expected a drop, got {other:?}"),
        },
        Item::Lost(loss, _) => panic!("expected an event, got {loss:?}"),
    }
}

fn hub(history: usize) -> Hub {
    Hub::new(FanoutConfig { history }, "node-a")
}

#[tokio::test]
async fn a_reader_overtaken_by_the_ring_is_told_the_events_and_drops_it_missed() {
    let hub = hub(3);
    let mut slow = hub.cursor(Start::Live, "slow");
    let mut fast = hub.cursor(Start::Live, "fast");
    for flow in 1..=5 {
        hub.publish(&drop_with(flow, flow * 10));
        assert_eq!(flow_id(&fast.next().await.expect("live")), flow);
    }
    hub.close();
    match slow.next().await {
        Some(Item::Lost(loss, None)) => {
            assert_eq!(loss.source, LossSource::Subscriber);
            assert_eq!((loss.lost, loss.lost_drops), (2, 10 + 20));
            assert_eq!((loss.total, loss.total_drops), (2, 30));
        }
        other => panic!("expected a subscriber loss, got {other:?}"),
    }
    for expected in 3..=5 {
        assert_eq!(flow_id(&slow.next().await.expect("held")), expected);
    }
    assert!(slow.next().await.is_none(), "ends with the closed hub");
    assert!(fast.next().await.is_none());
    let info = slow.stats().info();
    assert_eq!((info.lost_events, info.lost_drops), (2, 30));
}

#[tokio::test]
async fn last_n_and_oldest_come_from_the_history_then_live_follows() {
    let hub = hub(10);
    for flow in 1..=4 {
        hub.publish(&drop_with(flow, 1));
    }
    let mut last_two = hub.cursor_last_matching(2, &|_| true, "last");
    assert_eq!(flow_id(&last_two.try_next().expect("held")), 3);
    assert_eq!(flow_id(&last_two.try_next().expect("held")), 4);
    assert!(last_two.try_next().is_none(), "caught up");
    let mut oldest = hub.cursor(Start::Oldest, "oldest");
    assert_eq!(flow_id(&oldest.try_next().expect("held")), 1);
    hub.publish(&drop_with(5, 1));
    assert_eq!(flow_id(&last_two.next().await.expect("live")), 5);
    assert_eq!(hub.subscribers().len(), 2);
    drop(oldest);
    assert_eq!(hub.subscribers().len(), 1, "dropped cursors unregister");
}

#[tokio::test]
async fn history_that_was_pushed_out_is_reported_not_skipped() {
    let hub = hub(2);
    let before = SystemTime::now() - Duration::from_secs(1);
    for flow in 1..=5 {
        hub.publish(&drop_with(flow, 2));
    }
    let mut since = hub.cursor(Start::Since(before), "since");
    match since.try_next() {
        Some(Item::Lost(loss, Some(_))) => {
            assert_eq!(loss.source, LossSource::History);
            assert_eq!((loss.lost, loss.lost_drops), (3, 6));
        }
        other => panic!("expected a history loss, got {other:?}"),
    }
    assert_eq!(flow_id(&since.try_next().expect("held")), 4);

    let mut last = hub.cursor_last_matching(4, &|_| true, "last");
    match last.try_next() {
        Some(Item::Lost(loss, _)) => assert_eq!(loss.source, LossSource::History),
        other => panic!("expected a history loss, got {other:?}"),
    }
    assert_eq!(flow_id(&last.try_next().expect("held")), 4);

    let future = SystemTime::now() + Duration::from_secs(60);
    let mut live = hub.cursor(Start::Since(future), "future");
    assert!(live.try_next().is_none(), "nothing is missing after now");
    assert_eq!(hub.history().evicted, 3);
}

#[tokio::test]
async fn a_stalled_reader_costs_no_memory_and_does_not_slow_the_publisher() {
    let hub = hub(64);
    let _stalled = hub.cursor(Start::Live, "stalled");
    for flow in 0..100_000 {
        hub.publish(&drop_with(flow, 1));
    }
    let history = hub.history();
    assert_eq!(history.held, 64, "the ring is the only buffer");
    assert_eq!(history.published, 100_000);
}

#[tokio::test]
async fn a_reader_that_misses_a_kernel_loss_is_told_the_drops_it_stood_for() {
    let hub = hub(1);
    let mut slow = hub.cursor(Start::Live, "slow");
    hub.publish(&Event::Loss(LossEvent {
        source: LossSource::KernelRingFull,
        lost: 0,
        total: 0,
        lost_drops: 500,
        total_drops: 500,
        time: SystemTime::UNIX_EPOCH,
    }));
    hub.publish(&drop_with(1, 2));
    match slow.try_next() {
        Some(Item::Lost(loss, _)) => assert_eq!((loss.lost, loss.lost_drops), (1, 500)),
        other => panic!("expected a subscriber loss, got {other:?}"),
    }
    assert_eq!(flow_id(&slow.try_next().expect("held")), 1);
}
