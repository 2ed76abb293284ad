//! The data path, wired: kernel → capture → track → fanout → sinks. This is
//! the only module that knows every step; it makes every channel and task
//! and owns shutdown.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{RwLock, mpsc, watch},
};
use tracing::Instrument as _;

use crate::{
    capture::Capture,
    config::{AgentConfig, MetadataConfig},
    decode::{Clock, Decoder, Symbols, symbols::KALLSYMS},
    enrich::{snapshot, store::Store, watch as kube_watch},
    explain::step::Explainer,
    fanout::Hub,
    kernel::Kernel,
    print,
    track::Tracker,
};

/// How long the first listing of a live cluster may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the agent until SIGINT/SIGTERM (or the configured duration), then
/// drains what is pending and detaches from the kernel.
pub async fn run_agent(config: AgentConfig) -> anyhow::Result<()> {
    let stats_guard = if config.bpf_stats {
        Some(
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .context("enabling BPF run-time statistics")?,
        )
    } else {
        None
    };
    let store = metadata(&config.metadata).await?;
    let (kernel, maps) = Kernel::load(&config.kernel)?;
    let cost_probe = maps.program.try_clone()?;
    let cost_at_attach = cost_probe.read()?;
    let decoder = Decoder::new(kernel.reasons.clone(), Symbols::new(KALLSYMS), Clock::now());
    let capture = Capture::new(maps, decoder, config.capture)?;

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
    let capture = tokio::spawn(
        capture
            .run(record_tx, shutdown_rx)
            .instrument(tracing::info_span!("capture")),
    );
    tracing::info!(hook = ?kernel.attached, reasons = %config.kernel.drop_reasons, "dropscope agent running");

    wait_for_stop(config.duration).await?;
    tracing::info!("stopping");
    let _ = shutdown_tx.send(true);
    capture.await.context("capture task")??;
    let stats = tracker.await.context("track task")?;
    explainer.await.context("explain task")?;
    printer.await.context("print task")?;
    drop(kernel);
    tracing::info!(
        seen = stats.seen,
        filtered = stats.filtered,
        new_flows = stats.new_flows,
        aggregated = stats.aggregated,
        unaggregated = stats.unaggregated,
        not_ip = stats.not_ip,
        lost_ring_full = stats.lost_ring_full,
        recursion_misses = stats.recursion_misses,
        "detached; kernel statistics"
    );
    if stats_guard.is_some() {
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

/// The metadata store the configuration asks for: loaded from a snapshot,
/// or listed from the API server and then kept current by a watch task.
async fn metadata(config: &MetadataConfig) -> anyhow::Result<Option<Arc<RwLock<Store>>>> {
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
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the API server did not list every kind within {}s",
                        SYNC_TIMEOUT.as_secs()
                    )
                })?
                .context("listing cluster metadata")?;
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

async fn wait_for_stop(duration: Option<Duration>) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
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
