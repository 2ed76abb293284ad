//! Clients of an agent's API for the tests: a tonic `ObserverClient` dialed
//! over the agent's Unix socket (or TCP), streams read into vectors with a
//! deadline, and the real `dropscope observe` as a child whose JSON lines
//! are collected as they arrive. Also what a test needs to watch the agent
//! process itself (its pid, its resident memory).
//!
//! The tests are synchronous (the lab helpers block); they drive these
//! async helpers on a [`runtime`] of their own with `block_on`, and spawn
//! readers that must run beside the traffic onto it.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use dropscope_proto::v1::{
    DropEvent, Event, LossEvent, LossSource, ObserveRequest, event::Event as Payload,
    observer_client::ObserverClient,
};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_stream::StreamExt as _;
use tonic::{
    Streaming,
    transport::{Channel, Endpoint, Uri},
};

use super::DropView;

/// A multi-threaded runtime (two workers) for one test's async parts.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building a tokio runtime")
}

/// The endpoint [`connect_with`] dials through: its URI is only a label
/// (the connector dials the real address); set HTTP/2 options on it.
pub fn endpoint() -> Endpoint {
    Endpoint::from_static("http://dropscope.agent")
}

/// An Observer client of the agent at `server` (`unix:PATH` or
/// `HOST:PORT`, as `Agent::server` gives it).
pub async fn connect(server: &str) -> Result<ObserverClient<Channel>> {
    connect_with(server, endpoint()).await
}

/// Like [`connect`], with the HTTP/2 options of `endpoint` (window sizes,
/// timeouts). Each call opens a connection of its own.
pub async fn connect_with(server: &str, endpoint: Endpoint) -> Result<ObserverClient<Channel>> {
    Ok(ObserverClient::new(channel(server, endpoint).await?)
        .max_decoding_message_size(64 * 1024 * 1024))
}

/// A gRPC channel of its own to `server` (`unix:PATH` or `HOST:PORT`), for
/// any of the services served there (an agent's, a collector's).
pub async fn channel(server: &str, endpoint: Endpoint) -> Result<Channel> {
    let address = Address::parse(server)?;
    let connector = tower::service_fn(move |_: Uri| {
        let address = address.clone();
        async move { address.dial().await.map(TokioIo::new) }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .with_context(|| format!("connecting to the API at {server}"))
}

/// Where an agent's API is.
#[derive(Clone, Debug)]
enum Address {
    Unix(PathBuf),
    Tcp(String),
}

/// A dialed byte stream, Unix or TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Address {
    fn parse(server: &str) -> Result<Self> {
        match server.strip_prefix("unix:") {
            Some("") => bail!("{server:?}: empty socket path"),
            Some(path) => Ok(Self::Unix(PathBuf::from(path))),
            None if server.rsplit_once(':').is_some() => Ok(Self::Tcp(server.to_owned())),
            None => bail!("{server:?} is neither unix:PATH nor HOST:PORT"),
        }
    }

    async fn dial(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            Self::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Self::Tcp(address) => Box::new(tokio::net::TcpStream::connect(address.as_str()).await?),
        })
    }
}

/// Opens `Observe` with `follow` only (live events) on a connection of its
/// own made with `endpoint`; returns the client with the stream, as the
/// connection lives as long as both.
pub async fn follow(
    server: &str,
    endpoint: Endpoint,
) -> Result<(ObserverClient<Channel>, Streaming<Event>)> {
    let mut observer = connect_with(server, endpoint).await?;
    let stream = observer
        .observe(ObserveRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .context("opening a follow stream")?
        .into_inner();
    Ok((observer, stream))
}

/// Why the agent refused `request`: the status of the call, or of the
/// stream's first message (within `limit`). Fails when it was accepted.
pub async fn refusal(
    observer: &mut ObserverClient<Channel>,
    request: ObserveRequest,
    limit: Duration,
) -> Result<tonic::Status> {
    let mut stream = match observer.observe(request.clone()).await {
        Err(status) => return Ok(status),
        Ok(response) => response.into_inner(),
    };
    match tokio::time::timeout(limit, stream.message()).await {
        Ok(Err(status)) => Ok(status),
        Ok(Ok(first)) => bail!("the agent accepted {request:?} (first message: {first:?})"),
        Err(_) => bail!("the agent accepted {request:?} and sent nothing"),
    }
}

/// A follow stream read as fast as it comes by a task of a runtime; the
/// events read so far are shared with the test. The task stops on drop.
pub struct Drained {
    events: Arc<Mutex<Vec<Event>>>,
    ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drained {
    /// Starts reading `stream` (keeping `client`'s connection open) on
    /// `runtime`.
    pub fn spawn(
        runtime: &tokio::runtime::Runtime,
        client: ObserverClient<Channel>,
        mut stream: Streaming<Event>,
    ) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (sink, end) = (Arc::clone(&events), Arc::clone(&ended));
        let task = runtime.spawn(async move {
            let _connection = client;
            let why = loop {
                match stream.message().await {
                    Ok(Some(event)) => sink
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(event),
                    Ok(None) => break "the server ended the stream".to_owned(),
                    Err(status) => break format!("the stream failed: {status}"),
                }
            };
            *end.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        });
        Self {
            events,
            ended,
            task,
        }
    }

    /// Runs `look` on the events read so far (without copying them).
    pub fn with<T>(&self, look: impl FnOnce(&[Event]) -> T) -> T {
        look(&self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Why the stream ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Polls `check` on the events read so far until it returns `Some`;
    /// fails after `limit` naming `what`, or when the stream ends first.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&[Event]) -> Option<T>,
    ) -> Result<T> {
        wait_until(limit, what, || {
            if let Some(why) = self.ended() {
                return Some(Err(anyhow::anyhow!("{why} before {what}")));
            }
            self.with(&mut check).map(Ok)
        })?
    }

    /// Waits until no event has come for `quiet` (within `limit`); returns
    /// a copy of every event read.
    pub fn when_quiet(&self, quiet: Duration, limit: Duration) -> Result<Vec<Event>> {
        let mut seen = self.with(<[Event]>::len);
        let mut since = Instant::now();
        wait_until(limit, "the stream to go quiet", || {
            let now = self.with(<[Event]>::len);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
            (since.elapsed() >= quiet).then_some(())
        })?;
        Ok(self.with(<[Event]>::to_vec))
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit`
/// with `what`.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `stream` until the server ends it; fails if it has not ended
/// within `limit` (or ends with an error status).
pub async fn collect(stream: &mut Streaming<Event>, limit: Duration) -> Result<Vec<Event>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => bail!(
                "the stream did not end within {limit:?} ({} events read)",
                events.len()
            ),
            Ok(None) => return Ok(events),
            Ok(Some(event)) => events.push(event.context("the stream failed")?),
        }
    }
}

/// Reads `stream` until `done` holds for what was read so far; fails after
/// `limit` naming `what`, or when the stream ends first.
pub async fn collect_until(
    stream: &mut Streaming<Event>,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Result<Vec<Event>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = Vec::new();
    while !done(&events) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => bail!(
                "timed out after {limit:?} waiting for {what} ({} events read)",
                events.len()
            ),
            Ok(None) => bail!(
                "the stream ended before {what} ({} events read)",
                events.len()
            ),
            Ok(Some(event)) => events.push(event.context("the stream failed")?),
        }
    }
    Ok(events)
}

/// Sends a request that ends by itself (history, no follow) and reads the
/// whole answer within `limit`.
pub async fn history(
    client: &mut ObserverClient<Channel>,
    request: ObserveRequest,
    limit: Duration,
) -> Result<Vec<Event>> {
    let mut stream = client
        .observe(request)
        .await
        .context("the agent refused the request")?
        .into_inner();
    collect(&mut stream, limit).await
}

/// `time` as a protobuf timestamp (for `since` and `until`).
pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

/// A message in its proto3 JSON form (the form every output prints).
pub fn json(event: &Event) -> Value {
    serde_json::to_value(event)
        .unwrap_or_else(|error| Value::String(format!("cannot serialize: {error}")))
}

/// The drop a message carries; `None` for a loss.
pub fn drop_of(event: &Event) -> Option<&DropEvent> {
    match &event.event {
        Some(Payload::Drop(drop)) => Some(drop),
        _ => None,
    }
}

/// The loss a message carries; `None` for a drop.
pub fn loss_of(event: &Event) -> Option<&LossEvent> {
    match &event.event {
        Some(Payload::Loss(loss)) => Some(loss),
        _ => None,
    }
}

/// True for a loss told to this subscriber only (it read too slowly): not
/// an event of the agent's history, unlike kernel and pipeline losses.
pub fn is_subscriber_loss(event: &Event) -> bool {
    loss_of(event).is_some_and(|loss| loss.source == LossSource::Subscriber as i32)
}

/// The drop of a message as the tests look at it; `None` for a loss.
pub fn drop_view(event: &Event) -> Option<DropView> {
    DropView::parse(&json(event))
}

/// The `dropscope` binary under test (`DROPSCOPE_BIN`).
fn binary() -> Result<String> {
    std::env::var("DROPSCOPE_BIN")
        .context("DROPSCOPE_BIN is not set: run the end-to-end tests with `cargo xtask test --e2e`")
}

/// `dropscope observe` running as a child; its stdout lines (JSON with
/// `-o json`) are collected as they arrive. Killed on drop.
pub struct ObserveChild {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl ObserveChild {
    /// Starts `dropscope observe --server SERVER ARGS`.
    pub fn start(server: &str, args: &[&str]) -> Result<Self> {
        let binary = binary()?;
        let mut child = Command::new(&binary)
            .args(["observe", "--server", server])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {binary} observe"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().context("observe stdout")?;
        let stderr = child.stderr.take().context("observe stderr")?;
        let (line_sink, garbage_sink) = (Arc::clone(&lines), Arc::clone(&log));
        let out = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => line_sink
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(value),
                    Err(_) => {
                        let mut log = garbage_sink.lock().unwrap_or_else(PoisonError::into_inner);
                        log.push_str("stdout, not JSON: ");
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            }
        });
        let err = super::agent::collect_log(stderr, Arc::clone(&log));
        Ok(Self {
            child,
            lines,
            log,
            readers: vec![out, err],
        })
    }

    /// Every JSON line printed so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every drop printed so far for which `keep` holds.
    pub fn drops(&self, keep: impl Fn(&DropView) -> bool) -> Vec<DropView> {
        self.lines()
            .iter()
            .filter_map(DropView::parse)
            .filter(|drop| keep(drop))
            .collect()
    }

    /// Its stderr so far, and any stdout line that was not JSON.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Polls `check` until it returns `Some`, failing after `limit` with
    /// `what`, the lines seen and the log; also fails when the child
    /// exits first.
    pub fn wait_for<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            if let Some(found) = check(self) {
                return Ok(found);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "dropscope observe exited with {status} before {what}:\n{}",
                    self.log()
                );
            }
            if started.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {what}; {} lines printed; observe log:\n{}",
                    self.lines().len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the child to exit by itself (a request without
    /// `--follow`) within `limit`; returns every JSON line it printed.
    /// Fails on a non-zero exit, with its stderr.
    pub fn finish(mut self, limit: Duration) -> Result<Vec<Value>> {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if started.elapsed() > limit {
                bail!(
                    "dropscope observe did not exit within {limit:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if !status.success() {
            bail!("dropscope observe exited with {status}:\n{}", self.log());
        }
        Ok(self.lines())
    }
}

impl Drop for ObserveChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dropscope observe --server SERVER ARGS` to its end (within
/// `limit`) and returns the JSON lines it printed.
pub fn observe_once(server: &str, args: &[&str], limit: Duration) -> Result<Vec<Value>> {
    ObserveChild::start(server, args)?.finish(limit)
}

/// A process's resident memory (`VmRSS` of `/proc/PID/status`), in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}
