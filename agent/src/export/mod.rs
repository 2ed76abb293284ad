//! A sink: pushes the agent's stream to a `dropscope collector`
//! (`dropscope.v1.Collector/Push`), with acknowledgements, reconnects with
//! backoff, and a bounded window of unacknowledged events.
//!
//! Receives a cursor on the hub that starts at the oldest event held, so
//! what happened before the collector was reachable is sent when it is. The
//! hub's ring is the buffer: while the collector is away the cursor stays
//! put and the ring keeps the latest `--history` events; when it overtakes
//! the cursor, the events lost are counted (the hub's subscriber losses, in
//! metrics) and sent as a `LossEvent` in the stream. Events sent but not yet
//! acknowledged (at most [`WINDOW`]) are sent again after a reconnect; the
//! collector drops the ones it already stored (it keeps each node's
//! highest sequence per agent run), so none is stored twice.

use std::{sync::Arc, time::Duration};

use dropscope_proto::v1::{self, collector_client::CollectorClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    client::Connection,
    convert,
    fanout::{Hub, outbox::Outbox},
    serve::AgentState,
};
/// Where and how to push.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The collector's address.
    pub collector: crate::client::Server,
    /// CA bundle for TLS to the collector (plaintext without it).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The TLS server name, when not the address.
    pub server_name: Option<String>,
}

impl ExportConfig {
    /// The connection this configuration describes; errors name the file.
    pub fn connection(&self) -> anyhow::Result<Connection> {
        Connection::new(
            &self.collector,
            self.tls_ca.as_deref(),
            self.identity
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
            self.server_name.as_deref(),
        )
    }
}

/// Events sent and not yet acknowledged, at most.
pub const WINDOW: usize = 8192;
/// Events per batch, at most.
const BATCH: usize = 512;
/// How often the agent's status is pushed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// The first wait before a reconnect; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why one push stream ended.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The collector could not be reached.
    #[error("{0:#}")]
    Connect(anyhow::Error),
    /// The stream failed.
    #[error("the collector ended the stream: {0}")]
    Stream(#[from] tonic::Status),
    /// The collector closed the stream.
    #[error("the collector closed the stream")]
    Closed,
}

/// What to check when the collector dropped the connection before a
/// word of gRPC: with TLS 1.3 a client learns that the server refused its
/// handshake only on its first read, as a closed connection, so the
/// transport error alone does not say why.
fn refusal_hint(error: &PushError, connection: &Connection) -> &'static str {
    let PushError::Stream(status) = error else {
        return "";
    };
    let transport = matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    );
    match (
        transport,
        connection.uses_tls(),
        connection.presents_certificate(),
    ) {
        (false, _, _) | (true, true, true) => "",
        (true, true, false) => {
            " (a collector run with --tls-client-ca refuses agents without a client certificate: give --collector-tls-cert and --collector-tls-key)"
        }
        (true, false, _) => " (does the collector serve TLS? give --collector-tls-ca)",
    }
}

/// The exporter's state across reconnects.
pub struct Exporter {
    connection: Connection,
    hub: Hub,
    state: AgentState,
    /// Sent and not acknowledged, with their sequence numbers.
    outbox: Outbox,
}

impl Exporter {
    /// An exporter of `hub` to the collector at `connection`, starting at
    /// the oldest event the hub holds.
    pub fn new(connection: Connection, hub: Hub, state: AgentState) -> Self {
        Self {
            outbox: Outbox::new(&hub, "collector export"),
            connection,
            hub,
            state,
        }
    }

    /// Pushes until the hub closes and the collector acknowledged every
    /// event (the pipeline bounds how long it waits for that at exit).
    pub async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        loop {
            match self.push(&mut backoff).await {
                Ok(()) => {
                    tracing::info!("every event acknowledged by the collector");
                    return;
                }
                Err(error) => {
                    failures += 1;
                    let error = format!("{error}{}", refusal_hint(&error, &self.connection));
                    if failures == 1 || backoff >= MAX_BACKOFF {
                        tracing::warn!(collector = %self.connection.server(), %error, retry_in = ?backoff, "cannot push to the collector");
                    } else {
                        tracing::debug!(collector = %self.connection.server(), %error, retry_in = ?backoff, "cannot push to the collector");
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One push stream: hello, the unacknowledged events again, then new
    /// ones as they come; `Ok` when the hub closed and everything was
    /// acknowledged.
    async fn push(&mut self, backoff: &mut Duration) -> Result<(), PushError> {
        let channel = self
            .connection
            .channel()
            .await
            .map_err(PushError::Connect)?;
        let mut client = CollectorClient::new(channel);
        let (requests, outgoing) = mpsc::channel(4);
        let hello = v1::PushRequest {
            message: Some(v1::push_request::Message::Hello(v1::Hello {
                node: self.hub.node().to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started: Some(convert::timestamp(self.state.started)),
            })),
        };
        requests.send(hello).await.map_err(|_| PushError::Closed)?;
        let mut acks = client
            .push(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        tracing::info!(collector = %self.connection.server(), resent = self.outbox.len(), "pushing to the collector");
        // What was sent before and not acknowledged goes first, again.
        let again = self.outbox.unacknowledged();
        for chunk in again.chunks(BATCH) {
            send_batch(&requests, chunk).await?;
        }
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut hub_open = true;
        loop {
            if !hub_open && self.outbox.is_empty() {
                return Ok(());
            }
            let room = self.outbox.len() < WINDOW;
            tokio::select! {
                ack = acks.message() => {
                    let ack = ack?.ok_or(PushError::Closed)?;
                    self.outbox.acknowledged(ack.sequence);
                    *backoff = FIRST_BACKOFF;
                }
                item = self.outbox.next(), if room && hub_open => {
                    let Some(first) = item else {
                        hub_open = false;
                        continue;
                    };
                    let mut batch = vec![first];
                    while batch.len() < BATCH && self.outbox.len() < WINDOW {
                        let Some(next) = self.outbox.try_next() else { break };
                        batch.push(next);
                    }
                    send_batch(&requests, &batch).await?;
                }
                _ = status.tick() => {
                    let report = self.state.report(&self.hub).await;
                    let request = v1::PushRequest {
                        message: Some(v1::push_request::Message::Status(report)),
                    };
                    requests.send(request).await.map_err(|_| PushError::Closed)?;
                }
            }
        }
    }
}

/// Sends consecutive events as one batch.
async fn send_batch(
    requests: &mpsc::Sender<v1::PushRequest>,
    events: &[(u64, Arc<v1::Event>)],
) -> Result<(), PushError> {
    let Some((first, _)) = events.first() else {
        return Ok(());
    };
    let batch = v1::EventBatch {
        first_sequence: *first,
        events: events
            .iter()
            .map(|(_, event)| convert::wire::on_the_wire(event).into_owned())
            .collect(),
    };
    let request = v1::PushRequest {
        message: Some(v1::push_request::Message::Batch(batch)),
    };
    requests.send(request).await.map_err(|_| PushError::Closed)
}
