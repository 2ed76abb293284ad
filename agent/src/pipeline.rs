//! The data path, wired: kernel → capture → track → explain → publish
//! (metrics, then the hub) → sinks (terminal, gRPC API, metrics endpoint).
//! This is the only module that knows every step; it makes every channel
//! and task and owns shutdown.
//!
//! The API and metrics endpoints start first, answering NOT_SERVING and
//! 503 until the metadata is loaded and the programs attached.
//!
//! Shutdown is ordered so that counts stay exact: the programs are detached
//! first, then capture takes what is left in the kernel and sends every
//! flow's final count, and the steps behind it drain in turn.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use tokio::{
    signal::unix::SignalKind,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::Instrument as _;

use crate::{
    capture::{self, Capture, sockets::SocketCapture},
    config::AgentConfig,
    decode::{Clock, Decoder, Symbols, socket::SocketDecoder, symbols::KALLSYMS},
    enrich::{
        self, MetadataConfig,
        cgroup::{self as cgroups, CgroupPaths},
    },
    explain::step::Explainer,
    export::Exporter,
    fanout::{Hub, Start},
    kernel::{self, Kernel, features},
    metrics::{self, Metrics, MetricsConfig},
    model::{Event, KernelStats, Readiness, TrackStatus},
    print,
    serve::{self, AgentState, KernelInfo, MetadataSource, MetadataState, Observer, Server},
    track::Tracker,
};

/// How long the terminal output may take to write its last events at exit.
const PRINT_DRAIN: Duration = Duration::from_secs(5);

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
    /// The cgroup v2 hierarchy.
    #[error(transparent)]
    Cgroup(#[from] cgroups::Error),
    /// The OpenTelemetry receiver is misconfigured.
    #[error(transparent)]
    Otlp(#[from] crate::otlp::Error),
    /// The collector to push to is misconfigured (a TLS file).
    #[error("--collector: {0}")]
    Export(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// The gRPC API.
    #[error(transparent)]
    Serve(#[from] serve::Error),
    /// The metrics endpoint could not listen.
    #[error("--metrics-listen {address}: {source}")]
    MetricsListen {
        /// The address.
        address: SocketAddr,
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
    // Say what is missing before binding anything (or syncing metadata).
    let sockets = config.kernel.sockets.as_ref();
    features::require_hook_privilege(
        sockets.is_some_and(|sockets| sockets.tc),
        sockets.is_some_and(|sockets| sockets.connects && sockets.cgroup_hooks),
    )?;
    let hub = Hub::new(config.fanout, config.node.clone());
    let metrics = Arc::new(Metrics::new(MetricsConfig::default()));
    let (ready_tx, ready_rx) = watch::channel(Readiness::default());
    let (track_tx, track_rx) = watch::channel(TrackStatus::default());
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let state = AgentState {
        node: config.node.clone(),
        started: SystemTime::now(),
        kernel: Arc::new(OnceLock::new()),
        track: track_rx.clone(),
        ready: ready_rx.clone(),
        metadata: Arc::new(OnceLock::new()),
        metadata_source: match config.metadata {
            MetadataConfig::Standalone => MetadataSource::None,
            MetadataConfig::Snapshot(_) => MetadataSource::Snapshot,
            MetadataConfig::Kubernetes(_) => MetadataSource::Kubernetes,
        },
        reasons: Arc::new(OnceLock::new()),
    };
    let endpoints =
        start_endpoints(&config, &hub, &state, &metrics, &ready_rx, &stopping_rx).await?;
    let exporter = match &config.export {
        Some(export) => {
            let connection = export
                .connection()
                .map_err(|error| Error::Export(error.into()))?;
            tracing::info!(collector = %export.collector, "pushing events to the collector");
            Some(tokio::spawn(
                Exporter::new(connection, hub.clone(), state.clone())
                    .run()
                    .instrument(tracing::info_span!("export")),
            ))
        }
        None => None,
    };
    let nats = config.nats.clone().map(|nats| {
        tracing::info!(nats = %nats.url, stream = %nats.stream, "publishing events to NATS JetStream");
        tokio::spawn(
            crate::nats::publish::Publisher::new(nats, hub.clone(), state.clone())
                .run()
                .instrument(tracing::info_span!("nats")),
        )
    });
    let otlp = match config.otlp.clone() {
        Some(otlp) => {
            let exporter = crate::otlp::OtlpExporter::new(
                otlp,
                &hub,
                Arc::clone(&metrics),
                "dropscope-agent",
                Some(&config.node),
            )?;
            Some(tokio::spawn(
                exporter.run().instrument(tracing::info_span!("otlp")),
            ))
        }
        None => None,
    };

    let stats_guard = if config.bpf_stats {
        Some(
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|error| Error::BpfStats(std::io::Error::other(error)))?,
        )
    } else {
        None
    };
    let store = enrich::open::open(&config.metadata).await?;
    let _ = state.metadata.set(MetadataState {
        source: state.metadata_source,
        store: store.clone(),
    });
    ready_tx.send_modify(|ready| ready.metadata_synced = true);
    // The cgroup v2 root: where the connect hooks attach and cgroup ids
    // are resolved to pods.
    let mut kernel_config = config.kernel.clone();
    let cgroup_root = match kernel_config.sockets.as_mut() {
        Some(sockets) if sockets.connects => {
            let root = match &config.cgroup_root {
                Some(root) => root.clone(),
                None => cgroups::cgroup2_root(features::mount_cgroup2)?,
            };
            sockets.cgroup_root = Some(root.clone());
            Some(root)
        }
        _ => None,
    };
    let (kernel, mut maps) = Kernel::load(&kernel_config)?;
    let _ = state.reasons.set(
        kernel
            .reasons
            .iter()
            .map(|(_, name)| name.to_owned())
            .collect(),
    );
    let _ = state.kernel.set(KernelInfo {
        hook: kernel.attached.section().to_owned(),
        release: features::release(),
        features: kernel_features(&kernel, config.bpf_stats),
        programs: std::iter::once("kfree_skb")
            .chain(kernel.socket_programs.iter().copied())
            .map(str::to_owned)
            .collect(),
    });
    // With --bpf-stats: the program's run-time counters at attach.
    let cost_probe = match stats_guard {
        Some(_) => {
            let probe = maps.program.try_clone()?;
            let at_attach = probe.read()?;
            Some((probe, at_attach))
        }
        None => None,
    };
    let clock = Clock::now();
    let socket_capture = maps.sockets.take().map(|socket_maps| {
        SocketCapture::new(
            socket_maps,
            SocketDecoder::new(clock),
            config.capture.sample_interval,
        )
    });
    let decoder = Decoder::new(kernel.reasons.clone(), Symbols::new(KALLSYMS), clock);
    let capture = Capture::new(maps, decoder, config.capture);
    let kernel = Arc::new(std::sync::Mutex::new(kernel));

    let (record_tx, record_rx) = mpsc::channel(config.record_queue);
    let (event_tx, event_rx) = mpsc::channel(config.record_queue);
    let (explained_tx, explained_rx) = mpsc::channel(config.record_queue);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut printer = config.output.map(|format| {
        tokio::spawn(
            print::events::run(hub.cursor(Start::Live, "stdout"), format)
                .instrument(tracing::info_span!("print")),
        )
    });
    let publisher = tokio::spawn(
        publish(explained_rx, hub.clone(), Arc::clone(&metrics), track_rx)
            .instrument(tracing::info_span!("fanout")),
    );
    let refresher = tokio::spawn(
        refresh_metrics(
            hub.clone(),
            Arc::clone(&metrics),
            state.clone(),
            cost_probe
                .as_ref()
                .map(|(probe, _)| probe.try_clone())
                .transpose()?,
        )
        .instrument(tracing::info_span!("metrics")),
    );
    let explainer = tokio::spawn(
        Explainer::new(store)
            .with_cgroups(cgroup_root.map(CgroupPaths::new))
            .run(event_rx, explained_tx)
            .instrument(tracing::info_span!("explain")),
    );
    let tracker = tokio::spawn(
        Tracker::with_incidents(config.incidents)
            .run(record_rx, event_tx, track_tx)
            .instrument(tracing::info_span!("track")),
    );
    let socket_capture = socket_capture.map(|socket_capture| {
        tokio::spawn(
            socket_capture
                .run(record_tx.clone(), shutdown_rx.clone())
                .instrument(tracing::info_span!("capture", ring = "sockets")),
        )
    });
    let follower = tokio::spawn(
        follow_interfaces(Arc::clone(&kernel)).instrument(tracing::info_span!("kernel")),
    );
    let mut capture = tokio::spawn(
        capture
            .run(record_tx, shutdown_rx)
            .instrument(tracing::info_span!("capture")),
    );
    ready_tx.send_modify(|ready| ready.attached = true);
    {
        let kernel = lock(&kernel);
        tracing::info!(
            hook = ?kernel.attached,
            reasons = %config.kernel.drop_reasons,
            socket_hooks = ?kernel.socket_programs,
            interfaces = ?kernel.watched_interfaces(),
            node = %config.node,
            "dropscope agent running"
        );
    }

    let mut signals = Signals::install()?;
    let early_end = tokio::select! {
        () = signals.first(config.duration) => None,
        ended = &mut capture => Some(ended),
        () = stdout_closed(&mut printer) => {
            tracing::info!("stdout closed: stopping the agent");
            None
        }
    };
    tracing::info!(deadline = ?config.shutdown_timeout, "stopping");
    // One deadline for the whole stop, shorter than the pod's grace period;
    // a second signal ends it at once. The kernel detaches every program
    // when the process exits, whichever way it does.
    tokio::spawn(async move {
        tokio::select! {
            () = signals.second() => {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            () = tokio::time::sleep(config.shutdown_timeout) => {
                tracing::error!(deadline = ?config.shutdown_timeout, "the agent did not stop in time; exiting");
                std::process::exit(1);
            }
        }
    });
    ready_tx.send_modify(|ready| ready.attached = false);
    // Detach first: from here on the kernel adds nothing, so the final
    // counts capture reads are exact.
    follower.abort();
    let _ = follower.await;
    drop(kernel);
    let _ = shutdown_tx.send(true);
    let captured = match early_end {
        Some(ended) => ended,
        None => capture.await,
    };
    if let Some(socket_capture) = socket_capture {
        match socket_capture.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the socket capture stopped with an error"),
            Err(error) => tracing::warn!(%error, "the socket capture task failed"),
        }
    }
    let stats = drain(tracker, explainer, publisher).await?;
    refresher.abort();
    hub.close();
    if let Some(printer) = printer {
        finish_printing(printer, &hub).await?;
    }
    finish_exports([exporter, nats, otlp].into_iter().flatten().collect()).await;
    // Streams have their last events; now the endpoints may close.
    let _ = stopping_tx.send(true);
    endpoints.finish().await;
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

/// How often the node's interfaces are checked for new ones to watch.
const INTERFACE_REFRESH: Duration = Duration::from_secs(2);

/// Attaches the tc programs to interfaces as they appear (pods come and go).
async fn follow_interfaces(kernel: Arc<std::sync::Mutex<Kernel>>) {
    let mut tick = tokio::time::interval(INTERFACE_REFRESH);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(error) = lock(&kernel).refresh_interfaces() {
            tracing::warn!(%error, "listing interfaces failed; new interfaces are not watched");
        }
    }
}

fn lock(kernel: &std::sync::Mutex<Kernel>) -> std::sync::MutexGuard<'_, Kernel> {
    kernel
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kernel_features(kernel: &Kernel, bpf_stats: bool) -> Vec<String> {
    let mut features = vec!["btf".to_owned(), "ringbuf".to_owned()];
    if kernel.attached == kernel::Hook::Btf {
        features.push("tp_btf".to_owned());
    }
    if std::path::Path::new("/sys/kernel/btf/nf_conntrack").exists() {
        features.push("nf_conntrack_btf".to_owned());
    }
    if bpf_stats {
        features.push("bpf_stats".to_owned());
    }
    features
}

/// The last step of the line: every event updates the metrics (exactly,
/// never lossy) and is published to the hub once.
async fn publish(
    mut input: mpsc::Receiver<Event>,
    hub: Hub,
    metrics: Arc<Metrics>,
    track: watch::Receiver<TrackStatus>,
) {
    let mut last_status = TrackStatus::default();
    while let Some(event) = input.recv().await {
        metrics.record(&event);
        hub.publish(&event);
        let status = *track.borrow();
        if status != last_status {
            set_track_metrics(&metrics, &status);
            last_status = status;
        }
    }
    set_track_metrics(&metrics, &track.borrow());
}

fn set_track_metrics(metrics: &Metrics, status: &TrackStatus) {
    metrics.set_kernel(&status.kernel, status.active_flows);
    metrics.set_sockets(&status.sockets, status.aborted_connects, status.pending_dns);
}

/// How often gauges read from elsewhere (subscribers, metadata, program
/// run time) are brought up to date.
const METRICS_REFRESH: Duration = Duration::from_secs(1);

/// Keeps the metrics that are read rather than pushed current: open
/// subscribers and what they missed, metadata object counts (a live watch
/// changes them), and the program's run time with --bpf-stats.
async fn refresh_metrics(
    hub: Hub,
    metrics: Arc<Metrics>,
    state: AgentState,
    program: Option<kernel::programs::ProgramStatsReader>,
) {
    let mut tick = tokio::time::interval(METRICS_REFRESH);
    let mut reported = (0, 0);
    loop {
        tick.tick().await;
        metrics.set_subscribers(hub.subscribers().len() as u64);
        let lost = hub.subscriber_losses();
        if lost != reported {
            metrics.subscriber_lost(lost.0 - reported.0, lost.1 - reported.1);
            reported = lost;
        }
        if let Some(store) = state
            .metadata
            .get()
            .and_then(|metadata| metadata.store.as_ref())
        {
            let counts = store.read().await.counts();
            let synced = state.ready.borrow().metadata_synced;
            metrics.set_metadata(
                &counts.by_kind().map(|(kind, count)| (kind, count as u64)),
                synced,
            );
        }
        if let Some(stats) = program.as_ref().and_then(|program| program.read().ok()) {
            metrics.set_program_runtime("kfree_skb", stats.run_count, stats.run_time_ns);
        }
    }
}

/// The API and metrics servers, running until told the agent is stopping.
struct Endpoints {
    tasks: Vec<(&'static str, JoinHandle<Result<(), Error>>)>,
}

impl Endpoints {
    async fn finish(self) {
        for (name, task) in self.tasks {
            match tokio::time::timeout(PRINT_DRAIN, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => {
                    tracing::warn!(endpoint = name, %error, "stopped with an error")
                }
                Ok(Err(error)) => tracing::warn!(endpoint = name, %error, "task failed"),
                Err(_) => tracing::warn!(endpoint = name, "did not stop in time"),
            }
        }
    }
}

async fn start_endpoints(
    config: &AgentConfig,
    hub: &Hub,
    state: &AgentState,
    metrics: &Arc<Metrics>,
    ready: &watch::Receiver<Readiness>,
    stopping: &watch::Receiver<bool>,
) -> Result<Endpoints, Error> {
    let until_stopping = |mut stopping: watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let mut tasks = Vec::new();
    if let Some(listen) = &config.serve.listen {
        let server = Server::bind(
            &config.serve,
            listen.clone(),
            Observer::new(hub.clone(), state.clone()),
            ready.clone(),
        )
        .await?;
        let shutdown = until_stopping(stopping.clone());
        tasks.push((
            "api",
            tokio::spawn(
                async move { Ok(server.serve(shutdown).await?) }
                    .instrument(tracing::info_span!("serve")),
            ),
        ));
    }
    if let Some(address) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| Error::MetricsListen { address, source })?;
        let bound = listener.local_addr().unwrap_or(address);
        tracing::info!(address = %bound, "metrics listening (/metrics, /healthz, /readyz)");
        let served = metrics::serve(
            listener,
            Arc::clone(metrics),
            ready.clone(),
            until_stopping(stopping.clone()),
        );
        tasks.push((
            "metrics",
            tokio::spawn(
                async move {
                    served.await.map_err(|error| Error::MetricsListen {
                        address: bound,
                        source: std::io::Error::other(error),
                    })
                }
                .instrument(tracing::info_span!("metrics")),
            ),
        ));
    }
    Ok(Endpoints { tasks })
}

/// How long the agent waits at exit for the collector (or the
/// OpenTelemetry receiver) to take its last events.
const EXPORT_DRAIN: Duration = Duration::from_secs(5);

/// Gives the exporters together [`EXPORT_DRAIN`] to have the hub's last
/// events taken, then stops the ones still sending.
async fn finish_exports(exporters: Vec<JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + EXPORT_DRAIN;
    for mut exporter in exporters {
        if tokio::time::timeout_at(deadline, &mut exporter)
            .await
            .is_err()
        {
            exporter.abort();
            tracing::warn!(
                "a receiver did not take the last events in time; the ones it lacks are lost with this run"
            );
        }
    }
}

/// Completes when the terminal output ended because stdout closed (and
/// takes the printer, which is done); pending otherwise.
async fn stdout_closed(printer: &mut Option<JoinHandle<print::events::Ended>>) {
    let Some(handle) = printer.as_mut() else {
        return std::future::pending().await;
    };
    let ended = handle.await;
    *printer = None;
    match ended {
        Ok(print::events::Ended::StdoutClosed) => {}
        // The hub closes only at shutdown; a failed printer is reported
        // there. Neither stops the agent.
        _ => std::future::pending().await,
    }
}

async fn finish_printing(
    printer: JoinHandle<print::events::Ended>,
    hub: &Hub,
) -> Result<(), Error> {
    // A terminal that stopped reading must not keep the agent from exiting;
    // what it did not get is said, counted.
    match tokio::time::timeout(PRINT_DRAIN, printer).await {
        Ok(printed) => printed.map(|_| ()).map_err(|source| Error::Task {
            step: "print",
            source,
        }),
        Err(_) => {
            let published = hub.history().published;
            let unwritten = hub
                .subscribers()
                .iter()
                .find(|subscriber| subscriber.peer == "stdout")
                .map(|stdout| published.saturating_sub(stdout.sent_events + stdout.lost_events));
            tracing::warn!(
                unwritten_events = unwritten.unwrap_or(0),
                "stdout is not being read; exiting without its last events (the API had them)"
            );
            Ok(())
        }
    }
}

/// Waits for the steps behind capture to finish, in order; returns the last
/// kernel statistics.
async fn drain(
    tracker: JoinHandle<KernelStats>,
    explainer: JoinHandle<()>,
    publisher: JoinHandle<()>,
) -> Result<KernelStats, Error> {
    let stats = tracker.await.map_err(|source| Error::Task {
        step: "track",
        source,
    })?;
    explainer.await.map_err(|source| Error::Task {
        step: "explain",
        source,
    })?;
    publisher.await.map_err(|source| Error::Task {
        step: "fanout",
        source,
    })?;
    Ok(stats)
}

fn report(stats: &KernelStats) {
    tracing::info!(
        seen = stats.seen,
        filtered = stats.filtered,
        new_flows = stats.new_flows,
        aggregated = stats.aggregated,
        overflow = stats.overflow,
        ring_full = stats.ring_full,
        not_ip = stats.not_ip,
        lost_ring_full = stats.lost_ring_full,
        read_errors = stats.read_errors,
        recursion_misses = stats.recursion_misses,
        "detached; kernel statistics"
    );
}

/// SIGTERM and SIGINT, installed once: the first asks for a stop, the
/// second for an exit now.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, Error> {
        let handler = |kind, signal| {
            tokio::signal::unix::signal(kind).map_err(|source| Error::Signal { signal, source })
        };
        Ok(Self {
            terminate: handler(SignalKind::terminate(), "SIGTERM")?,
            interrupt: handler(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// The first signal, or the end of `duration`.
    async fn first(&mut self, duration: Option<Duration>) {
        let limit = async {
            match duration {
                Some(duration) => tokio::time::sleep(duration).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
            () = limit => {}
        }
    }

    /// The next signal.
    async fn second(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
