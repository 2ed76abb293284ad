//! `dropscope collector`: the cluster view; agents push, clients observe.

use std::{path::PathBuf, time::Duration};

use crate::{
    collector::{self, CollectorConfig},
    serve::{Listen, ServeConfig, TlsFiles},
};

/// Receive every agent's events and serve them as one stream.
///
/// Agents push with `dropscope agent --collector ADDR`; `dropscope observe
/// --server ADDR` then reads the whole cluster (the same API as one agent's:
/// filters, history, status summed over the nodes, each node's connection).
/// Events are merged in time order within --merge-window.
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
    };
    Ok(collector::run(config).await?)
}
