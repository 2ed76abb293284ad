//! Every replica reads the whole stream in order (an ordered, ephemeral
//! consumer): events and joined incidents go to the merge and so to the
//! replica's hub (what `observe` reads), drops also to the join; statuses
//! and hellos keep [`Nodes`].
//!
//! At start the replica reads the stream's last `--history` messages, so a
//! restarted replica answers `--last` and `--since` with what the stream
//! holds, not with nothing. After a failure it resumes at the sequence
//! after the last one it took, so nothing is read twice.
//!
//! Nodes: an agent publishes its status every 5 s; a node is connected
//! while its latest status or hello is younger than [`STALE`] (by the
//! stream's publish time, so history read at start does not make long-gone
//! nodes look connected) and unavailable after that.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use dropscope_proto::v1;
use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};

use crate::{
    collector::{
        enrich::Ingest,
        metrics::{CollectorMetrics, Refused},
        nodes::Nodes,
        push::node_event,
    },
    nats::{
        Connection, NatsConfig, Subjects,
        subjects::{Subject, node_token},
    },
};

/// A node whose latest status or hello is older than this is unavailable
/// (three status periods).
pub const STALE: Duration = Duration::from_secs(15);
/// How often node states are checked against [`STALE`].
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One node as the reader last heard of it.
struct Heard {
    /// The publish time of its latest status or hello.
    last: SystemTime,
    /// Whether [`Nodes`] has it connected.
    connected: bool,
}

/// The stream's reader.
pub struct Reader {
    config: NatsConfig,
    subjects: Subjects,
    history: usize,
    nodes: Arc<Nodes>,
    merge: mpsc::Sender<Arc<v1::Event>>,
    join: mpsc::Sender<Arc<v1::Event>>,
    metrics: Arc<CollectorMetrics>,
    ingest: Arc<Ingest>,
    /// The stream sequence to read next, once known.
    next: Option<u64>,
    heard: HashMap<String, Heard>,
}

impl Reader {
    /// A reader feeding `merge` (the hub) and `join` (drops), keeping
    /// `nodes`; it reads the last `history` messages first; events agents
    /// sent raw are completed by `ingest`.
    pub fn new(
        config: NatsConfig,
        history: usize,
        nodes: Arc<Nodes>,
        merge: mpsc::Sender<Arc<v1::Event>>,
        join: mpsc::Sender<Arc<v1::Event>>,
        metrics: Arc<CollectorMetrics>,
        ingest: Arc<Ingest>,
    ) -> Self {
        Self {
            subjects: config.subjects(),
            config,
            history,
            nodes,
            merge,
            join,
            metrics,
            ingest,
            next: None,
            heard: HashMap::new(),
        }
    }

    /// Reads until `stopping` turns true (closing the merge's input).
    pub async fn run(mut self, context: jetstream::Context, mut stopping: watch::Receiver<bool>) {
        let mut backoff = super::Backoff::new();
        loop {
            match self.read(&context, &mut stopping).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(stream = %self.config.stream, %error, retry_in = ?backoff.wait(), "reading the NATS stream failed");
                }
            }
            if !backoff.before_next(&mut stopping).await {
                return;
            }
        }
    }

    async fn read(
        &mut self,
        context: &jetstream::Context,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let stream = self
            .config
            .stream(context)
            .await
            .map_err(|error| error.to_string())?;
        let start = match self.next {
            Some(next) => next,
            None => {
                let info = stream.get_info().await.map_err(|error| error.to_string())?;
                let state = info.state;
                (state.last_sequence + 1)
                    .saturating_sub(self.history as u64)
                    .max(state.first_sequence)
                    .max(1)
            }
        };
        tracing::info!(stream = %self.config.stream, from = start, "reading the NATS stream");
        let mut messages = super::ordered(
            &self.config,
            context,
            DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
        )
        .await?;
        let mut check = tokio::time::interval(CHECK_EVERY);
        let mut connection = Connection::of(context);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message
                        .ok_or("the stream's consumer ended")?
                        .map_err(|error| error.to_string())?;
                    self.take(&message).await?;
                }
                _ = check.tick() => {
                    if connection.came_back() {
                        return Err("NATS reconnected: reading again where this replica was".to_owned());
                    }
                    self.check_nodes().await?;
                }
                () = super::stopped(stopping) => return Ok(()),
            }
        }
    }

    /// Takes one message; `Err` only when the merge stopped.
    async fn take(&mut self, message: &jetstream::Message) -> Result<(), String> {
        let (sequence, published) = match message.info() {
            Ok(info) => (info.stream_sequence, SystemTime::from(info.published)),
            Err(error) => return Err(format!("a message without its stream position: {error}")),
        };
        self.next = Some(sequence + 1);
        let payload = &message.payload[..];
        match self.subjects.classify(message.subject.as_str()) {
            Some(Subject::Events(token)) => {
                self.metrics.nats_message("events");
                let Some(mut event) = self.decode::<v1::Event>(payload) else {
                    return Ok(());
                };
                if node_token(&event.node) != token {
                    self.metrics.nats_refused(Refused::NodeMismatch);
                    return Ok(());
                }
                self.ingest.take(&mut event).await;
                self.nodes.stored(&event.node, 0, 1);
                let event = Arc::new(event);
                if matches!(event.event, Some(v1::event::Event::Drop(_))) {
                    self.send(&self.join, Arc::clone(&event)).await?;
                }
                self.send(&self.merge, event).await
            }
            Some(Subject::Joined) => {
                self.metrics.nats_message("joined");
                match self.decode::<v1::Event>(payload) {
                    Some(event) => self.send(&self.merge, Arc::new(event)).await,
                    None => Ok(()),
                }
            }
            Some(Subject::Status(token)) => {
                self.metrics.nats_message("status");
                let Some(status) = self.decode::<v1::GetStatusResponse>(payload) else {
                    return Ok(());
                };
                if node_token(&status.node) != token {
                    self.metrics.nats_refused(Refused::NodeMismatch);
                    return Ok(());
                }
                let hello = v1::Hello {
                    node: status.node.clone(),
                    version: status.version.clone(),
                    started: status.started,
                };
                self.heard_from(&hello, published).await?;
                let node = status.node.clone();
                self.nodes.report(&node, status);
                Ok(())
            }
            Some(Subject::Hello(token)) => {
                self.metrics.nats_message("hello");
                let Some(hello) = self.decode::<v1::Hello>(payload) else {
                    return Ok(());
                };
                if node_token(&hello.node) != token {
                    self.metrics.nats_refused(Refused::NodeMismatch);
                    return Ok(());
                }
                self.heard_from(&hello, published).await
            }
            None => {
                self.metrics.nats_refused(Refused::ForeignSubject);
                Ok(())
            }
        }
    }

    fn decode<M: prost::Message + Default>(&self, payload: &[u8]) -> Option<M> {
        match M::decode(payload) {
            Ok(message) => Some(message),
            Err(error) => {
                self.metrics.nats_refused(Refused::Undecodable);
                tracing::debug!(%error, "a message of the NATS stream does not decode");
                None
            }
        }
    }

    async fn send(
        &self,
        to: &mpsc::Sender<Arc<v1::Event>>,
        event: Arc<v1::Event>,
    ) -> Result<(), String> {
        to.send(event)
            .await
            .map_err(|_| "the collector is stopping".to_owned())
    }

    /// A node spoke at `published`: connected if that is recent.
    async fn heard_from(&mut self, hello: &v1::Hello, published: SystemTime) -> Result<(), String> {
        let heard = self.heard.entry(hello.node.clone()).or_insert(Heard {
            last: published,
            connected: false,
        });
        heard.last = heard.last.max(published);
        if !heard.connected && !is_stale(heard.last) {
            heard.connected = true;
            let (_, state) = self.nodes.connected(hello);
            tracing::info!(node = %hello.node, version = %hello.version, "node publishing to NATS");
            return self.send(&self.merge, Arc::new(node_event(state))).await;
        }
        Ok(())
    }

    /// Nodes that went quiet become unavailable.
    async fn check_nodes(&mut self) -> Result<(), String> {
        let mut gone = Vec::new();
        for (node, heard) in &mut self.heard {
            if heard.connected && is_stale(heard.last) {
                heard.connected = false;
                gone.push(node.clone());
            }
        }
        for node in gone {
            tracing::info!(node = %node, quiet_for = ?STALE, "node stopped publishing to NATS");
            if let Some(state) = self.nodes.disconnected(&node, None) {
                self.send(&self.merge, Arc::new(node_event(state))).await?;
            }
        }
        Ok(())
    }
}

fn is_stale(last: SystemTime) -> bool {
    SystemTime::now()
        .duration_since(last)
        .is_ok_and(|age| age > STALE)
}
