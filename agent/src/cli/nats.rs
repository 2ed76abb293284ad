//! `--nats` and its settings, the same on `agent` and `collector`.

use std::{path::PathBuf, time::Duration};

use crate::nats::{NatsConfig, StreamLimits};

/// NATS JetStream: where, which stream, and the stream's limits when
/// dropscope creates it.
#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    /// Publish (agent) or read (collector) every event through this NATS
    /// server's JetStream: `nats://HOST:4222`, `tls://HOST:4222`, several
    /// comma-separated for a NATS cluster.
    #[arg(long, env = "DROPSCOPE_NATS")]
    pub nats: Option<String>,
    /// The JetStream stream (and first subject token): one per cluster
    /// sharing a NATS.
    #[arg(long, default_value = "dropscope", env = "DROPSCOPE_NATS_STREAM")]
    pub nats_stream: String,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "DROPSCOPE_NATS_CREDS", requires = "nats")]
    pub nats_creds: Option<PathBuf>,
    /// PEM CA bundle that signed the NATS server's certificate (TLS is then
    /// required).
    #[arg(long, env = "DROPSCOPE_NATS_TLS_CA", requires = "nats")]
    pub nats_tls_ca: Option<PathBuf>,
    /// When dropscope creates the stream: how long it keeps messages.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, env = "DROPSCOPE_NATS_MAX_AGE")]
    pub nats_max_age: Duration,
    /// When dropscope creates the stream: the most it keeps, in MiB (the
    /// oldest messages go first).
    #[arg(long, default_value_t = 1024, env = "DROPSCOPE_NATS_MAX_MIB")]
    pub nats_max_mib: u64,
    /// When dropscope creates the stream: copies in a JetStream cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), env = "DROPSCOPE_NATS_REPLICAS")]
    pub nats_replicas: u8,
}

impl NatsArgs {
    /// The configuration, when `--nats` is given.
    pub fn config(self) -> anyhow::Result<Option<NatsConfig>> {
        let Some(url) = self.nats else {
            return Ok(None);
        };
        let config = NatsConfig {
            url,
            stream: self.nats_stream,
            credentials: self.nats_creds,
            tls_ca: self.nats_tls_ca,
            limits: StreamLimits {
                max_age: self.nats_max_age,
                max_bytes: self.nats_max_mib.saturating_mul(1 << 20),
                replicas: usize::from(self.nats_replicas),
                ..StreamLimits::default()
            },
        };
        config.validate()?;
        Ok(Some(config))
    }
}
