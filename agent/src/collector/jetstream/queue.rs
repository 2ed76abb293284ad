//! The work done once for the cluster, shared by the replicas: one durable
//! consumer (`--nats-consumer`) that every replica pulls from, so each
//! node event is handed to exactly one replica (queue semantics), which
//! offers its incidents to the join and exports it to OpenTelemetry, then
//! acknowledges it. The consumer remembers its position in JetStream: a
//! replica that restarts, or a new one, goes on where the group was; an
//! event a replica took and did not acknowledge (it died) is handed out
//! again after the ack wait.
//!
//! An incident waiting for its drop lives in the memory of the replica
//! that took it; drops reach every replica (the [`super::reader`]), so
//! whichever replica has the incident sees its drop. A replica that dies
//! loses the incidents it had waiting (they are acknowledged when taken).

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use dropscope_proto::v1;
use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::{mpsc, watch};

use crate::{
    collector::{enrich::Ingest, merge},
    fanout::Hub,
    nats::{Connection, NatsConfig, Subjects, subjects::node_token},
};

/// How long a replica has to acknowledge an event before it is handed to
/// another.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How often the connection is checked for a reconnect.
const CONNECTION_CHECK: Duration = Duration::from_secs(1);
/// Events handed out and not yet acknowledged, across the replicas.
const MAX_ACK_PENDING: i64 = 20_000;

/// One replica's share of the queue.
pub struct Queue {
    config: NatsConfig,
    subjects: Subjects,
    consumer: String,
    join: mpsc::Sender<Arc<v1::Event>>,
    export: Option<Hub>,
    ingest: Arc<Ingest>,
}

impl Queue {
    /// Pulls from the durable consumer `consumer`: incidents go to `join`,
    /// every event to `export` when there is one; events agents sent raw
    /// are completed by `ingest`.
    pub fn new(
        config: NatsConfig,
        consumer: String,
        join: mpsc::Sender<Arc<v1::Event>>,
        export: Option<Hub>,
        ingest: Arc<Ingest>,
    ) -> Self {
        Self {
            subjects: config.subjects(),
            config,
            consumer,
            join,
            export,
            ingest,
        }
    }

    /// Pulls until `stopping` turns true.
    pub async fn run(self, context: jetstream::Context, mut stopping: watch::Receiver<bool>) {
        let mut backoff = super::Backoff::new();
        loop {
            match self.pull(&context, &mut stopping).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(consumer = %self.consumer, %error, retry_in = ?backoff.wait(), "pulling from the NATS consumer failed");
                }
            }
            if !backoff.before_next(&mut stopping).await {
                return;
            }
        }
    }

    async fn pull(
        &self,
        context: &jetstream::Context,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let stream = self
            .config
            .stream(context)
            .await
            .map_err(|error| error.to_string())?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &self.consumer,
                pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    description: Some(
                        "dropscope collector replicas: joins and export, once per event".to_owned(),
                    ),
                    filter_subject: self.subjects.all_events(),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| error.to_string())?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| error.to_string())?;
        tracing::info!(consumer = %self.consumer, "taking this replica's share of the NATS stream");
        let mut connection = Connection::of(context);
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = check.tick() => {
                    if connection.came_back() {
                        return Err("NATS reconnected: pulling again".to_owned());
                    }
                    continue;
                }
                () = super::stopped(stopping) => return Ok(()),
            };
            let message = message
                .ok_or("the consumer's messages ended")?
                .map_err(|error| error.to_string())?;
            self.take(&message).await?;
            message.ack().await.map_err(|error| error.to_string())?;
        }
    }

    /// Hands one event on; `Err` only when the join stopped.
    async fn take(&self, message: &jetstream::Message) -> Result<(), String> {
        let mut event = match v1::Event::decode(&message.payload[..]) {
            Ok(event) => event,
            // The reader counts what does not decode: every message reaches
            // it, and it alone counts, so each bad message counts once.
            Err(_) => return Ok(()),
        };
        let token = message.subject.as_str().rsplit('.').next().unwrap_or("");
        if node_token(&event.node) != token {
            return Ok(());
        }
        self.ingest.take(&mut event).await;
        let event = Arc::new(event);
        if matches!(event.event, Some(v1::event::Event::Incident(_))) {
            self.join
                .send(Arc::clone(&event))
                .await
                .map_err(|_| "the collector is stopping".to_owned())?;
        }
        if let Some(hub) = &self.export {
            merge::publish(hub, event);
        }
        Ok(())
    }
}
