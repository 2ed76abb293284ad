//! Named network namespaces (`ip netns`), commands inside them, and running
//! a closure inside one (a thread that joins it with setns).

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// A named network namespace; [`Netns::delete`] removes it.
#[derive(Clone, Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (deleting a leftover of the same name first).
    pub fn create(name: &str) -> Result<Self> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run_command(Command::new("ip").args(["netns", "add", name]))
            .with_context(|| format!("creating netns {name} (the e2e tests need root)"))?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind mount, `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Opens its bind mount: an fd to `setns(…, CLONE_NEWNET)` with
    /// (closed on exec).
    pub fn open(&self) -> Result<File> {
        let path = self.path();
        File::open(&path).with_context(|| format!("opening {}", path.display()))
    }

    /// Runs `ip ARGS` inside it.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        run_command(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a command inside it.
    pub fn run(&self, args: &[&str]) -> Result<()> {
        run_command(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// The sockets of this namespace in SYN-SENT to `to`, as `ss` lists
    /// them (one line each).
    pub fn syn_sent(&self, to: std::net::SocketAddr) -> Result<Vec<String>> {
        let listing = self.run_with_input(
            &[
                "ss",
                "-Htn",
                "state",
                "syn-sent",
                "dst",
                &to.ip().to_string(),
            ],
            "",
        )?;
        Ok(listing
            .lines()
            .filter(|line| line.contains(&to.to_string()))
            .map(str::to_owned)
            .collect())
    }

    /// Runs a command inside it with `input` on stdin; returns stdout.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write as _;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {args:?} in {}", self.name))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "{args:?} in {} failed: {}\ninput:\n{input}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `work` on a thread that has joined this namespace: sockets it
    /// opens live there.
    pub fn enter<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let file = self.open()?;
        let handle = std::thread::spawn(move || {
            // SAFETY: setns on a namespace fd we own, for this thread only.
            let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if joined != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(work())
        });
        match handle.join() {
            Ok(result) => result.with_context(|| format!("setns into {}", self.name)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Deletes it (and everything in it); errors are ignored.
    pub fn delete(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn run_command(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
