//! The agent's side of `--nats`: publishes its stream to JetStream, each
//! event acknowledged by the stream before it leaves the agent's hands.
//!
//! Like the push to a collector (`export`), it reads a cursor on the hub
//! that starts at the oldest event held, and the hub's ring is the buffer:
//! while NATS is unreachable the cursor stays put, the ring keeps the
//! latest `--history` events, and what it lets go is counted (the hub's
//! subscriber losses, in metrics) and published as a `LossEvent` in the
//! stream. At most [`WINDOW`] events are published and not yet
//! acknowledged; after a failure they are published again under the same
//! message id, so JetStream stores each once (within the stream's
//! duplicate window). The client reconnects by itself; a session that
//! fails waits with a doubling backoff before publishing again.

use std::{
    pin::Pin,
    time::{Duration, UNIX_EPOCH},
};

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use dropscope_proto::v1;
use futures::{StreamExt as _, stream::FuturesOrdered};
use prost::Message as _;

use super::{NatsConfig, Subjects, subjects};
use crate::{
    convert,
    fanout::{Hub, outbox::Outbox},
    serve::AgentState,
};

/// Events published and not yet acknowledged, at most.
pub const WINDOW: usize = 4096;
/// How often the agent's status is published.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// The first wait after a failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the connection is checked: while it is lost, nothing new is
/// taken from the hub.
const CONNECTION_CHECK: Duration = Duration::from_millis(250);

/// Why a publishing session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// Connecting, or finding the stream.
    #[error(transparent)]
    Nats(#[from] super::Error),
    /// A publish was refused or not acknowledged in time.
    #[error("publishing: {0}")]
    Publish(String),
}

type Ack = Pin<Box<dyn Future<Output = (u64, Result<(), String>)> + Send>>;

/// The publisher's state across sessions.
pub struct Publisher {
    config: NatsConfig,
    subjects: Subjects,
    hub: Hub,
    state: AgentState,
    /// Published and not acknowledged, with their sequence numbers.
    outbox: Outbox,
    /// This agent run, in message ids.
    run: u128,
}

impl Publisher {
    /// A publisher of `hub` to the stream `config` names, starting at the
    /// oldest event the hub holds.
    pub fn new(config: NatsConfig, hub: Hub, state: AgentState) -> Self {
        let run = state
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Self {
            outbox: Outbox::new(&hub, "nats publish"),
            subjects: config.subjects(),
            config,
            hub,
            state,
            run,
        }
    }

    /// Publishes until the hub closes and the stream acknowledged every
    /// event (the pipeline bounds how long it waits for that at exit).
    pub async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        let mut context = None;
        loop {
            if context.is_none() {
                match self
                    .config
                    .connect(&format!("dropscope-agent {}", self.hub.node()))
                    .await
                {
                    Ok(connected) => context = Some(connected),
                    Err(error) => {
                        failures += 1;
                        self.warn(failures, backoff, &error.to_string());
                    }
                }
            }
            if let Some(connected) = &context {
                if !super::Connection::of(connected).is_connected() {
                    // The client is reconnecting by itself: nothing new is
                    // taken from the hub meanwhile (its ring is the buffer).
                    tokio::time::sleep(CONNECTION_CHECK).await;
                    continue;
                }
                match self.session(connected, &mut backoff).await {
                    Ok(()) => {
                        tracing::info!("every event acknowledged by JetStream");
                        return;
                    }
                    Err(error) => {
                        failures += 1;
                        self.warn(failures, backoff, &error.to_string());
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn warn(&self, failures: u64, backoff: Duration, error: &str) {
        if failures == 1 || backoff >= MAX_BACKOFF {
            tracing::warn!(nats = %self.config.url, stream = %self.config.stream, %error, retry_in = ?backoff, unacknowledged = self.outbox.len(), "cannot publish to NATS");
        } else {
            tracing::debug!(nats = %self.config.url, %error, retry_in = ?backoff, "cannot publish to NATS");
        }
    }

    /// One session: the stream, a hello, the unacknowledged events again,
    /// then new ones as they come; `Ok` when the hub closed and everything
    /// was acknowledged.
    async fn session(
        &mut self,
        context: &jetstream::Context,
        backoff: &mut Duration,
    ) -> Result<(), SessionError> {
        self.config.stream(context).await?;
        let hello = v1::Hello {
            node: self.hub.node().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: Some(convert::timestamp(self.state.started)),
        };
        let hello_id = format!("hello:{}", subjects::event_id(self.hub.node(), self.run, 0));
        let publish = Publish::build()
            .payload(hello.encode_to_vec().into())
            .message_id(hello_id);
        acknowledged(
            context
                .send_publish(self.subjects.hello(self.hub.node()), publish)
                .await,
        )
        .await?;
        tracing::info!(nats = %self.config.url, stream = %self.config.stream, again = self.outbox.len(), "publishing to NATS JetStream");
        let mut acks: FuturesOrdered<Ack> = FuturesOrdered::new();
        let again = self.outbox.unacknowledged();
        for (sequence, event) in again {
            acks.push_back(self.publish(context, sequence, &event).await?);
        }
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        let connection = super::Connection::of(context);
        let mut hub_open = true;
        loop {
            if !hub_open && self.outbox.is_empty() {
                return Ok(());
            }
            let room = self.outbox.len() < WINDOW;
            tokio::select! {
                Some((sequence, result)) = acks.next(), if !acks.is_empty() => {
                    result.map_err(SessionError::Publish)?;
                    self.outbox.acknowledged(sequence);
                    *backoff = FIRST_BACKOFF;
                }
                item = self.outbox.next(), if room && hub_open => {
                    let Some((sequence, event)) = item else {
                        hub_open = false;
                        continue;
                    };
                    acks.push_back(self.publish(context, sequence, &event).await?);
                    while self.outbox.len() < WINDOW {
                        let Some((sequence, event)) = self.outbox.try_next() else { break };
                        acks.push_back(self.publish(context, sequence, &event).await?);
                    }
                }
                _ = check.tick() => {
                    if !connection.is_connected() {
                        return Err(SessionError::Publish("the connection to NATS is lost".to_owned()));
                    }
                }
                _ = status.tick() => {
                    let report = self.state.report(&self.hub).await;
                    let publish = Publish::build().payload(report.encode_to_vec().into());
                    // A lost report is replaced by the next one.
                    drop(context.send_publish(self.subjects.status(self.hub.node()), publish).await);
                }
            }
        }
    }

    /// Publishes event `sequence`; the future tells its acknowledgement.
    async fn publish(
        &self,
        context: &jetstream::Context,
        sequence: u64,
        event: &v1::Event,
    ) -> Result<Ack, SessionError> {
        let publish = Publish::build()
            .payload(convert::wire::on_the_wire(event).encode_to_vec().into())
            .message_id(subjects::event_id(self.hub.node(), self.run, sequence));
        let pending = context
            .send_publish(self.subjects.events(self.hub.node()), publish)
            .await
            .map_err(|error| SessionError::Publish(error.to_string()))?;
        Ok(Box::pin(async move {
            (
                sequence,
                pending.await.map(drop).map_err(|error| error.to_string()),
            )
        }))
    }
}

/// Waits for one publish's acknowledgement.
async fn acknowledged(
    pending: Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
) -> Result<(), SessionError> {
    pending
        .map_err(|error| SessionError::Publish(error.to_string()))?
        .await
        .map(drop)
        .map_err(|error| SessionError::Publish(error.to_string()))
}
