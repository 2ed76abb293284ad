//! A real `nats-server` with JetStream (Debian's package), one per test:
//! its own loopback port and its own store directory, so tests run in
//! parallel; stopped and restarted on the same port and store to play an
//! outage; killed and its store removed on drop.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::agent::collect_log;

/// How long the server may take to accept connections.
const READY: Duration = Duration::from_secs(20);

/// A running (or stopped) JetStream server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    log: Arc<Mutex<String>>,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free loopback port with a new store.
    pub fn start() -> Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("finding a free port for nats-server")?
            .port();
        let store =
            std::env::temp_dir().join(format!("dropscope-nats-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let mut server = Self {
            child: None,
            port,
            store,
            log: Arc::new(Mutex::new(String::new())),
        };
        server.restart()?;
        Ok(server)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts it again on the same port and store (after [`Self::stop`]),
    /// and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("nats-server is already running");
        }
        let mut command = Command::new("nats-server");
        super::process::die_with_parent_thread(&mut command);
        let mut child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context(
                "starting nats-server (apt package nats-server; `cargo xtask test` installs it)",
            )?;
        let stderr = child.stderr.take().context("nats-server stderr")?;
        collect_log(stderr, Arc::clone(&self.log));
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        while !self.log().contains("Server is ready") || TcpStream::connect(address).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("nats-server exited with {status}:\n{}", self.log());
            }
            if started.elapsed() > READY {
                bail!(
                    "nats-server was not ready within {READY:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s): clients lose it.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = i32::try_from(child.id()).context("pid")?;
        // SAFETY: kill(2) on the server this value started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                child.kill()?;
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A loopback port inside another network namespace that leads to the
/// server: the listening socket is made in that namespace, the connections
/// to the server in this one (a socket stays in the namespace it was made
/// in), so an agent in a lab's node namespace reaches a server on this
/// namespace's loopback. Stops accepting, and cuts what it relays, when
/// dropped.
pub struct PortInNetns {
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl PortInNetns {
    /// A port in `netns` relaying to `server`.
    pub fn new(server: &NatsServer, netns: &super::Netns) -> Result<Self> {
        let listener = netns
            .enter(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?
            .context("listening inside the namespace")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (stopping, opened) = (Arc::clone(&stop), Arc::clone(&open));
        std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        let _ = inside.set_nonblocking(false);
                        if let Ok(outside) = TcpStream::connect(target) {
                            relay(inside, outside, &opened);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Self {
            url: format!("nats://127.0.0.1:{port}"),
            stop,
            open,
        })
    }

    /// The server's URL inside the namespace.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

/// Copies both ways between `a` and `b` on two threads, keeping clones in
/// `open` to cut them.
fn relay(a: TcpStream, b: TcpStream, open: &Mutex<Vec<TcpStream>>) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    if let (Ok(a3), Ok(b3)) = (a.try_clone(), b.try_clone()) {
        open.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend([a3, b3]);
    }
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

impl Drop for PortInNetns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for stream in self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
