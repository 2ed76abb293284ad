//! `dropscope collector`: the same line as the agent's, for many agents.
//! Agents push their streams ([`push`]); the collector joins incidents of
//! one node with kernel drops of the same flow on another ([`join`]),
//! merges everything in time order within a bounded window ([`merge`]),
//! keeps it in one hub (its history answers `observe --last N` for the
//! whole cluster), and serves the same `dropscope.v1.Observer` API, so
//! `dropscope observe` works against one node or the cluster. `GetStatus`
//! sums the nodes' latest reports and lists each node's connection
//! ([`nodes`]); `--metrics-listen` serves the join's counts ([`metrics`]).
//!
//! History lives in memory: a restarted collector starts empty; agents send
//! it what it had not acknowledged (and everything, when it was never
//! reachable), not what the previous collector stored. History that
//! survives a restart, and replicas, are what the NATS JetStream mode is
//! for (`--nats`, [`jetstream`]): agents publish to the stream instead of
//! pushing, and each replica reads the stream (no push service then).
//!
//! Stopping (SIGTERM, SIGINT): push streams end, the join passes on what
//! is queued (incidents still waiting for a partner are not counted as
//! unjoined), the merge window is flushed, the hub closes (ending every
//! reader's stream), the OpenTelemetry exporter sends what it holds, then
//! the server stops.

pub mod enrich;
pub mod jetstream;
pub mod join;
pub mod merge;
pub mod metrics;
pub mod nodes;
pub mod push;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use dropscope_proto::v1::collector_server::CollectorServer;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::{
    fanout::{FanoutConfig, Hub},
    model::Readiness,
    otlp::{OtlpConfig, OtlpExporter},
    serve::{self, Listen, Observer, ServeConfig, Server},
};

/// How long a stopping collector gives the OpenTelemetry exporter to send
/// the last events.
const OTLP_DRAIN: Duration = Duration::from_secs(5);

/// How the collector runs.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Where agents push and clients observe, and its TLS.
    pub serve: ServeConfig,
    /// The address (from `serve.listen`).
    pub listen: Listen,
    /// Events kept for `observe` history.
    pub history: usize,
    /// How long events wait to be merged in time order.
    pub merge_window: Duration,
    /// The collector's name in its status.
    pub name: String,
    /// How incidents and drops of different nodes are joined.
    pub join: join::JoinConfig,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to export to OpenTelemetry, if anywhere.
    pub otlp: Option<OtlpConfig>,
    /// Read the cluster's NATS JetStream stream instead of receiving
    /// pushes, when given.
    pub nats: Option<crate::nats::NatsConfig>,
    /// The durable consumer the replicas share (NATS mode).
    pub nats_consumer: String,
    /// Cluster metadata to explain raw events with (`--enrich collector`
    /// agents), if any.
    pub metadata: crate::enrich::MetadataConfig,
}

/// What stops the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API could not be served.
    #[error(transparent)]
    Serve(#[from] serve::Error),
    /// The OpenTelemetry exporter is misconfigured.
    #[error(transparent)]
    Otlp(#[from] crate::otlp::Error),
    /// The cluster metadata could not be loaded.
    #[error(transparent)]
    Metadata(#[from] crate::enrich::Error),
    /// The metrics endpoint could not listen.
    #[error(transparent)]
    Metrics(#[from] metrics::Error),
    /// A signal handler could not be installed.
    #[error("installing the signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: CollectorConfig) -> Result<(), Error> {
    let hub = Hub::new(
        FanoutConfig {
            history: config.history,
        },
        config.name.clone(),
    );
    let collector_metrics = Arc::new(metrics::CollectorMetrics::new());
    let nodes = Arc::new(nodes::Nodes::new(config.name.clone()).with_counters(
        Arc::clone(&collector_metrics),
        config.nats.as_ref().map(|nats| nats.stream.clone()),
    ));
    let ingest = Arc::new(enrich::Ingest::new(
        crate::enrich::open::open(&config.metadata).await?,
    ));
    let (merge_tx, merge_rx) = mpsc::channel(8192);
    // On NATS, the OpenTelemetry exporter takes this replica's share of
    // the events (the queue's), not everything its hub shows.
    let export_hub = (config.nats.is_some() && config.otlp.is_some()).then(|| {
        Hub::new(
            FanoutConfig {
                history: config.history,
            },
            config.name.clone(),
        )
    });
    let (stopping_tx, stopping) = watch::channel(false);
    let metrics_endpoint = match config.metrics_listen {
        Some(address) => Some(metrics::Endpoint::bind(address).await?),
        None => None,
    };
    let otlp = match config.otlp.clone() {
        Some(otlp) => {
            let exporter = OtlpExporter::new(
                otlp,
                export_hub.as_ref().unwrap_or(&hub),
                Arc::clone(&collector_metrics),
                "dropscope-collector",
                None,
            )?;
            Some(tokio::spawn(
                exporter.run().instrument(tracing::info_span!("otlp")),
            ))
        }
        None => None,
    };
    let connected = Arc::new(std::sync::OnceLock::new());
    let push = match config.nats.clone() {
        None => {
            let (join_tx, join_rx) = mpsc::channel(8192);
            tokio::spawn(
                join::Joiner::new(config.join, Arc::clone(&collector_metrics))
                    .run(join_rx, merge_tx, stopping.clone())
                    .instrument(tracing::info_span!("join")),
            );
            Some(
                CollectorServer::new(push::Push::new(
                    Arc::clone(&nodes),
                    join_tx,
                    ingest,
                    stopping.clone(),
                ))
                .max_decoding_message_size(64 * 1024 * 1024),
            )
        }
        Some(nats) => {
            let parts = jetstream::Parts {
                name: config.name.clone(),
                history: config.history,
                consumer: config.nats_consumer.clone(),
                join: config.join,
                nodes: Arc::clone(&nodes),
                metrics: Arc::clone(&collector_metrics),
                merge: merge_tx,
                export: export_hub,
                ingest,
                connected: Arc::clone(&connected),
            };
            tokio::spawn(
                jetstream::run(nats, parts, stopping.clone())
                    .instrument(tracing::info_span!("nats")),
            );
            None
        }
    };
    let merger = tokio::spawn(
        merge::Merger::new(config.merge_window)
            .run(merge_rx, hub.clone())
            .instrument(tracing::info_span!("merge")),
    );
    let metrics_task = metrics_endpoint.map(|endpoint| {
        tracing::info!(address = %endpoint.address(), "metrics listening (/metrics, /healthz)");
        let mut stopped = stopping.clone();
        tokio::spawn(
            endpoint
                .serve(Arc::clone(&collector_metrics), async move {
                    let _ = stopped.wait_for(|stopping| *stopping).await;
                })
                .instrument(tracing::info_span!("metrics")),
        )
    });
    let mut observer = Observer::for_collector(hub.clone(), nodes.clone());
    if let Some(nats) = &config.nats {
        observer = observer.with_archive(Arc::new(jetstream::archive::StreamArchive::new(
            nats.clone(),
            connected,
        )));
    }
    let (_ready, ready) = watch::channel(Readiness {
        attached: true,
        metadata_synced: true,
    });
    let services: &[&str] = if push.is_some() {
        &[dropscope_proto::COLLECTOR_SERVICE]
    } else {
        &[]
    };
    let server = Server::bind_with(
        &config.serve,
        config.listen.clone(),
        observer,
        ready,
        services,
        |router| match push {
            Some(push) => router.add_service(push),
            None => router,
        },
    )
    .await?;
    tracing::info!(listen = %server.listen(), window = ?config.merge_window, history = config.history, "dropscope collector running");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Signal)?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(Error::Signal)?;
    let mut stopped = stopping.clone();
    let serving = tokio::spawn(async move {
        server
            .serve(async move {
                let _ = stopped.wait_for(|stopping| *stopping).await;
            })
            .await
    });
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("stopping");
    let _ = stopping_tx.send(true);
    // The join passes on what is queued and closes the merge's input; the
    // merge flushes and closes the hub: readers' streams end, so the
    // server's graceful stop does not wait on them.
    let _ = merger.await;
    if let Some(mut otlp) = otlp
        && tokio::time::timeout(OTLP_DRAIN, &mut otlp).await.is_err()
    {
        otlp.abort();
        tracing::warn!("the OpenTelemetry receiver did not take the last events in time");
    }
    match serving.await {
        Ok(served) => served?,
        Err(error) => tracing::warn!(%error, "the API task failed"),
    }
    if let Some(task) = metrics_task {
        match task.await {
            Ok(served) => served?,
            Err(error) => tracing::warn!(%error, "the metrics task failed"),
        }
    }
    tracing::info!(nodes = nodes.states().len(), "collector stopped");
    Ok(())
}
