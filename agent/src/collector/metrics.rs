//! The collector's Prometheus metrics and their HTTP endpoint
//! (`--metrics-listen`: `GET /metrics` in OpenMetrics text, `/healthz`).
//! Receives counts from the join ([`super::join`]) and the OpenTelemetry
//! exporter's losses; every label has a fixed, small set of values:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `dropscope_collector_joins_total` | counter | `match`: `original`, `translated`, `source` |
//! | `dropscope_collector_unjoined_incidents_total` | counter | |
//! | `dropscope_collector_join_lost_total` | counter | `kind`: `incident`, `drop` |
//! | `dropscope_collector_join_pending` | gauge | `kind`: `incident`, `drop` |
//! | `dropscope_collector_otlp_lost_total` | counter | |
//! | `dropscope_collector_nats_messages_total` | counter | `subject`: `events`, `status`, `hello`, `joined` |
//! | `dropscope_collector_nats_refused_total` | counter | `reason`: `undecodable`, `node_mismatch`, `foreign_subject` |
//! | `dropscope_collector_nats_publish_failed_total` | counter | |

use std::{future::Future, net::SocketAddr, sync::Arc, sync::atomic::AtomicU64};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use dropscope_proto::v1;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;

use crate::metrics::catalog::{Catalog, MetricInfo};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the joins counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MatchLabel {
    r#match: &'static str,
}

/// Labels of what waits for a partner.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Labels of the NATS messages counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubjectLabel {
    subject: &'static str,
}

/// Labels of the refused NATS messages counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a message of the NATS stream was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its payload is not the protobuf message its subject says.
    Undecodable,
    /// An event whose node is not the node of its subject.
    NodeMismatch,
    /// A subject dropscope does not publish.
    ForeignSubject,
}

impl Refused {
    fn label(self) -> ReasonLabel {
        ReasonLabel {
            reason: match self {
                Self::Undecodable => "undecodable",
                Self::NodeMismatch => "node_mismatch",
                Self::ForeignSubject => "foreign_subject",
            },
        }
    }
}

/// What waits in the join for a partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Incidents waiting for a drop on another node.
    Incident,
    /// Drops waiting for an incident from another node.
    Drop,
}

impl Waiting {
    fn label(self) -> KindLabel {
        KindLabel {
            kind: match self {
                Self::Incident => "incident",
                Self::Drop => "drop",
            },
        }
    }
}

/// The collector's metrics. Shared as `Arc<CollectorMetrics>`.
#[derive(Debug)]
pub struct CollectorMetrics {
    registry: Registry,
    /// What `registry` holds, for the reference docs.
    catalog: Vec<MetricInfo>,
    joins: Family<MatchLabel, Counter>,
    unjoined: Counter,
    join_lost: Family<KindLabel, Counter>,
    join_pending: Family<KindLabel, Gauge<u64, AtomicU64>>,
    otlp_lost: Counter,
    nats_messages: Family<SubjectLabel, Counter>,
    nats_refused: Family<ReasonLabel, Counter>,
    nats_publish_failed: Counter,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CollectorMetrics {
    /// Registers every metric, at zero.
    pub fn new() -> Self {
        let mut catalog = Catalog::with_prefix("dropscope_collector");
        let joins = Family::<MatchLabel, Counter>::default();
        catalog.register(
            "joins",
            "Incidents joined with kernel drops of the same flow on another node, by how the \
             tuples matched (original, translated, source)",
            joins.clone(),
        );
        let unjoined = Counter::default();
        catalog.register(
            "unjoined_incidents",
            "Incidents that died beyond their node (or unseen) and met no drop of their flow \
             on another node within the join wait",
            unjoined.clone(),
        );
        let join_lost = Family::<KindLabel, Counter>::default();
        catalog.register(
            "join_lost",
            "Incidents and drops that stopped waiting for a partner early because the join's \
             memory bound was reached, by kind",
            join_lost.clone(),
        );
        let join_pending = Family::<KindLabel, Gauge<u64, AtomicU64>>::default();
        catalog.register(
            "join_pending",
            "Incidents and drops waiting for a partner now, by kind",
            join_pending.clone(),
        );
        let otlp_lost = Counter::default();
        catalog.register(
            "otlp_lost",
            "Events the OpenTelemetry exporter lost (its queue overtaken while the receiver \
             was away, or rejected by the receiver)",
            otlp_lost.clone(),
        );
        let nats_messages = Family::<SubjectLabel, Counter>::default();
        catalog.register(
            "nats_messages",
            "Messages read from the NATS JetStream stream (--nats), by subject",
            nats_messages.clone(),
        );
        let nats_refused = Family::<ReasonLabel, Counter>::default();
        catalog.register(
            "nats_refused",
            "Messages of the NATS JetStream stream not taken, by reason",
            nats_refused.clone(),
        );
        let nats_publish_failed = Counter::default();
        catalog.register(
            "nats_publish_failed",
            "Joined incidents this replica could not publish to the NATS JetStream stream \
             (after retries)",
            nats_publish_failed.clone(),
        );
        for kind in [Waiting::Incident, Waiting::Drop] {
            let _ = join_lost.get_or_create(&kind.label());
            let _ = join_pending.get_or_create(&kind.label());
        }
        for matched in [
            v1::TupleMatch::Original,
            v1::TupleMatch::Translated,
            v1::TupleMatch::Source,
        ] {
            let _ = joins.get_or_create(&match_label(matched));
        }
        let (registry, catalog) = catalog.into_parts();
        Self {
            registry,
            catalog,
            joins,
            unjoined,
            join_lost,
            join_pending,
            otlp_lost,
            nats_messages,
            nats_refused,
            nats_publish_failed,
        }
    }

    /// One incident joined.
    pub fn joined(&self, matched: v1::TupleMatch) {
        self.joins.get_or_create(&match_label(matched)).inc();
    }

    /// Incidents joined so far with `matched`.
    pub fn joins(&self, matched: v1::TupleMatch) -> u64 {
        self.joins.get_or_create(&match_label(matched)).get()
    }

    /// One incident stopped waiting without a partner.
    pub fn unjoined(&self) {
        self.unjoined.inc();
    }

    /// Incidents that stopped waiting without a partner so far.
    pub fn unjoined_incidents(&self) -> u64 {
        self.unjoined.get()
    }

    /// One entry left the join early, the bound reached.
    pub fn join_lost(&self, kind: Waiting) {
        self.join_lost.get_or_create(&kind.label()).inc();
    }

    /// Entries of `kind` that left the join early so far.
    pub fn join_losses(&self, kind: Waiting) -> u64 {
        self.join_lost.get_or_create(&kind.label()).get()
    }

    /// Entries of `kind` waiting now.
    pub fn set_pending(&self, kind: Waiting, count: usize) {
        self.join_pending
            .get_or_create(&kind.label())
            .set(count as u64);
    }

    /// Entries of `kind` waiting now.
    pub fn pending(&self, kind: Waiting) -> u64 {
        self.join_pending.get_or_create(&kind.label()).get()
    }

    /// Events the OpenTelemetry exporter lost so far.
    pub fn otlp_losses(&self) -> u64 {
        self.otlp_lost.get()
    }

    /// The collector's part of `GetStatus`: these counters, and whether
    /// events come from pushes or from the NATS stream `nats_stream`.
    pub fn status(&self, nats_stream: Option<&str>) -> v1::CollectorStatus {
        let matches = [
            v1::TupleMatch::Original,
            v1::TupleMatch::Translated,
            v1::TupleMatch::Source,
        ];
        v1::CollectorStatus {
            source: match nats_stream {
                Some(_) => v1::CollectorSource::Nats,
                None => v1::CollectorSource::Push,
            } as i32,
            nats_stream: nats_stream.unwrap_or_default().to_owned(),
            joins: matches
                .into_iter()
                .map(|matched| v1::JoinCount {
                    r#match: matched as i32,
                    count: self.joins(matched),
                })
                .collect(),
            unjoined_incidents: self.unjoined_incidents(),
            waiting_incidents: self.pending(Waiting::Incident),
            waiting_drops: self.pending(Waiting::Drop),
            join_lost: self.join_losses(Waiting::Incident) + self.join_losses(Waiting::Drop),
            otlp_lost: self.otlp_losses(),
            nats_refused: [
                Refused::Undecodable,
                Refused::NodeMismatch,
                Refused::ForeignSubject,
            ]
            .into_iter()
            .map(|reason| self.nats_refusals(reason))
            .sum(),
        }
    }

    /// `count` events were lost by the OpenTelemetry exporter.
    pub fn otlp_lost(&self, count: u64) {
        self.otlp_lost.inc_by(count);
    }

    /// A message of the NATS stream on `subject` (`events`, `status`,
    /// `hello`, `joined`) was read.
    pub fn nats_message(&self, subject: &'static str) {
        self.nats_messages
            .get_or_create(&SubjectLabel { subject })
            .inc();
    }

    /// A message of the NATS stream was not taken.
    pub fn nats_refused(&self, reason: Refused) {
        self.nats_refused.get_or_create(&reason.label()).inc();
    }

    /// Messages of the NATS stream refused for `reason` so far.
    pub fn nats_refusals(&self, reason: Refused) -> u64 {
        self.nats_refused.get_or_create(&reason.label()).get()
    }

    /// A joined incident could not be published to the NATS stream.
    pub fn nats_publish_failed(&self) {
        self.nats_publish_failed.inc();
    }

    /// Every metric registered: name on the wire, type, help.
    pub fn catalog(&self) -> &[MetricInfo] {
        &self.catalog
    }

    /// The OpenMetrics text of every metric, `# EOF` included.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl crate::otlp::Counters for CollectorMetrics {
    fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        self.encode()
    }

    fn lost(&self, records: u64) {
        self.otlp_lost(records);
    }
}

fn match_label(matched: v1::TupleMatch) -> MatchLabel {
    MatchLabel {
        r#match: match matched {
            v1::TupleMatch::Original => "original",
            v1::TupleMatch::Translated => "translated",
            v1::TupleMatch::Source => "source",
            v1::TupleMatch::Unknown => "unknown",
        },
    }
}

/// Why the metrics endpoint stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not listen.
    #[error("--metrics-listen {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// Serving HTTP failed.
    #[error("metrics endpoint on {address}: {source}")]
    Serve {
        /// The address it listened on.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A bound metrics listener.
pub struct Endpoint {
    listener: TcpListener,
    address: SocketAddr,
}

impl Endpoint {
    /// Listens on `address` (port 0: any free port).
    pub async fn bind(address: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::Bind { address, source })?;
        Ok(Self { listener, address })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `GET /metrics` and `/healthz` until `shutdown` resolves.
    pub async fn serve(
        self,
        metrics: Arc<CollectorMetrics>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let address = self.address;
        let app = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(metrics);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| Error::Serve { address, source })
    }
}

async fn metrics_text(State(metrics): State<Arc<CollectorMetrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}
