//! NATS JetStream scale-out (`--nats URL` on agent and collector).
//!
//! Agents publish their stream to one JetStream stream ([`publish`]); any
//! number of collector replicas read it (`collector::jetstream`). The
//! stream is the cluster's history: a replica answers `observe --last` and
//! `--since` from the stream's tail, so history survives a collector
//! restart, and how much is kept is the stream's retention, the operator's
//! setting (created with [`StreamLimits`] when absent, never changed when
//! present).
//!
//! Subjects, under the stream's name (`dropscope` unless `--nats-stream`
//! says otherwise, so several clusters can share one NATS):
//! - `<stream>.v1.events.<node>`: the node's events (a protobuf
//!   `dropscope.v1.Event` each), numbered per agent run in the
//!   `Nats-Msg-Id` header so what an agent publishes again after a lost
//!   acknowledgement is stored once (JetStream's duplicate window);
//! - `<stream>.v1.status.<node>`: the agent's `GetStatusResponse` every
//!   5 s (the collector sums them and tells a node gone when they stop);
//! - `<stream>.v1.hello.<node>`: a `Hello` when an agent run starts;
//! - `<stream>.v1.joined`: cluster incidents a collector replica joined.
//!
//! `<node>` is the node name with every character other than ASCII
//! letters, digits and `-` written as `_` (NATS splits subjects at dots);
//! the event itself carries the exact name, and a collector refuses an
//! event whose node does not match its subject.

pub mod publish;
pub mod subjects;

use std::{path::PathBuf, time::Duration};

use async_nats::jetstream::{self, stream};

pub use self::subjects::Subjects;

/// How long a JetStream request (stream info, publish acknowledgement)
/// may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where NATS is and which stream to use.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// The server(s): `nats://host:4222`, `tls://host:4222`, comma
    /// separated for a cluster.
    pub url: String,
    /// The JetStream stream's name (also the first token of its subjects).
    pub stream: String,
    /// A NATS credentials file (JWT and NKey seed), if the server wants one.
    pub credentials: Option<PathBuf>,
    /// PEM CA bundle that signed the server's certificate (TLS required).
    pub tls_ca: Option<PathBuf>,
    /// The stream's limits when it has to be created.
    pub limits: StreamLimits,
}

/// The stream's settings when dropscope creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Messages older than this are removed.
    pub max_age: Duration,
    /// The stream keeps at most this many bytes (the oldest go first).
    pub max_bytes: u64,
    /// Copies in a JetStream cluster (1 to 5).
    pub replicas: usize,
    /// How long JetStream remembers message ids to drop a message
    /// published again.
    pub duplicate_window: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// What went wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error("--nats-stream {0:?}: a stream name is letters, digits, '-' and '_' only")]
    StreamName(String),
    /// A file named in the configuration could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached.
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        /// The servers tried.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The stream could not be found or created.
    #[error("JetStream stream {stream}: {message}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What the server said.
        message: String,
    },
}

impl NatsConfig {
    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), Error> {
        if subjects::valid_stream_name(&self.stream) {
            Ok(())
        } else {
            Err(Error::StreamName(self.stream.clone()))
        }
    }

    /// The subjects of this stream.
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.stream)
    }

    /// Connects as `name` (shown in the server's monitoring). Once
    /// connected, the client reconnects by itself for ever; this fails only
    /// when the first connection cannot be made.
    pub async fn connect(&self, name: &str) -> Result<jetstream::Context, Error> {
        let url = self.url.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(REQUEST_TIMEOUT)
            .max_reconnects(None)
            .event_callback(move |event| {
                log_event(&url, event);
                std::future::ready(())
            });
        if let Some(path) = &self.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|source| Error::File {
                    path: path.clone(),
                    source,
                })?;
        }
        if let Some(path) = &self.tls_ca {
            options = options
                .add_root_certificates(path.clone())
                .require_tls(true);
        }
        let client = options
            .connect(self.url.as_str())
            .await
            .map_err(|source| Error::Connect {
                url: self.url.clone(),
                source,
            })?;
        let mut context = jetstream::new(client);
        context.set_timeout(REQUEST_TIMEOUT);
        Ok(context)
    }

    /// The stream, created with [`StreamLimits`] when it does not exist
    /// (an existing stream's settings are left as the operator made them).
    pub async fn stream(&self, context: &jetstream::Context) -> Result<stream::Stream, Error> {
        let limits = self.limits;
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subjects().all()],
            max_age: limits.max_age,
            max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
            num_replicas: limits.replicas,
            duplicate_window: limits.duplicate_window,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            description: Some("dropscope: every node's drops and incidents".to_owned()),
            ..Default::default()
        };
        context
            .get_or_create_stream(config)
            .await
            .map_err(|error| Error::Stream {
                stream: self.stream.clone(),
                message: error.to_string(),
            })
    }
}

/// Logs what the client tells of its connection: losing and regaining it
/// once each, not every reconnect attempt.
fn log_event(url: &str, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => tracing::info!(nats = %url, "connected to NATS"),
        async_nats::Event::Disconnected => {
            tracing::warn!(nats = %url, "lost NATS; reconnecting");
        }
        async_nats::Event::ClientError(error) => {
            tracing::debug!(nats = %url, %error, "NATS connection attempt failed");
        }
        other => tracing::warn!(nats = %url, event = %other, "NATS"),
    }
}

/// Follows a client's connection, so a reader can tell a reconnect (and
/// set up its consumer again at once, instead of waiting for the lost
/// consumer's heartbeats to run out).
pub struct Connection {
    client: async_nats::Client,
    lost: bool,
}

impl Connection {
    /// Follows `context`'s client.
    pub fn of(context: &jetstream::Context) -> Self {
        Self {
            client: context.client(),
            lost: false,
        }
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// True once after the connection came back since the last call that
    /// saw it lost.
    pub fn came_back(&mut self) -> bool {
        if self.is_connected() {
            std::mem::take(&mut self.lost)
        } else {
            self.lost = true;
            false
        }
    }
}
