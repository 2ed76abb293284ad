//! `observe --since` further back than a replica's `--history`, answered
//! from the stream: an ordered consumer from the stream's publish time
//! [`SLACK`] before `since` up to the stream's last message when asked,
//! keeping the node events and joined incidents whose own time lies in the
//! range asked for. What the stream no longer holds (its retention) is not
//! there to send.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use dropscope_proto::v1;
use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::{
    convert,
    nats::{
        NatsConfig, Subjects,
        subjects::{Subject, node_token},
    },
    serve::archive::Archive,
};

/// How far before `since` (in the stream's publish time) reading starts:
/// an event is published after it happened, and node clocks differ from
/// the NATS server's.
const SLACK: Duration = Duration::from_secs(60);
/// Events queued for the observe stream before reading waits for it.
const QUEUE: usize = 256;

/// The stream as the archive of a replica's history.
pub struct StreamArchive {
    config: NatsConfig,
    subjects: Subjects,
    context: Arc<OnceLock<jetstream::Context>>,
}

impl StreamArchive {
    /// Reads `config`'s stream through the context `context` holds once
    /// the replica connected.
    pub fn new(config: NatsConfig, context: Arc<OnceLock<jetstream::Context>>) -> Self {
        Self {
            subjects: config.subjects(),
            config,
            context,
        }
    }

    async fn read(
        config: NatsConfig,
        subjects: Subjects,
        context: jetstream::Context,
        since: SystemTime,
        before: SystemTime,
        sender: &mpsc::Sender<Result<v1::Event, String>>,
    ) -> Result<(), String> {
        let stream = config
            .stream(&context)
            .await
            .map_err(|error| error.to_string())?;
        let last = stream
            .get_info()
            .await
            .map_err(|error| error.to_string())?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(());
        }
        let start = time::OffsetDateTime::from(since.checked_sub(SLACK).unwrap_or(since));
        let mut messages = super::ordered(
            &config,
            &context,
            DeliverPolicy::ByStartTime { start_time: start },
        )
        .await?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|error| error.to_string())?;
            let info = message.info().map_err(|error| error.to_string())?;
            let (sequence, published) = (info.stream_sequence, SystemTime::from(info.published));
            let keep = match subjects.classify(message.subject.as_str()) {
                Some(Subject::Events(token)) => Some(Some(token)),
                Some(Subject::Joined) => Some(None),
                _ => None,
            };
            if let Some(token) = keep
                && let Ok(event) = v1::Event::decode(&message.payload[..])
                && token.is_none_or(|token| node_token(&event.node) == token)
                && let Some(time) = event.time.as_ref().and_then(convert::time_of)
                && since <= time
                && time < before
                && sender.send(Ok(event)).await.is_err()
            {
                return Ok(());
            }
            if sequence >= last || published >= before + SLACK {
                return Ok(());
            }
        }
        Err("the stream's consumer ended".to_owned())
    }
}

impl Archive for StreamArchive {
    fn replay(
        &self,
        since: SystemTime,
        before: SystemTime,
    ) -> mpsc::Receiver<Result<v1::Event, String>> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (config, subjects) = (self.config.clone(), self.subjects.clone());
        let Some(context) = self.context.get().cloned() else {
            let _ = sender.try_send(Err("not connected to NATS yet".to_owned()));
            return receiver;
        };
        tokio::spawn(async move {
            if let Err(error) = Self::read(config, subjects, context, since, before, &sender).await
            {
                let _ = sender.send(Err(error)).await;
            }
        });
        receiver
    }
}
