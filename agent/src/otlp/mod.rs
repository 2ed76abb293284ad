//! A sink: OpenTelemetry export over OTLP/gRPC (`--otlp URL` on the agent
//! and the collector). Receives a cursor on the hub (every event: drops,
//! incidents, losses, node states) and the process's counters; emits
//! `opentelemetry.proto.collector.logs.v1.LogsService/Export` with one log
//! record per event ([`logs`]) and, every `metrics_every`,
//! `…metrics.v1.MetricsService/Export` with the counters as cumulative
//! sums and the gauges as gauges ([`openmetrics`]).
//!
//! The export queue is bounded: at most [`BATCH`] records are in hand
//! (sent again, after a backoff, until the receiver takes them); behind
//! them the hub's ring (`--history` events) holds what is not read yet.
//! When the receiver is away long enough for the ring to overtake the
//! cursor, the events lost are counted (the hub's subscriber losses:
//! `GetStatus`, `dropscope_lost_events_total{source="subscriber"}` on the
//! agent, `dropscope_collector_otlp_lost_total` on the collector) and sent
//! as a `dropscope.loss` record once the receiver is back. Counters are
//! cumulative: a metrics export that fails loses nothing the next one does
//! not carry.

mod channel;
pub mod logs;
mod openmetrics;

pub use channel::OtlpTls;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
        metrics::v1::{ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient},
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};
use tonic::transport::Channel;

use crate::{
    fanout::{Cursor, Hub, Item, Start, loss_message},
    metrics::Metrics,
};

/// Records per export, at most (and in hand at most).
pub const BATCH: usize = 512;
/// The first wait after a failed export; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The receiver: `http://HOST:PORT` (OTLP/gRPC, plaintext) or
    /// `https://HOST:PORT` (TLS, with `tls`).
    pub endpoint: String,
    /// How often counters are exported.
    pub metrics_every: Duration,
    /// TLS to an `https://` receiver.
    pub tls: Option<OtlpTls>,
}

/// Why the exporter cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--otlp` is not a URL tonic can dial.
    #[error("--otlp {endpoint:?}: {source} (expected http://HOST:PORT or https://HOST:PORT)")]
    Endpoint {
        /// What was given.
        endpoint: String,
        /// Why it was refused.
        source: tonic::transport::Error,
    },
    /// Neither `http://` nor `https://`.
    #[error("--otlp {0:?}: use http://HOST:PORT (plaintext) or https://HOST:PORT (TLS)")]
    Scheme(String),
    /// `--otlp` has no host.
    #[error("--otlp {0:?}: not a URL with a host (https://HOST:PORT)")]
    Url(String),
    /// `https://` without the CA to check the receiver with.
    #[error(
        "--otlp {0:?}: TLS needs --otlp-tls-ca (the CA bundle that signed the receiver's certificate)"
    )]
    HttpsWithoutCa(String),
    /// TLS files for a plaintext receiver.
    #[error("--otlp {0:?}: --otlp-tls-* are given but the URL is plaintext: use https://")]
    TlsOverHttp(String),
    /// Not a name a certificate can carry.
    #[error("--otlp-tls-server-name {0:?} is not a valid TLS server name")]
    ServerName(String),
    /// A TLS file could not be used.
    #[error(transparent)]
    Tls(#[from] crate::serve::tls::TlsError),
}

/// The counters a process exports, as OpenMetrics text, and where the
/// exporter's losses are counted.
pub trait Counters: Send + Sync + 'static {
    /// Every counter and gauge, in the OpenMetrics text format.
    fn openmetrics(&self) -> Result<String, std::fmt::Error>;
    /// `records` events were lost before export.
    fn lost(&self, records: u64);
}

impl Counters for Metrics {
    fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        self.encode()
    }

    /// The hub's subscriber losses reach the agent's metrics already
    /// (`dropscope_lost_events_total{source="subscriber"}`).
    fn lost(&self, _records: u64) {}
}

/// The OTLP exporter of one hub.
pub struct OtlpExporter<C> {
    logs: LogsServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    config: OtlpConfig,
    cursor: Cursor,
    counters: Arc<C>,
    resource: Resource,
    started: SystemTime,
}

impl<C: Counters> OtlpExporter<C> {
    /// An exporter of `hub`'s events (from the oldest held) and of
    /// `counters`, describing itself as `service` (`dropscope-agent`,
    /// `dropscope-collector`); on an agent, `node` is its node.
    pub fn new(
        config: OtlpConfig,
        hub: &Hub,
        counters: Arc<C>,
        service: &str,
        node: Option<&str>,
    ) -> Result<Self, Error> {
        let channel = channel::connect(&config.endpoint, config.tls.as_ref(), EXPORT_TIMEOUT)?;
        let mut attributes = vec![
            text("service.name", service),
            text("service.version", env!("CARGO_PKG_VERSION")),
        ];
        if let Some(node) = node {
            attributes.push(text("k8s.node.name", node));
        }
        Ok(Self {
            logs: LogsServiceClient::new(channel.clone()),
            metrics: MetricsServiceClient::new(channel),
            config,
            cursor: hub.cursor(Start::Oldest, "otlp export"),
            counters,
            resource: Resource {
                attributes,
                ..Default::default()
            },
            started: SystemTime::now(),
        })
    }

    /// Exports until the hub closes, then sends what it holds once more
    /// (the caller bounds how long it waits for that).
    pub async fn run(mut self) {
        tracing::info!(endpoint = %self.config.endpoint, "exporting to OpenTelemetry");
        let mut tick = tokio::time::interval(self.config.metrics_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<LogRecord> = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        let mut open = true;
        while open || !batch.is_empty() {
            if batch.is_empty() {
                tokio::select! {
                    item = self.cursor.next() => match item {
                        Some(item) => {
                            batch.push(self.record(item));
                            while batch.len() < BATCH {
                                let Some(item) = self.cursor.try_next() else { break };
                                batch.push(self.record(item));
                            }
                        }
                        None => open = false,
                    },
                    _ = tick.tick() => self.export_metrics().await,
                }
                continue;
            }
            match self.export_logs(&batch).await {
                Ok(()) => {
                    batch.clear();
                    backoff = FIRST_BACKOFF;
                }
                Err(status) if open => {
                    // Once per outage, and again when retries are at their
                    // slowest; the rest at debug.
                    if backoff == FIRST_BACKOFF || backoff >= MAX_BACKOFF {
                        tracing::warn!(endpoint = %self.config.endpoint, %status, retry_in = ?backoff, "OTLP log export failed");
                    } else {
                        tracing::debug!(endpoint = %self.config.endpoint, %status, retry_in = ?backoff, "OTLP log export failed");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = tick.tick() => self.export_metrics().await,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(status) => {
                    tracing::warn!(endpoint = %self.config.endpoint, %status, records = batch.len(), "OTLP log export failed at exit: these records are lost");
                    self.counters.lost(batch.len() as u64);
                    batch.clear();
                }
            }
        }
        self.export_metrics().await;
    }

    /// One hub item as a log record; a loss is counted as it is read.
    fn record(&mut self, item: Item) -> LogRecord {
        let message = match item {
            Item::Event(entry) => entry.event,
            Item::Lost(loss, until) => {
                self.counters.lost(loss.lost);
                Arc::new(loss_message(&loss, until, self.cursor.node()))
            }
        };
        self.cursor.delivered();
        logs::record(&message)
    }

    async fn export_logs(&mut self, batch: &[LogRecord]) -> Result<(), tonic::Status> {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: batch.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let response = self.logs.export(request).await?.into_inner();
        if let Some(partial) = response.partial_success
            && partial.rejected_log_records > 0
        {
            tracing::warn!(rejected = partial.rejected_log_records, message = %partial.error_message, "the OTLP receiver rejected log records");
            self.counters
                .lost(u64::try_from(partial.rejected_log_records).unwrap_or(0));
        }
        Ok(())
    }

    async fn export_metrics(&mut self) {
        let text = match self.counters.openmetrics() {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, "encoding counters for OTLP failed");
                return;
            }
        };
        let metrics = openmetrics::metrics(&text, nanos(self.started), nanos(SystemTime::now()));
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        if let Err(status) = self.metrics.export(request).await {
            tracing::debug!(endpoint = %self.config.endpoint, %status, "OTLP metrics export failed; the next one carries the same cumulative counts");
        }
    }
}

/// The instrumentation scope every record and metric carries.
fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "dropscope".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}
