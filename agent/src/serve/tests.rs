//! The API over a real Unix socket with a real tonic client: Explain against
//! a seed snapshot, errors mapped to their gRPC codes naming the field,
//! health following readiness, status reporting the hub. The events here
//! are published into the hub by the test (the kernel side has its own
//! end-to-end tests); what is under test is the server.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use dropscope_proto::v1;
use tokio::sync::{RwLock, watch};
use tonic::Code;

use super::*;
use crate::{
    client::Connection,
    enrich::{snapshot, store::Store},
    fanout::FanoutConfig,
    model::{Event, EventKind, Protocol, TrackStatus},
    testkit::{mk_drop_event, mk_tuple},
};

const DEADLINE: Duration = Duration::from_secs(10);

struct Running {
    connection: Connection,
    hub: crate::fanout::Hub,
    ready: watch::Sender<Readiness>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
    _track: watch::Sender<TrackStatus>,
}

async fn start(snapshot_file: Option<&str>) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("api.sock");
    let hub = crate::fanout::Hub::new(FanoutConfig { history: 64 }, "node-a");
    let (ready, ready_rx) = watch::channel(Readiness::default());
    let (track, track_rx) = watch::channel(TrackStatus::default());
    let metadata = Arc::new(OnceLock::new());
    if let Some(file) = snapshot_file {
        let mut store = Store::new();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(file);
        snapshot::load(&path, &mut store).expect("seed snapshot");
        let _ = metadata.set(MetadataState {
            source: MetadataSource::Snapshot,
            store: Some(Arc::new(RwLock::new(store))),
        });
    }
    let state = AgentState {
        node: "node-a".into(),
        started: SystemTime::now(),
        kernel: Arc::new(OnceLock::new()),
        track: track_rx,
        ready: ready_rx.clone(),
        metadata,
        metadata_source: MetadataSource::Snapshot,
        reasons: Arc::new(OnceLock::from(vec!["NETFILTER_DROP".to_owned()])),
    };
    let listen = Listen::Unix(socket.clone());
    let server = Server::bind(
        &ServeConfig::default(),
        listen.clone(),
        Observer::new(hub.clone(), state),
        ready_rx,
    )
    .await
    .expect("binds");
    let (stop, mut stopping) = watch::channel(false);
    tokio::spawn(server.serve(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    }));
    Running {
        connection: Connection::new(&crate::client::Server::Unix(socket), None, None, None)
            .expect("connection"),
        hub,
        ready,
        stop,
        _dir: dir,
        _track: track,
    }
}

#[tokio::test]
async fn explain_answers_like_the_cli_and_maps_errors_to_codes_naming_the_field() {
    let running = start(Some("dns-dnat-5353.yaml")).await;
    let mut client = running.connection.observer().await.expect("connects");
    let answer = client
        .explain(v1::ExplainRequest {
            from: "shop/cart-6d9c8b7f5-2xkqp".into(),
            to: "openshift-dns/svc/dns-default".into(),
            port: 53,
            protocol: v1::Protocol::Udp as i32,
        })
        .await
        .expect("explained")
        .into_inner()
        .explanation
        .expect("an explanation");
    assert_eq!(answer.verdict, v1::Verdict::DenyEgress as i32);
    assert_eq!(answer.port, 5353, "evaluated after DNAT");
    assert!(
        answer
            .hints
            .iter()
            .any(|hint| hint.code == "service_port_not_target_port"),
        "{:?}",
        answer.hints
    );

    let bad_from = client
        .explain(v1::ExplainRequest {
            from: "a/b/c".into(),
            to: "10.0.0.1".into(),
            port: 53,
            protocol: 0,
        })
        .await
        .expect_err("invalid");
    assert_eq!(bad_from.code(), Code::InvalidArgument);
    assert!(
        bad_from.message().starts_with("from:"),
        "{}",
        bad_from.message()
    );
    let bad_port = client
        .explain(v1::ExplainRequest {
            from: "10.0.0.2".into(),
            to: "10.0.0.1".into(),
            port: 70_000,
            protocol: 0,
        })
        .await
        .expect_err("invalid");
    assert!(
        bad_port.message().starts_with("port:"),
        "{}",
        bad_port.message()
    );
    let missing = client
        .explain(v1::ExplainRequest {
            from: "shop/nope".into(),
            to: "10.0.0.1".into(),
            port: 53,
            protocol: 0,
        })
        .await
        .expect_err("no such pod");
    assert_eq!(missing.code(), Code::NotFound);
    let _ = running.stop.send(true);
}

#[tokio::test]
async fn without_metadata_explain_says_how_to_get_it() {
    let running = start(None).await;
    let mut client = running.connection.observer().await.expect("connects");
    let refused = client
        .explain(v1::ExplainRequest {
            from: "10.0.0.2".into(),
            to: "10.0.0.1".into(),
            port: 80,
            protocol: 0,
        })
        .await
        .expect_err("no metadata");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("--snapshot"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn health_follows_readiness() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let running = start(None).await;
    let channel_client = running.connection.observer().await.expect("connects");
    drop(channel_client);
    let check = |service: &'static str| {
        let connection = &running.connection;
        async move {
            let channel = connection.channel().await.expect("channel");
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health answers")
                .into_inner()
                .status
        }
    };
    assert_eq!(check("").await, ServingStatus::NotServing as i32);
    running.ready.send_replace(Readiness {
        attached: true,
        metadata_synced: true,
    });
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while check(dropscope_proto::OBSERVER_SERVICE).await != ServingStatus::Serving as i32 {
        assert!(tokio::time::Instant::now() < deadline, "never SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn observe_streams_history_then_live_and_status_counts_the_subscriber() {
    let running = start(None).await;
    let drop_event = |flow_id| {
        Event::Drop(mk_drop_event(
            flow_id,
            EventKind::New,
            mk_tuple([10, 0, 0, 1], 40000, [10, 0, 0, 2], 8080, Protocol::Tcp),
        ))
    };
    running.hub.publish(&drop_event(1));
    let mut client = running.connection.observer().await.expect("connects");
    let mut stream = client
        .observe(v1::ObserveRequest {
            number: 1,
            follow: true,
            ..Default::default()
        })
        .await
        .expect("observes")
        .into_inner();
    let flow_of = |event: v1::Event| match event.event {
        Some(v1::event::Event::Drop(drop)) => drop.flow_id,
        other => panic!("expected a drop, got {other:?}"),
    };
    let next = async |stream: &mut tonic::Streaming<v1::Event>| {
        tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("in time")
            .expect("no error")
            .expect("an event")
    };
    assert_eq!(flow_of(next(&mut stream).await), 1, "from the history");
    running.hub.publish(&drop_event(2));
    assert_eq!(flow_of(next(&mut stream).await), 2, "live");

    let status = client
        .get_status(v1::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.node, "node-a");
    assert_eq!(status.events_published, 2);
    assert_eq!(status.subscribers.len(), 1);
    assert!(
        status.subscribers[0].peer.starts_with("unix"),
        "{:?}",
        status.subscribers
    );
    assert!(!status.ready);

    let refused = client
        .observe(v1::ObserveRequest {
            allow: vec![v1::EventFilter {
                reason: vec!["NOT_A_REASON".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect_err("unknown reason");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("allow[0].reason[0]"),
        "{}",
        refused.message()
    );
}
