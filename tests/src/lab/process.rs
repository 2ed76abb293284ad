//! Processes inside a lab: a child that joins a cgroup and then a network
//! namespace between fork and exec (so everything it does, from its first
//! socket on, is attributed there), its stdout read as JSON lines as they
//! come, killed on drop.
//!
//! The child enters with `setns` on a namespace fd opened before the fork,
//! not with `ip netns exec` (which also remounts /sys in a new mount
//! namespace). The programs run are the `lab-client` binary of this package
//! (see [`LabClient`]) and the agent.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Netns, agent::collect_log};

/// Makes the child of `command` get SIGTERM when the thread that spawns it
/// ends, so an agent or collector never outlives a test killed from
/// outside (a harness timeout), where no `Drop` runs: an orphaned agent
/// would stay attached to the kernel's hooks under the next tests. Only
/// for children spawned from the test's own thread.
pub fn die_with_parent_thread(command: &mut Command) {
    // SAFETY: the closure makes one raw syscall between fork and exec; it
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawns `command` as a child that first moves itself into `cgroup` (if
/// given: writes `0` to its `cgroup.procs`) and then joins `netns`.
pub fn spawn_entered(command: &mut Command, netns: &Netns, cgroup: Option<&Path>) -> Result<Child> {
    let namespace = netns.open()?;
    let procs = cgroup
        .map(|cgroup| {
            let path = cgroup.join("cgroup.procs");
            File::options()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {} (needs root)", path.display()))
        })
        .transpose()?;
    let namespace_fd = namespace.as_raw_fd();
    let procs_fd = procs.as_ref().map(AsRawFd::as_raw_fd);
    // SAFETY: between fork and exec the closure only makes raw syscalls
    // (write, setns) on fds opened above, which stay open until spawn
    // returns, and reads errno; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = procs_fd {
                // "0" moves the writing process: the child itself.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setns(namespace_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| {
        format!(
            "starting {command:?} in netns {}{}",
            netns.name(),
            cgroup
                .map(|cgroup| format!(" and cgroup {}", cgroup.display()))
                .unwrap_or_default()
        )
    })?;
    drop((namespace, procs));
    Ok(child)
}

/// The `lab-client` binary. Integration tests find it with
/// `LabClient::new(env!("CARGO_BIN_EXE_lab-client"))`.
#[derive(Clone, Debug)]
pub struct LabClient {
    program: PathBuf,
}

impl LabClient {
    /// The binary at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// Starts `lab-client ARGS` in `netns`, inside `cgroup` if given.
    ///
    /// Subcommands (each prints JSON lines on stdout):
    /// - `connect ADDR [--timeout-ms N] [--http PATH]`: `{"outcome","errno","local","elapsed_ms",…}`
    ///   (with `--http`, the status line of `GET PATH` as `"status"`), then exits;
    /// - `hold ADDR`: `{"local"}` once the SYN is out, then holds the connect;
    /// - `connects ADDR --count N`: `{"started","local":[…]}`, then holds them;
    /// - `dns SERVER NAME [--type A|AAAA] [--tries N] [--timeout-ms N] [--tcp]`:
    ///   `{"outcome","rcode","tries","local",…}`, then exits;
    /// - `dns-server LISTEN --answer nxdomain|servfail|refused|a:IP|aaaa:IP|silent`:
    ///   `{"listening"}` once bound, then answers until killed;
    /// - `http-server LISTEN`: `{"listening"}` once bound, then answers
    ///   every request `200 OK` until killed.
    pub fn spawn_in(
        &self,
        netns: &Netns,
        cgroup: Option<&Path>,
        args: &[&str],
    ) -> Result<LabProcess> {
        LabProcess::spawn(&self.program, netns, cgroup, args)
    }

    /// Runs `lab-client ARGS` to its end (at most `limit`) and returns its
    /// last JSON line.
    pub fn run_in(
        &self,
        netns: &Netns,
        cgroup: Option<&Path>,
        args: &[&str],
        limit: Duration,
    ) -> Result<Value> {
        self.spawn_in(netns, cgroup, args)?.wait(limit)
    }
}

/// What a child printed so far.
#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: bool,
}

/// A process started in a lab namespace; killed (and reaped) on drop.
pub struct LabProcess {
    child: Child,
    what: String,
    stdout: Arc<(Mutex<Output>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

impl LabProcess {
    /// Starts `program ARGS` in `netns` (and `cgroup`), stdout and stderr
    /// collected.
    pub fn spawn(
        program: &Path,
        netns: &Netns,
        cgroup: Option<&Path>,
        args: &[&str],
    ) -> Result<Self> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_entered(&mut command, netns, cgroup)?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stderr = child.stderr.take().context("child stderr")?;
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let (output, changed) = &*sink;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut output = output.lock().unwrap_or_else(PoisonError::into_inner);
                output.lines.push(line);
                changed.notify_all();
            }
            output.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
            changed.notify_all();
        });
        let errors = Arc::new(Mutex::new(String::new()));
        collect_log(stderr, Arc::clone(&errors));
        Ok(Self {
            child,
            what: format!(
                "{} {} in {}",
                program
                    .file_name()
                    .map(|name| name.to_string_lossy())
                    .unwrap_or_default(),
                args.join(" "),
                netns.name()
            ),
            stdout: output,
            reader: Some(reader),
            stderr: errors,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its cgroup v2 path (leading `/`), from `/proc/<pid>/cgroup`.
    pub fn cgroup(&self) -> Result<String> {
        super::Cgroup::of_process(self.pid())
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lines
            .clone()
    }

    /// Waits (at most `limit`) for its first stdout line, while it keeps
    /// running, and parses it as JSON.
    pub fn first_line(&self, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        let (output, changed) = &*self.stdout;
        let mut output = output.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(line) = output.lines.first() {
                return parse(line, &self.what);
            }
            if output.closed {
                bail!(
                    "{} closed stdout without a line; stderr: {}",
                    self.what,
                    self.stderr()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} printed nothing within {limit:?}; stderr: {}",
                    self.what,
                    self.stderr()
                );
            }
            output = changed
                .wait_timeout(output, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits (at most `limit`, then kills it and fails) for it to exit
    /// successfully; returns its last stdout line as JSON.
    pub fn wait(&mut self, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                self.kill()?;
                bail!(
                    "{} did not finish within {limit:?}; stdout: {:?}; stderr: {}",
                    self.what,
                    self.lines(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if !status.success() {
            bail!(
                "{} exited with {status}; stdout: {:?}; stderr: {}",
                self.what,
                self.lines(),
                self.stderr()
            );
        }
        let lines = self.lines();
        let last = lines
            .last()
            .with_context(|| format!("{} printed nothing; stderr: {}", self.what, self.stderr()))?;
        parse(last, &self.what)
    }

    /// Kills it (SIGKILL) and reaps it; a process that already exited is
    /// no error.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child
                .kill()
                .with_context(|| format!("killing {}", self.what))?;
        }
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.what))?;
        Ok(())
    }

    /// True while it runs.
    pub fn running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }
}

fn parse(line: &str, what: &str) -> Result<Value> {
    serde_json::from_str(line)
        .with_context(|| format!("{what} printed a line that is not JSON: {line:?}"))
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
