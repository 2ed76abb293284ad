//! The data path, wired: kernel → capture → track → explain → fanout →
//! sinks. This is the only module that knows every step; it makes every
//! channel and task and owns shutdown.
//!
//! Shutdown is ordered so that counts stay exact: the programs are detached
//! first, then capture takes what is left in the kernel and sends every
//! flow's final count, and the steps behind it drain in turn.

use std::{sync::Arc, time::Duration};

use tokio::{
    signal::unix::SignalKind,
    sync::{RwLock, mpsc, watch},
    task::JoinHandle,
};
use tracing::Instrument as _;

use crate::{
    capture::{self, Capture},
    config::{AgentConfig, MetadataConfig},
    decode::{Clock, Decoder, Symbols, symbols::KALLSYMS},
    enrich::{self, snapshot, store::Store, watch as kube_watch},
    explain::step::Explainer,
    fanout::Hub,
    kernel::{self, Kernel},
    model::KernelStats,
    print,
    track::Tracker,
};

/// How long the terminal output may take to write its last events at exit.
const PRINT_DRAIN: Duration = Duration::from_secs(5);

/// How long the first listing of a live cluster may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or attaching.
    #[error(transparent)]
    Kernel(#[from] kernel::Error),
    /// Reading the kernel's maps.
    #[error("capture: {0}")]
    Capture(#[from] capture::Error),
    /// Cluster metadata.
    #[error(transparent)]
    Enrich(#[from] enrich::Error),
    /// The API server did not answer the first listing in time.
    #[error(
        "the API server did not list every kind within {seconds}s: is it reachable, and may this identity list pods, services, endpointslices, networkpolicies, namespaces and nodes?"
    )]
    SyncTimeout {
        /// The limit.
        seconds: u64,
    },
    /// BPF run-time statistics could not be enabled.
    #[error("enabling BPF run-time statistics: {0}")]
    BpfStats(#[source] std::io::Error),
    /// A signal handler could not be installed.
    #[error("installing the {signal} handler: {source}")]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A step's task panicked or was cancelled.
    #[error("the {step} task failed: {source}")]
    Task {
        /// The step.
        step: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
}

/// Runs the agent until SIGINT/SIGTERM (or the configured duration, or a
/// step failing), then detaches and drains.
pub async fn run_agent(config: AgentConfig) -> Result<(), Error> {
    let stats_guard = if config.bpf_stats {
        Some(
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|error| Error::BpfStats(std::io::Error::other(error)))?,
        )
    } else {
        None
    };
    let store = metadata(&config.metadata).await?;
    let (kernel, maps) = Kernel::load(&config.kernel)?;
    // With --bpf-stats: the program's run-time counters at attach.
    let cost_probe = match stats_guard {
        Some(_) => {
            let probe = maps.program.try_clone()?;
            let at_attach = probe.read()?;
            Some((probe, at_attach))
        }
        None => None,
    };
    let decoder = Decoder::new(kernel.reasons.clone(), Symbols::new(KALLSYMS), Clock::now());
    let capture = Capture::new(maps, decoder, config.capture);

    let (record_tx, record_rx) = mpsc::channel(config.record_queue);
    let (event_tx, event_rx) = mpsc::channel(config.record_queue);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let hub = Hub::new(config.fanout);
    let printer = tokio::spawn(
        print::events::run(hub.subscribe(), config.output).instrument(tracing::info_span!("print")),
    );
    let explainer = tokio::spawn(
        Explainer::new(store)
            .run(event_rx, hub)
            .instrument(tracing::info_span!("explain")),
    );
    let tracker = tokio::spawn(
        Tracker::new()
            .run(record_rx, event_tx)
            .instrument(tracing::info_span!("track")),
    );
    let mut capture = tokio::spawn(
        capture
            .run(record_tx, shutdown_rx)
            .instrument(tracing::info_span!("capture")),
    );
    tracing::info!(hook = ?kernel.attached, reasons = %config.kernel.drop_reasons, "dropscope agent running");

    let early_end = tokio::select! {
        stop = wait_for_stop(config.duration) => { stop?; None }
        ended = &mut capture => Some(ended),
    };
    tracing::info!("stopping");
    // Detach first: from here on the kernel adds nothing, so the final
    // counts capture reads are exact.
    drop(kernel);
    let _ = shutdown_tx.send(true);
    let captured = match early_end {
        Some(ended) => ended,
        None => capture.await,
    };
    let stats = drain(tracker, explainer, printer).await?;
    captured.map_err(|source| Error::Task {
        step: "capture",
        source,
    })??;
    report(&stats);
    if let Some((cost_probe, cost_at_attach)) = cost_probe {
        let now = cost_probe.read()?;
        let runs = now.run_count.saturating_sub(cost_at_attach.run_count);
        let nanos = now.run_time_ns.saturating_sub(cost_at_attach.run_time_ns);
        tracing::info!(
            run_count = runs,
            run_time_ns = nanos,
            avg_ns = nanos.checked_div(runs).unwrap_or(0),
            "kfree_skb hook cost (kernel BPF run-time statistics)"
        );
    }
    Ok(())
}

/// Waits for the steps behind capture to finish, in order; returns the last
/// kernel statistics.
async fn drain(
    tracker: JoinHandle<KernelStats>,
    explainer: JoinHandle<()>,
    printer: JoinHandle<()>,
) -> Result<KernelStats, Error> {
    let stats = tracker.await.map_err(|source| Error::Task {
        step: "track",
        source,
    })?;
    explainer.await.map_err(|source| Error::Task {
        step: "explain",
        source,
    })?;
    // A terminal that stopped reading must not keep the agent from exiting.
    match tokio::time::timeout(PRINT_DRAIN, printer).await {
        Ok(printed) => printed.map_err(|source| Error::Task {
            step: "print",
            source,
        })?,
        Err(_) => tracing::warn!("stdout is not being read; exiting without the last events"),
    }
    Ok(stats)
}

fn report(stats: &KernelStats) {
    tracing::info!(
        seen = stats.seen,
        filtered = stats.filtered,
        new_flows = stats.new_flows,
        aggregated = stats.aggregated,
        unaggregated = stats.unaggregated,
        not_ip = stats.not_ip,
        lost_ring_full = stats.lost_ring_full,
        read_errors = stats.read_errors,
        recursion_misses = stats.recursion_misses,
        "detached; kernel statistics"
    );
}

/// The metadata store the configuration asks for: loaded from a snapshot,
/// or listed from the API server and then kept current by a watch task.
async fn metadata(config: &MetadataConfig) -> Result<Option<Arc<RwLock<Store>>>, Error> {
    let mut store = Store::new();
    match config {
        MetadataConfig::Standalone => Ok(None),
        MetadataConfig::Snapshot(path) => {
            let loaded = snapshot::load(path, &mut store)?;
            tracing::info!(
                path = %path.display(),
                applied = loaded.applied,
                skipped = loaded.skipped.len(),
                "cluster metadata loaded from snapshot"
            );
            Ok(Some(Arc::new(RwLock::new(store))))
        }
        MetadataConfig::Kubernetes => {
            let client = kube_watch::connect().await?;
            tokio::time::timeout(SYNC_TIMEOUT, kube_watch::sync_once(&client, &mut store))
                .await
                .map_err(|_| Error::SyncTimeout {
                    seconds: SYNC_TIMEOUT.as_secs(),
                })??;
            tracing::info!(counts = ?store.counts(), "cluster metadata synced");
            let shared = Arc::new(RwLock::new(store));
            let watched = Arc::clone(&shared);
            tokio::spawn(
                async move {
                    if let Err(error) = kube_watch::run(client, watched).await {
                        tracing::error!(%error, "the cluster watch stopped; metadata goes stale");
                    }
                }
                .instrument(tracing::info_span!("enrich")),
            );
            Ok(Some(shared))
        }
    }
}

async fn wait_for_stop(duration: Option<Duration>) -> Result<(), Error> {
    let handler = |kind, signal| {
        tokio::signal::unix::signal(kind).map_err(|source| Error::Signal { signal, source })
    };
    let mut terminate = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = handler(SignalKind::interrupt(), "SIGINT")?;
    let limit = async {
        match duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        () = limit => {}
    }
    Ok(())
}
