//! `dropscope.v1.Collector/Push`: one stream per agent. The first message
//! names the node (Hello); batches follow, numbered by the agent; each is
//! stored once (what a reconnecting agent sends again is dropped by its
//! sequence number) and acknowledged. The node's connection state is kept
//! in [`Nodes`] and told in the stream as a `NodeState` event when it
//! changes: unavailable when the stream ends or the connection is cut,
//! error when the agent broke the protocol.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use dropscope_proto::v1::{self, collector_server, push_request::Message};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::{enrich::Ingest, nodes::Nodes};
use crate::convert;

/// The push service.
#[derive(Clone)]
pub struct Push {
    nodes: Arc<Nodes>,
    merge: mpsc::Sender<Arc<v1::Event>>,
    ingest: Arc<Ingest>,
    stopping: watch::Receiver<bool>,
}

impl Push {
    /// Stores into `merge` (the join, then the merge window in front of
    /// the hub) and keeps node states in `nodes`; events agents sent raw
    /// are completed by `ingest`; every stream ends
    /// when `stopping` turns true.
    pub fn new(
        nodes: Arc<Nodes>,
        merge: mpsc::Sender<Arc<v1::Event>>,
        ingest: Arc<Ingest>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            nodes,
            merge,
            ingest,
            stopping,
        }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<v1::PushAck, Status>> + Send>>;

#[tonic::async_trait]
impl collector_server::Collector for Push {
    type PushStream = AckStream;

    async fn push(
        &self,
        request: Request<Streaming<v1::PushRequest>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let mut incoming = request.into_inner();
        let hello = match incoming.message().await? {
            Some(v1::PushRequest {
                message: Some(Message::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a push stream must be a Hello naming the node",
                ));
            }
        };
        if hello.node.is_empty() {
            return Err(Status::invalid_argument("hello.node: empty"));
        }
        let (stored, state) = self.nodes.connected(&hello);
        tracing::info!(node = %hello.node, version = %hello.version, stored, "agent connected");
        let _ = self.merge.send(Arc::new(node_event(state))).await;
        let (acks, outgoing) = mpsc::channel(16);
        let stream = NodeStream {
            node: hello.node,
            stored,
            nodes: Arc::clone(&self.nodes),
            merge: self.merge.clone(),
            ingest: Arc::clone(&self.ingest),
            acks,
        };
        tokio::spawn(stream.run(incoming, self.stopping.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }
}

/// One agent's open stream.
struct NodeStream {
    node: String,
    /// Highest sequence stored from this agent run.
    stored: u64,
    nodes: Arc<Nodes>,
    merge: mpsc::Sender<Arc<v1::Event>>,
    ingest: Arc<Ingest>,
    acks: mpsc::Sender<Result<v1::PushAck, Status>>,
}

impl NodeStream {
    async fn run(
        mut self,
        mut incoming: Streaming<v1::PushRequest>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let error = loop {
            let message = tokio::select! {
                message = incoming.message() => message,
                _ = stopping.wait_for(|stopping| *stopping) => break None,
            };
            match message {
                Ok(Some(request)) => {
                    if let Err(error) = self.take(request).await {
                        break Some(error);
                    }
                }
                Ok(None) => break None,
                // The connection went away (the agent stopped or was
                // killed, the network was cut): unavailable, not a fault of
                // the agent's.
                Err(status) => {
                    tracing::debug!(node = %self.node, %status, "agent stream cut");
                    break None;
                }
            }
        };
        match &error {
            Some(error) => tracing::warn!(node = %self.node, %error, "agent stream failed"),
            None => tracing::info!(node = %self.node, "agent disconnected"),
        }
        if let Some(state) = self.nodes.disconnected(&self.node, error) {
            let _ = self.merge.send(Arc::new(node_event(state))).await;
        }
    }

    async fn take(&mut self, request: v1::PushRequest) -> Result<(), String> {
        match request.message {
            Some(Message::Batch(batch)) => {
                let mut new = 0;
                for (offset, mut event) in batch.events.into_iter().enumerate() {
                    let sequence = batch.first_sequence + offset as u64;
                    if sequence <= self.stored {
                        continue;
                    }
                    // A node speaks for itself only.
                    event.node.clone_from(&self.node);
                    self.ingest.take(&mut event).await;
                    self.merge
                        .send(Arc::new(event))
                        .await
                        .map_err(|_| "the collector is stopping".to_owned())?;
                    self.stored = sequence;
                    new += 1;
                }
                self.nodes.stored(&self.node, self.stored, new);
                self.acks
                    .send(Ok(v1::PushAck {
                        sequence: self.stored,
                    }))
                    .await
                    .map_err(|_| "the agent stopped reading acknowledgements".to_owned())
            }
            Some(Message::Status(status)) => {
                self.nodes.report(&self.node, status);
                Ok(())
            }
            Some(Message::Hello(_)) => Err("a second Hello in one stream".to_owned()),
            None => Ok(()),
        }
    }
}

/// A node state as an event of the collector's stream.
pub(super) fn node_event(state: v1::NodeState) -> v1::Event {
    v1::Event {
        node: state.node.clone(),
        time: Some(convert::timestamp(SystemTime::now())),
        kind: v1::EventKind::NodeState as i32,
        event: Some(v1::event::Event::NodeState(state)),
    }
}
