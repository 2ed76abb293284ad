//! The collector on NATS JetStream (`dropscope collector --nats URL`):
//! replicas that share the cluster's stream instead of receiving pushes.
//!
//! Each replica has three parts:
//! - the [`reader`] reads the whole stream in order into the replica's hub,
//!   so every replica serves the same cluster view to `observe` (history
//!   from the stream's tail at start, then live), and hands drops to the
//!   join;
//! - the [`queue`] pulls the replica's share of a durable consumer all
//!   replicas share: each node event is handled by one replica, which
//!   offers incidents to the join and exports the event to OpenTelemetry;
//! - the [`Publisher`] runs the join on what the two give it and publishes
//!   each cluster incident to `<stream>.v1.joined` under a message id made
//!   from the incident, so it is stored once; the reader then brings it to
//!   every replica's hub, and the replica that joined it exports it.
//!
//! Why drops go to every replica and incidents to one: the join must see
//! an incident and its drops in one place, and a drop can match by
//! original, translated or source tuple, so no partition of the stream by
//! subject keeps the pair together. Incidents are few (one per failed
//! flow); drops are the stream's bulk but every replica reads them for
//! `observe` anyway. What the queue shares out is the per-event work:
//! incidents' joins and the OpenTelemetry export.

pub mod archive;
pub mod queue;
pub mod reader;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use dropscope_proto::v1;
use tokio::sync::{mpsc, watch};

use crate::{
    collector::{join::Joins, merge, metrics::CollectorMetrics},
    fanout::Hub,
    nats::{NatsConfig, Subjects, subjects},
};

/// The first wait after a failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Attempts to publish one joined incident.
const PUBLISH_ATTEMPTS: u32 = 3;
/// How often the join's deadlines are checked.
const TICK: Duration = Duration::from_secs(1);

/// The wait between attempts of a part that retries for ever: doubling
/// from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`], back to the first after an
/// attempt that lasted longer than the longest wait.
struct Backoff {
    wait: Duration,
    attempt: tokio::time::Instant,
}

impl Backoff {
    fn new() -> Self {
        Self {
            wait: FIRST_BACKOFF,
            attempt: tokio::time::Instant::now(),
        }
    }

    /// The wait after the attempt now failing.
    fn wait(&self) -> Duration {
        if self.attempt.elapsed() > MAX_BACKOFF {
            FIRST_BACKOFF
        } else {
            self.wait
        }
    }

    /// Waits before the next attempt; false when `stopping` turned true
    /// meanwhile.
    async fn before_next(&mut self, stopping: &mut watch::Receiver<bool>) -> bool {
        let wait = self.wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = stopped(stopping) => return false,
        }
        self.wait = (wait * 2).min(MAX_BACKOFF);
        self.attempt = tokio::time::Instant::now();
        true
    }
}

/// Connects, retrying with backoff until it works or `stopping` turns
/// true (`None` then). Once connected the client reconnects by itself.
pub async fn connect(
    config: &NatsConfig,
    name: &str,
    stopping: &mut watch::Receiver<bool>,
) -> Option<jetstream::Context> {
    let mut backoff = Backoff::new();
    loop {
        match config.connect(name).await {
            Ok(context) => return Some(context),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff.wait(), "cannot reach NATS");
            }
        }
        if !backoff.before_next(stopping).await {
            return None;
        }
    }
}

/// The messages of `config`'s stream in order from `deliver`, through an
/// ordered (ephemeral) consumer.
async fn ordered(
    config: &NatsConfig,
    context: &jetstream::Context,
    deliver: jetstream::consumer::DeliverPolicy,
) -> Result<jetstream::consumer::pull::Ordered, String> {
    let stream = config
        .stream(context)
        .await
        .map_err(|error| error.to_string())?;
    stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: deliver,
            ..Default::default()
        })
        .await
        .map_err(|error| error.to_string())?
        .messages()
        .await
        .map_err(|error| error.to_string())
}

/// Completes when `stopping` turns true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Runs the join of a replica and publishes what it completes.
pub struct Publisher {
    joins: Joins,
    subjects: Subjects,
    context: jetstream::Context,
    export: Option<Hub>,
    metrics: Arc<CollectorMetrics>,
}

impl Publisher {
    /// Joins with `joins`, publishes to `config`'s stream through
    /// `context`, exports joined incidents to `export`.
    pub fn new(
        joins: Joins,
        config: &NatsConfig,
        context: jetstream::Context,
        export: Option<Hub>,
        metrics: Arc<CollectorMetrics>,
    ) -> Self {
        Self {
            joins,
            subjects: config.subjects(),
            context,
            export,
            metrics,
        }
    }

    /// Takes drops (from the reader) and incidents (from the queue) until
    /// `input` closes or `stopping` turns true.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Arc<v1::Event>>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                event = input.recv() => event,
                _ = tick.tick() => {
                    self.joins.expire(std::time::SystemTime::now());
                    continue;
                }
                _ = stopping.wait_for(|stopping| *stopping) => return,
            };
            let Some(event) = event else { return };
            for joined in self.joins.offer(&event, std::time::SystemTime::now()) {
                self.publish(joined).await;
            }
        }
    }

    async fn publish(&self, joined: v1::Event) {
        let incident_id = match &joined.event {
            Some(v1::event::Event::Incident(incident)) => incident.incident_id,
            _ => return,
        };
        let id = subjects::joined_id(&joined.node, incident_id);
        let payload = prost::Message::encode_to_vec(&joined);
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(&id);
            let result = match self
                .context
                .send_publish(self.subjects.joined(), publish)
                .await
            {
                Ok(pending) => pending.await.map(drop).map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match result {
                Ok(()) => break Ok(()),
                Err(error) if attempt >= PUBLISH_ATTEMPTS => break Err(error),
                Err(_) => tokio::time::sleep(FIRST_BACKOFF * attempt).await,
            }
        };
        match outcome {
            Ok(()) => {
                tracing::debug!(node = %joined.node, incident_id, "incident joined across nodes")
            }
            Err(error) => {
                self.metrics.nats_publish_failed();
                tracing::warn!(node = %joined.node, incident_id, %error, "a joined incident could not be published to NATS");
            }
        }
        if let Some(hub) = &self.export {
            merge::publish(hub, Arc::new(joined));
        }
    }
}

/// What a replica's parts share with the rest of the collector.
pub struct Parts {
    /// The collector's name (in the NATS connection's name).
    pub name: String,
    /// Messages read from the stream's tail at start.
    pub history: usize,
    /// The durable consumer the replicas share.
    pub consumer: String,
    /// How joins are made.
    pub join: crate::collector::join::JoinConfig,
    /// The nodes heard from.
    pub nodes: Arc<crate::collector::nodes::Nodes>,
    /// The collector's counters.
    pub metrics: Arc<CollectorMetrics>,
    /// The merge in front of the replica's hub.
    pub merge: mpsc::Sender<Arc<v1::Event>>,
    /// The OpenTelemetry exporter's hub, when exporting.
    pub export: Option<Hub>,
    /// What every node event goes through on its way in.
    pub ingest: Arc<crate::collector::enrich::Ingest>,
    /// Where the connection goes once made, for the archive.
    pub connected: Arc<std::sync::OnceLock<jetstream::Context>>,
}

/// Runs a replica's parts until `stopping` turns true; then closes the
/// merge's input and the export hub.
pub async fn run(config: NatsConfig, parts: Parts, mut stopping: watch::Receiver<bool>) {
    let name = format!("dropscope-collector {}", parts.name);
    let Some(context) = connect(&config, &name, &mut stopping).await else {
        close(parts.export.as_ref());
        return;
    };
    tracing::info!(nats = %config.url, stream = %config.stream, consumer = %parts.consumer, "collector replica on NATS JetStream");
    let _ = parts.connected.set(context.clone());
    let (join_tx, join_rx) = mpsc::channel(8192);
    let reader = reader::Reader::new(
        config.clone(),
        parts.history,
        parts.nodes,
        parts.merge,
        join_tx.clone(),
        Arc::clone(&parts.metrics),
        Arc::clone(&parts.ingest),
    );
    let queue = queue::Queue::new(
        config.clone(),
        parts.consumer,
        join_tx,
        parts.export.clone(),
        parts.ingest,
    );
    let publisher = Publisher::new(
        Joins::new(parts.join, Arc::clone(&parts.metrics)),
        &config,
        context.clone(),
        parts.export.clone(),
        parts.metrics,
    );
    tokio::join!(
        reader.run(context.clone(), stopping.clone()),
        queue.run(context, stopping.clone()),
        publisher.run(join_rx, stopping),
    );
    close(parts.export.as_ref());
}

fn close(export: Option<&Hub>) {
    if let Some(hub) = export {
        hub.close();
    }
}
