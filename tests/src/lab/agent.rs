//! The real `dropscope` binary (path in `DROPSCOPE_BIN`, set by
//! `cargo xtask test`), run as a child with JSON output (the proto3 JSON
//! mapping of `dropscope.v1.Event`); its events are collected as they
//! arrive and queried by the tests. Each agent serves its API on its own
//! Unix socket and its metrics on a port of its own. An agent runs in the
//! root namespace ([`Agent::start`]) or inside a lab node's namespace
//! ([`Agent::start_in`]), where its tc programs see the node's interfaces.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{
    Netns,
    process::{die_with_parent_thread, spawn_entered},
};

/// A running agent; killed on drop.
pub struct Agent {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
    socket: PathBuf,
    /// The namespace it runs in, when not the root one.
    netns: Option<Netns>,
}

/// Agents started by this process, for unique socket names.
static STARTED: AtomicU32 = AtomicU32::new(0);

/// One side of a tuple in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointView {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
}

/// The fields of a drop event the tests look at.
#[derive(Clone, Debug)]
pub struct DropView {
    /// Flow id.
    pub flow_id: u64,
    /// new, update or end.
    pub kind: String,
    /// The node the event names.
    pub node: String,
    /// Reason name.
    pub reason: String,
    /// Packet source.
    pub src: EndpointView,
    /// Packet destination.
    pub dst: EndpointView,
    /// Protocol name.
    pub protocol: String,
    /// Cumulative packets.
    pub packets: u64,
    /// TCP flags of the first packet.
    pub tcp_flags: Vec<String>,
    /// Conntrack original (src, dst).
    pub original: Option<(EndpointView, EndpointView)>,
    /// Conntrack reply (src, dst).
    pub reply: Option<(EndpointView, EndpointView)>,
    /// The whole event.
    pub raw: Value,
}

/// Appends every line `stream` prints to `log`, on a thread of its own,
/// until the stream closes.
pub fn collect_log(
    stream: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// A proto3 JSON 64-bit integer: a string (or a number from lenient writers).
pub fn json_u64(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.parse().ok(),
        other => other.as_u64(),
    }
}

impl DropView {
    /// The drop of one `dropscope.v1.Event` in its proto3 JSON form, with
    /// the enum prefixes taken off (`new`, `TCP`).
    pub fn parse(event: &Value) -> Option<Self> {
        let drop = event.get("drop")?;
        let endpoint = |value: &Value| -> Option<EndpointView> {
            Some(EndpointView {
                ip: value.get("ip")?.as_str()?.parse().ok()?,
                // proto3 JSON omits zero values.
                port: u16::try_from(value.get("port").and_then(Value::as_u64).unwrap_or(0)).ok()?,
            })
        };
        let pair = |tuple: Option<&Value>| -> Option<(EndpointView, EndpointView)> {
            let tuple = tuple?;
            Some((
                endpoint(tuple.get("source")?)?,
                endpoint(tuple.get("destination")?)?,
            ))
        };
        let packet = drop.get("packet")?;
        let conntrack = drop.get("conntrack");
        let kind = drop.get("kind")?.as_str()?;
        let protocol = packet.get("protocol")?.as_str()?;
        Some(Self {
            flow_id: json_u64(drop.get("flowId")?)?,
            kind: kind
                .strip_prefix("DROP_EVENT_KIND_")
                .unwrap_or(kind)
                .to_ascii_lowercase(),
            node: event.get("node")?.as_str()?.to_owned(),
            reason: drop.get("reason")?.get("name")?.as_str()?.to_owned(),
            src: endpoint(packet.get("source")?)?,
            dst: endpoint(packet.get("destination")?)?,
            protocol: match protocol.strip_prefix("PROTOCOL_").unwrap_or(protocol) {
                "ICMPV6" => "ICMPv6".to_owned(),
                other => other.to_owned(),
            },
            packets: json_u64(drop.get("packets")?)?,
            tcp_flags: drop
                .get("tcpFlags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|flag| flag.as_str().map(str::to_owned))
                .collect(),
            original: pair(conntrack.and_then(|ct| ct.get("original"))),
            reply: pair(conntrack.and_then(|ct| ct.get("reply"))),
            raw: drop.clone(),
        })
    }
}

impl Agent {
    /// Starts `dropscope agent --output json` with fast sampling (200 ms
    /// samples, 3 s idle timeout, unless `extra` sets them) plus `extra`
    /// arguments, and waits until it is attached.
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::start_with(None, extra)
    }

    /// Like [`Agent::start`], with the agent inside `netns` (a lab node):
    /// it joins the namespace between fork and exec, so its tc programs
    /// attach to that node's interfaces (pod veths, uplinks) and its
    /// metrics listen on that node's loopback ([`Agent::metrics_text`]
    /// reads them). Its API socket is a file, reachable from anywhere.
    pub fn start_in(netns: &Netns, extra: &[&str]) -> Result<Self> {
        Self::start_with(Some(netns), extra)
    }

    /// Like [`Agent::start`], with `environment` set for the agent (run
    /// through `env`, so the test process's own environment is untouched).
    pub fn start_with_env(environment: &[(&str, &str)], extra: &[&str]) -> Result<Self> {
        let mut wrapper = vec!["env".to_owned()];
        wrapper.extend(
            environment
                .iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
        Self::start_wrapped(None, &wrapper, extra)
    }

    fn start_with(netns: Option<&Netns>, extra: &[&str]) -> Result<Self> {
        Self::start_wrapped(netns, &[], extra)
    }

    /// Like [`Agent::start_in`] with the agent's command run by `wrapper`
    /// (a program and its arguments, the agent's path and arguments
    /// following them), as `setpriv` runs a command (see `privilege`).
    pub(super) fn start_wrapped(
        netns: Option<&Netns>,
        wrapper: &[String],
        extra: &[&str],
    ) -> Result<Self> {
        let mut defaults: Vec<String> = Vec::new();
        for (flag, value) in [("--sample-interval", "200ms"), ("--idle-timeout", "3s")] {
            if !extra.contains(&flag) {
                defaults.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        let binary = std::env::var("DROPSCOPE_BIN").context(
            "DROPSCOPE_BIN is not set: run the end-to-end tests with `cargo xtask test --e2e`",
        )?;
        let given = extra
            .iter()
            .position(|arg| *arg == "--listen")
            .and_then(|index| extra.get(index + 1))
            .and_then(|listen| listen.strip_prefix("unix:"));
        let socket = match given {
            Some(path) => PathBuf::from(path),
            None => std::env::temp_dir().join(format!(
                "dropscope-e2e-{}-{}.sock",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            )),
        };
        let listen = format!("unix:{}", socket.display());
        for (flag, value) in [
            ("--output", "json"),
            ("--listen", listen.as_str()),
            ("--metrics-listen", "127.0.0.1:0"),
            ("--node-name", "lab-node"),
        ] {
            if !extra.contains(&flag) {
                defaults.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        die_with_parent_thread(&mut command);
        command
            .args(["--log-level", "info", "agent"])
            .args(&defaults)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match netns {
            Some(netns) => spawn_entered(&mut command, netns, None)?,
            None => command
                .spawn()
                .with_context(|| format!("starting {binary}"))?,
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().context("agent stdout")?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(value);
                }
            }
        });
        collect_log(stderr, Arc::clone(&log));
        let mut agent = Self {
            child,
            events,
            log,
            socket,
            netns: netns.cloned(),
        };
        let started = Instant::now();
        while !agent.log().contains("dropscope agent running") {
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "the agent exited with {status} before attaching:\n{}",
                    agent.log()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the agent did not attach within 30 s:\n{}", agent.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(agent)
    }

    /// The agent's API address (`unix:PATH`), for `dropscope observe`.
    pub fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The agent's process id (for /proc: memory, file descriptors).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the agent serves metrics, from its log.
    pub fn metrics_address(&self) -> Result<SocketAddr> {
        let log = self.log();
        let line = log
            .lines()
            .find(|line| line.contains("metrics listening"))
            .context("the agent logged no metrics address")?;
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .context("no address= in the metrics line")?;
        address
            .parse()
            .with_context(|| format!("metrics address {address:?}"))
    }

    /// The namespace the agent runs in (`None`: the root one).
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// `GET /metrics` from the agent (from inside its namespace when it
    /// runs in one): the exposition text. Fails on a status other than 200.
    pub fn metrics_text(&self) -> Result<String> {
        let address = self.metrics_address()?;
        let (status, body) = match &self.netns {
            Some(netns) => netns.enter(move || http_get(address, "/metrics"))??,
            None => http_get(address, "/metrics")?,
        };
        if status != 200 {
            bail!("GET /metrics from {address}: status {status}\n{body}");
        }
        Ok(body)
    }

    /// Every event so far, as printed.
    pub fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every drop event so far for which `keep` holds, in arrival order.
    pub fn drops(&self, keep: impl Fn(&DropView) -> bool) -> Vec<DropView> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(DropView::parse)
            .filter(|drop| keep(drop))
            .collect()
    }

    /// The latest event of every flow for which `keep` holds, by flow id.
    pub fn flows(&self, keep: impl Fn(&DropView) -> bool) -> BTreeMap<u64, DropView> {
        let mut flows = BTreeMap::new();
        for drop in self.drops(keep) {
            flows.insert(drop.flow_id, drop);
        }
        flows
    }

    /// Every loss event so far.
    pub fn losses(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|event| event.get("loss").cloned())
            .collect()
    }

    /// Polls `check` until it returns `Some`, failing after `limit` with
    /// `what` and the events seen.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            if let Some(found) = check(self) {
                return Ok(found);
            }
            if started.elapsed() > limit {
                let seen = self
                    .events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len();
                bail!(
                    "timed out after {limit:?} waiting for {what}; {seen} events seen; agent log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the agent with SIGTERM and waits for a clean exit; returns its log.
    pub fn stop(mut self) -> Result<String> {
        self.stop_keeping_events()
    }

    /// Like [`Agent::stop`], keeping the agent's events for queries.
    pub fn stop_keeping_events(&mut self) -> Result<String> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader threads catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                if !status.success() {
                    bail!("the agent exited with {status}:\n{}", self.log());
                }
                return Ok(self.log());
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!(
                    "the agent did not stop within 15 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain HTTP/1.0 `GET path` from `address`: the status and the body.
fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending GET {path} to {address}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer to GET {path} from {address}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path} from {address}: no head: {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("GET {path} from {address}: no status: {head:?}"))?;
    Ok((status, body.to_owned()))
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
