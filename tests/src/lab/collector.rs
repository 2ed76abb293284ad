//! The real `dropscope collector` (the binary in `DROPSCOPE_BIN`) as a
//! child: started on a Unix socket ([`SocketPath`]) or on `127.0.0.1:0`
//! (the bound address read from its log), its log collected, killed on
//! drop. Agents push to it with `Agent::start(&["--collector",
//! &collector.server(), …])`; tests read it with the same clients as an
//! agent ([`super::client`]) and look at its nodes with [`status`] and
//! [`node_state_of`]. A [`Relay`] between agents and a collector lets a
//! test hold the collector's replies and cut the connections, so an agent
//! reconnects with events the collector stored but never acknowledged.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use dropscope_proto::v1::{
    Event, GetStatusRequest, GetStatusResponse, NodeConnection, NodeState, ObserveRequest,
    event::Event as Payload, observer_client::ObserverClient,
};
use tonic::{Streaming, transport::Channel};

use super::{agent::collect_log, client};

/// Socket paths made by this process, for unique names.
static SOCKETS: AtomicU32 = AtomicU32::new(0);

/// A unique Unix socket path in the temporary directory, removed when
/// dropped. Outlives the collectors started on it, so a test can start a
/// second collector at the same address.
pub struct SocketPath(PathBuf);

impl SocketPath {
    /// `dropscope-e2e-<what>-<pid>-<n>.sock`; nothing is created.
    pub fn new(what: &str) -> Self {
        Self(std::env::temp_dir().join(format!(
            "dropscope-e2e-{what}-{}-{}.sock",
            std::process::id(),
            SOCKETS.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// The address, `unix:PATH` (for `--listen`, `--collector`, `--server`).
    pub fn listen(&self) -> String {
        format!("unix:{}", self.0.display())
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running `dropscope collector`; killed (SIGKILL) on drop.
pub struct Collector {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Where it listens, as it logged it (`unix:PATH` or `IP:PORT`).
    server: String,
}

impl Collector {
    /// Starts `dropscope collector --listen LISTEN EXTRA…` and waits (at
    /// most 30 s) until it logs `dropscope collector running`.
    pub fn start(listen: &str, extra: &[&str]) -> Result<Self> {
        let binary = std::env::var("DROPSCOPE_BIN").context(
            "DROPSCOPE_BIN is not set: run the end-to-end tests with `cargo xtask test --e2e`",
        )?;
        let mut command = Command::new(&binary);
        super::process::die_with_parent_thread(&mut command);
        let mut child = command
            .args(["--log-level", "info", "collector", "--listen", listen])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {binary} collector"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("collector stderr")?;
        collect_log(stderr, Arc::clone(&log));
        let mut collector = Self {
            child,
            log,
            server: String::new(),
        };
        let started = Instant::now();
        collector.server = loop {
            if let Some(server) = collector.logged_listen()? {
                break server;
            }
            if let Some(status) = collector.child.try_wait()? {
                bail!(
                    "the collector exited with {status} before it was running:\n{}",
                    collector.log()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the collector was not running within 30 s:\n{}",
                    collector.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(collector)
    }

    /// The `listen=` of the `dropscope collector running` line, once logged.
    fn logged_listen(&self) -> Result<Option<String>> {
        let log = self.log();
        let Some(line) = log
            .lines()
            .find(|line| line.contains("dropscope collector running"))
        else {
            return Ok(None);
        };
        let listen = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("listen="))
            .with_context(|| format!("no listen= in {line:?}"))?;
        Ok(Some(listen.to_owned()))
    }

    /// Its address (`unix:PATH` or `IP:PORT`, the bound port when 0 was
    /// asked for), for `--collector` and `--server`.
    pub fn server(&self) -> String {
        self.server.clone()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its Prometheus metrics (`GET /metrics`), when it was started with
    /// `--metrics-listen`: the address is read from its log.
    pub fn metrics_text(&self) -> Result<String> {
        let log = self.log();
        let line = log
            .lines()
            .find(|line| line.contains("metrics listening"))
            .context("the collector logged no metrics address (start it with --metrics-listen)")?;
        let address: SocketAddr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .with_context(|| format!("no address= in {line:?}"))?
            .parse()
            .with_context(|| format!("the address in {line:?}"))?;
        let mut stream = TcpStream::connect(address)
            .with_context(|| format!("connecting to the metrics endpoint {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("not an HTTP response: {response:?}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET /metrics: {head}");
        }
        Ok(body.to_owned())
    }

    /// Stops it with SIGTERM and waits (at most `limit`) for a clean exit;
    /// returns its log. When it is still running after `limit`, kills it
    /// and fails with its log.
    pub fn stop(mut self, limit: Duration) -> Result<String> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader thread catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                if !status.success() {
                    bail!("the collector exited with {status}:\n{}", self.log());
                }
                return Ok(self.log());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the collector did not stop within {limit:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGSTOP) without closing anything: connections stay open,
    /// nothing is read or answered, until it is killed.
    pub fn freeze(&self) -> Result<()> {
        // SAFETY: kill on our own child's pid.
        if unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) } != 0 {
            return Err(std::io::Error::last_os_error()).context("SIGSTOP to the collector");
        }
        Ok(())
    }

    /// Kills it (SIGKILL) and reaps it; returns its log.
    pub fn kill(mut self) -> Result<String> {
        self.child.kill().context("killing the collector")?;
        self.child.wait().context("reaping the collector")?;
        std::thread::sleep(Duration::from_millis(100));
        Ok(self.log())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The collector's (or an agent's) `GetStatus`.
pub async fn status(server: &str) -> Result<GetStatusResponse> {
    let mut observer = client::connect(server).await?;
    Ok(observer
        .get_status(GetStatusRequest {})
        .await
        .with_context(|| format!("GetStatus of {server}"))?
        .into_inner())
}

/// The state of `node` in a status, if listed.
pub fn node_in<'a>(status: &'a GetStatusResponse, node: &str) -> Option<&'a NodeState> {
    status.nodes.iter().find(|state| state.node == node)
}

/// The node state a message carries; `None` for drops, losses, incidents.
pub fn node_state_of(event: &Event) -> Option<&NodeState> {
    match &event.event {
        Some(Payload::NodeState(state)) => Some(state),
        _ => None,
    }
}

/// True when `event` tells that `node`'s agent is no longer connected
/// (its stream closed or failed).
pub fn tells_gone(event: &Event, node: &str) -> bool {
    node_state_of(event).is_some_and(|state| {
        state.node == node
            && [NodeConnection::Unavailable, NodeConnection::Error]
                .map(|connection| connection as i32)
                .contains(&state.connection)
    })
}

/// Opens `Observe` with everything the history holds, then live events
/// (history + follow): a reader opened after the agents connected still
/// sees what they pushed before. Returns the client with the stream.
pub async fn follow_from_oldest(
    server: &str,
) -> Result<(ObserverClient<Channel>, Streaming<Event>)> {
    let mut observer = client::connect(server).await?;
    let stream = observer
        .observe(ObserveRequest {
            number: u64::from(u32::MAX),
            follow: true,
            ..Default::default()
        })
        .await
        .context("opening a history + follow stream")?
        .into_inner();
    Ok((observer, stream))
}

/// Everything the history holds now (a request that ends by itself).
pub async fn everything(server: &str, limit: Duration) -> Result<Vec<Event>> {
    let mut observer = client::connect(server).await?;
    client::history(
        &mut observer,
        ObserveRequest {
            number: u64::from(u32::MAX),
            ..Default::default()
        },
        limit,
    )
    .await
}

/// One end of a relayed connection: the collector's Unix socket or TCP port.
enum Upstream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Upstream {
    fn connect(server: &str) -> std::io::Result<Self> {
        Ok(match server.strip_prefix("unix:") {
            Some(path) => Self::Unix(UnixStream::connect(path)?),
            None => Self::Tcp(TcpStream::connect(server)?),
        })
    }

    fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Unix(stream) => Self::Unix(stream.try_clone()?),
            Self::Tcp(stream) => Self::Tcp(stream.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Self::Unix(stream) => stream.shutdown(Shutdown::Both),
            Self::Tcp(stream) => stream.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Upstream {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(stream) => stream.read(buffer),
            Self::Tcp(stream) => stream.read(buffer),
        }
    }
}

impl Write for Upstream {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(stream) => stream.write(buffer),
            Self::Tcp(stream) => stream.write(buffer),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Unix(stream) => stream.flush(),
            Self::Tcp(stream) => stream.flush(),
        }
    }
}

/// One relayed connection.
struct Link {
    agent: TcpStream,
    upstream: Upstream,
    /// While set, what the collector sends is read and thrown away.
    held: Arc<AtomicBool>,
}

impl Link {
    fn cut(&self) {
        let _ = self.agent.shutdown(Shutdown::Both);
        self.upstream.shutdown();
    }
}

/// What the relay's threads share with the test.
#[derive(Default)]
struct Links {
    open: Mutex<Vec<Link>>,
    closed: AtomicBool,
}

/// A byte relay on `127.0.0.1:0` in front of a collector, for agents'
/// `--collector`: forwards both ways until the test holds the collector's
/// replies ([`Relay::hold_replies`]: the agent's batches still reach the
/// collector, its acknowledgements never reach the agent) or cuts the
/// connections ([`Relay::cut`]). Connections made after a cut are relayed
/// normally. Cuts everything when dropped.
pub struct Relay {
    address: SocketAddr,
    links: Arc<Links>,
}

impl Relay {
    /// Relays `127.0.0.1:<some port>` to `server` (`unix:PATH` or `IP:PORT`).
    pub fn start(server: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the relay")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let links = Arc::new(Links::default());
        let shared = Arc::clone(&links);
        let server = server.to_owned();
        std::thread::spawn(move || {
            while !shared.closed.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((agent, _)) => {
                        if let Ok(link) = relay(agent, &server) {
                            shared
                                .open
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(link);
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Self { address, links })
    }

    /// Its address (`127.0.0.1:PORT`), for `--collector`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// From now on, on the open connections, what the collector sends is
    /// thrown away.
    pub fn hold_replies(&self) {
        for link in self.open().iter() {
            link.held.store(true, Ordering::Relaxed);
        }
    }

    /// Closes every open connection, both ways.
    pub fn cut(&self) {
        for link in self.open().drain(..) {
            link.cut();
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        self.links
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.links.closed.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Connects `agent` to `server` with a thread per direction.
fn relay(agent: TcpStream, server: &str) -> Result<Link> {
    agent.set_nonblocking(false)?;
    let upstream = Upstream::connect(server).with_context(|| format!("relaying to {server}"))?;
    let held = Arc::new(AtomicBool::new(false));
    let (mut from_agent, mut to_upstream) = (agent.try_clone()?, upstream.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_agent, &mut to_upstream);
        to_upstream.shutdown();
    });
    let (mut from_upstream, mut to_agent) = (upstream.try_clone()?, agent.try_clone()?);
    let holding = Arc::clone(&held);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from_upstream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) if holding.load(Ordering::Relaxed) => {}
                Ok(read) => {
                    if to_agent.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_agent.shutdown(Shutdown::Both);
    });
    Ok(Link {
        agent,
        upstream,
        held,
    })
}
