//! `--otlp` and its settings, the same on `agent` and `collector`.

use std::{path::PathBuf, time::Duration};

use crate::otlp::{OtlpConfig, OtlpTls};

/// OpenTelemetry export: where, how often, and TLS.
#[derive(Debug, clap::Args)]
pub struct OtlpArgs {
    /// Export every event (drops, incidents, losses) as OpenTelemetry log
    /// records, and the counters as metrics, to this OTLP/gRPC receiver:
    /// `http://HOST:4317` (plaintext) or `https://HOST:4317` (TLS, with
    /// --otlp-tls-ca). Example: `http://otel-agent.observability:4317`.
    #[arg(long, env = "DROPSCOPE_OTLP")]
    pub otlp: Option<String>,
    /// How often counters are exported to --otlp.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "DROPSCOPE_OTLP_METRICS_INTERVAL")]
    pub otlp_metrics_interval: Duration,
    /// PEM CA bundle that signed the OTLP receiver's certificate (for an
    /// `https://` --otlp).
    #[arg(long, env = "DROPSCOPE_OTLP_TLS_CA", requires = "otlp")]
    pub otlp_tls_ca: Option<PathBuf>,
    /// PEM client certificate for a receiver that requires one.
    #[arg(long, env = "DROPSCOPE_OTLP_TLS_CERT", requires_all = ["otlp_tls_key", "otlp_tls_ca"])]
    pub otlp_tls_cert: Option<PathBuf>,
    /// PEM private key of --otlp-tls-cert.
    #[arg(long, env = "DROPSCOPE_OTLP_TLS_KEY", requires = "otlp_tls_cert")]
    pub otlp_tls_key: Option<PathBuf>,
    /// The name the receiver's certificate carries, when not the URL's
    /// host.
    #[arg(long, env = "DROPSCOPE_OTLP_TLS_SERVER_NAME", requires = "otlp_tls_ca")]
    pub otlp_tls_server_name: Option<String>,
}

impl OtlpArgs {
    /// The configuration, when `--otlp` is given.
    pub fn config(self) -> Option<OtlpConfig> {
        let endpoint = self.otlp?;
        Some(OtlpConfig {
            endpoint,
            metrics_every: self.otlp_metrics_interval,
            tls: self.otlp_tls_ca.map(|ca| OtlpTls {
                ca,
                identity: self.otlp_tls_cert.zip(self.otlp_tls_key),
                server_name: self.otlp_tls_server_name,
            }),
        })
    }
}
