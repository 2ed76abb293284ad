//! `dropscope collector`: the same line as the agent's, for many agents.
//! Agents push their streams ([`push`]); the collector merges them in time
//! order within a bounded window ([`merge`]), keeps them in one hub (its
//! history answers `observe --last N` for the whole cluster), and serves
//! the same `dropscope.v1.Observer` API, so `dropscope observe` works
//! against one node or the cluster. `GetStatus` sums the nodes' latest
//! reports and lists each node's connection ([`nodes`]).
//!
//! History lives in memory: a restarted collector starts empty; agents send
//! it what it had not acknowledged (and everything, when it was never
//! reachable), not what the previous collector stored. History that
//! survives a restart is what the NATS JetStream mode is for (not built
//! yet).
//!
//! Stopping (SIGTERM, SIGINT): push streams end, the merge window is
//! flushed, the hub closes (ending every reader's stream), then the server
//! stops.

pub mod merge;
pub mod nodes;
pub mod push;

use std::{sync::Arc, time::Duration};

use dropscope_proto::v1::collector_server::CollectorServer;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::{
    fanout::{FanoutConfig, Hub},
    model::Readiness,
    serve::{self, Listen, Observer, ServeConfig, Server},
};

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
}

/// What stops the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API could not be served.
    #[error(transparent)]
    Serve(#[from] serve::Error),
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
    let nodes = Arc::new(nodes::Nodes::new(config.name.clone()));
    let (merge_tx, merge_rx) = mpsc::channel(8192);
    let (stopping_tx, stopping) = watch::channel(false);
    let merger = tokio::spawn(
        merge::Merger::new(config.merge_window)
            .run(merge_rx, hub.clone(), stopping.clone())
            .instrument(tracing::info_span!("merge")),
    );
    let observer = Observer::for_collector(hub.clone(), nodes.clone());
    let (_ready, ready) = watch::channel(Readiness {
        attached: true,
        metadata_synced: true,
    });
    let push = CollectorServer::new(push::Push::new(
        Arc::clone(&nodes),
        merge_tx,
        stopping.clone(),
    ))
    .max_decoding_message_size(64 * 1024 * 1024);
    let server = Server::bind_with(
        &config.serve,
        config.listen.clone(),
        observer,
        ready,
        &[dropscope_proto::COLLECTOR_SERVICE],
        |router| router.add_service(push),
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
    // The merge flushes and closes the hub: readers' streams end, so the
    // server's graceful stop does not wait on them.
    let _ = merger.await;
    match serving.await {
        Ok(served) => served?,
        Err(error) => tracing::warn!(%error, "the API task failed"),
    }
    tracing::info!(nodes = nodes.states().len(), "collector stopped");
    Ok(())
}
