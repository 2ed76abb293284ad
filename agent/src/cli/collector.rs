//! `dropscope collector`: the cluster view; agents push, clients observe.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    collector::{self, CollectorConfig, join::JoinConfig},
    serve::{Listen, ServeConfig, TlsFiles},
};

/// Receive every agent's events and serve them as one stream.
///
/// Agents push with `dropscope agent --collector ADDR`; `dropscope observe
/// --server ADDR` then reads the whole cluster (the same API as one agent's:
/// filters, history, status summed over the nodes, each node's connection).
/// Events are merged in time order within --merge-window. An incident that
/// died beyond its node and a kernel drop of the same flow on another node
/// become one cluster incident (event kind JOINED, place OTHER_NODE).
///
/// Example: `dropscope collector --listen 0.0.0.0:4245 --tls-cert cert.pem --tls-key key.pem --tls-client-ca agents-ca.pem`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where agents push and clients observe: `HOST:PORT` or `unix:PATH`
    /// (plaintext only on a Unix socket or loopback; elsewhere give
    /// --tls-cert and --tls-key, and --tls-client-ca to require agent
    /// certificates).
    #[arg(
        long,
        default_value = "127.0.0.1:4245",
        env = "DROPSCOPE_COLLECTOR_LISTEN"
    )]
    pub listen: Listen,
    /// PEM certificate chain of the collector (reloaded when the file changes).
    #[arg(long, env = "DROPSCOPE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "DROPSCOPE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: agents and clients must present a certificate it
    /// signed (mutual TLS).
    #[arg(long, env = "DROPSCOPE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Events kept in memory for `observe --last`/`--since` (all nodes
    /// together).
    #[arg(long, default_value_t = 65_536, env = "DROPSCOPE_HISTORY")]
    pub history: usize,
    /// Events wait this long to be merged in time order across nodes;
    /// beyond it, ordering is best-effort.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, env = "DROPSCOPE_MERGE_WINDOW")]
    pub merge_window: Duration,
    /// The collector's name in its status.
    #[arg(long, default_value = "collector", env = "DROPSCOPE_COLLECTOR_NAME")]
    pub name: String,
    /// How far apart in time (each node's own clock) a kernel drop on one
    /// node and an incident decided on another may be to join: covers
    /// clocks that differ between nodes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "DROPSCOPE_JOIN_WINDOW")]
    pub join_window: Duration,
    /// How long an incident that died beyond its node, or a drop, waits
    /// for its partner from another node (after it last arrived). Longer
    /// than the longest connect timeout: a connect's incident arrives when
    /// it gives up (~127 s with Linux's default tcp_syn_retries), its
    /// drops from the first SYN on.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, env = "DROPSCOPE_JOIN_WAIT")]
    pub join_wait: Duration,
    /// Serve Prometheus metrics (`/metrics`, `/healthz`) on this address:
    /// joins, unjoined incidents, what waits to be joined and what the
    /// bound let go. Example: `0.0.0.0:9090`.
    #[arg(long, env = "DROPSCOPE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// OpenTelemetry export of every event the collector holds (the
    /// nodes' drops and incidents, the joined cluster incidents; on NATS,
    /// this replica's share) and of its counters.
    #[command(flatten)]
    pub otlp: super::otlp::OtlpArgs,
    /// Explain events agents sent raw (`dropscope agent --enrich
    /// collector`) with cluster metadata from this file (`kubectl get
    /// namespaces,pods,services,endpointslices,networkpolicies,nodes -A -o
    /// yaml`).
    #[arg(long, env = "DROPSCOPE_SNAPSHOT", conflicts_with = "kubernetes")]
    pub snapshot: Option<PathBuf>,
    /// Explain events agents sent raw (`dropscope agent --enrich
    /// collector`) with cluster metadata from the live API server, listed
    /// at start and then watched (one set of watches for the cluster).
    #[arg(long, env = "DROPSCOPE_KUBERNETES")]
    pub kubernetes: bool,
    /// How the API server is watched.
    #[command(flatten)]
    pub watch: super::watch::WatchArgs,
    /// NATS JetStream: read the cluster's stream (agents run with the same
    /// --nats and --nats-stream) instead of receiving pushes; any number
    /// of replicas share the work.
    #[command(flatten)]
    pub nats: super::nats::NatsArgs,
    /// The durable consumer the replicas share (NATS mode): replicas with
    /// the same name split the joins and the OpenTelemetry export.
    #[arg(
        long,
        default_value = "dropscope-collector",
        env = "DROPSCOPE_NATS_CONSUMER"
    )]
    pub nats_consumer: String,
}

/// Runs the collector until a signal.
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.history > 0, "--history must be at least 1");
    let config = CollectorConfig {
        serve: ServeConfig {
            listen: Some(args.listen.clone()),
            tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles {
                cert,
                key,
                ca: args.tls_client_ca,
            }),
        },
        listen: args.listen,
        history: args.history,
        merge_window: args.merge_window,
        name: args.name,
        join: JoinConfig {
            window: args.join_window,
            wait: args.join_wait,
            ..JoinConfig::default()
        },
        metrics_listen: args.metrics_listen,
        metadata: args.watch.metadata(args.snapshot, args.kubernetes),
        nats: args.nats.config()?,
        nats_consumer: args.nats_consumer,
        otlp: args.otlp.config(),
    };
    Ok(collector::run(config).await?)
}
