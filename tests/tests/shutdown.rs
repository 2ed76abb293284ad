//! End-to-end: how the agent stops. A closed stdout ends it cleanly (as a
//! command whose output pipe closed); a stop stuck on a reader that does not
//! read ends at `--shutdown-timeout`; a second signal exits at once. Each
//! test runs its own agent with stdout on a pipe it controls, and makes its
//! own drops (datagrams to a closed loopback port of its own).

use std::{
    io::Read as _,
    net::UdpSocket,
    os::unix::process::ExitStatusExt as _,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

/// Starts `dropscope agent` with stdout on a pipe and stderr captured.
fn agent(name: &str, extra: &[&str]) -> Result<Child> {
    let binary = std::env::var("DROPSCOPE_BIN").context(
        "DROPSCOPE_BIN is not set: run the end-to-end tests with `cargo xtask test --e2e`",
    )?;
    let socket = format!("/tmp/dropscope-shutdown-{}-{name}.sock", std::process::id());
    let _ = std::fs::remove_file(&socket);
    let mut args = vec![
        "agent",
        "--listen",
        &socket,
        "--metrics-listen",
        "none",
        "--node-name",
        "shutdown-test",
        "--no-tc",
    ];
    let listen = format!("unix:{socket}");
    args[2] = &listen;
    args.extend_from_slice(extra);
    Command::new(binary)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the agent")
}

/// Waits until the agent's stderr says it runs (or it exits), returning
/// the log so far.
fn wait_running(child: &mut Child) -> Result<String> {
    let stderr = child.stderr.as_mut().context("stderr is piped")?;
    let mut log = Vec::new();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    while !String::from_utf8_lossy(&log).contains("dropscope agent running") {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the agent did not start: {}",
            String::from_utf8_lossy(&log)
        );
        let read = stderr.read(&mut buffer)?;
        if read == 0 {
            bail!("the agent exited: {}", String::from_utf8_lossy(&log));
        }
        log.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8_lossy(&log).into_owned())
}

/// Sends datagrams from `flows` source ports to a closed loopback port:
/// as many dropped flows (NO_SOCKET), each an event of about a kilobyte.
fn drops(flows: usize) -> Result<()> {
    let closed = UdpSocket::bind("127.0.0.1:0")?;
    let port = closed.local_addr()?.port();
    drop(closed);
    for _ in 0..flows {
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        sender.send_to(b"dropscope shutdown test", ("127.0.0.1", port))?;
    }
    Ok(())
}

/// Waits for the process to exit within `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Result<(ExitStatus, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, started.elapsed()));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            bail!("the agent did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rest_of_log(child: &mut Child, mut log: String) -> String {
    if let Some(stderr) = child.stderr.as_mut() {
        let _ = stderr.read_to_string(&mut log);
    }
    log
}

fn signal(child: &Child, signal: i32) -> Result<()> {
    // SAFETY: kill(2) on our own child's pid.
    let result = unsafe { libc::kill(child.id() as i32, signal) };
    ensure!(result == 0, "kill: {}", std::io::Error::last_os_error());
    Ok(())
}

#[test]
fn a_closed_stdout_stops_the_agent_cleanly() -> Result<()> {
    let mut child = agent("closed", &["--output", "compact"])?;
    let log = wait_running(&mut child)?;
    // The reader goes away.
    drop(child.stdout.take());
    let started = Instant::now();
    let status = loop {
        drops(1)?;
        if let Some(status) = child.try_wait()? {
            break status;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the agent kept running with its stdout closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = rest_of_log(&mut child, log);
    ensure!(status.success(), "exit {status}: {log}");
    ensure!(log.contains("stdout closed: stopping the agent"), "{log}");
    ensure!(
        log.contains("detached; kernel statistics"),
        "a full stop: {log}"
    );
    Ok(())
}

/// An agent whose stdout nobody reads, with more output queued than the
/// pipe holds: its stop waits on that reader.
fn stuck_agent(name: &str, extra: &[&str]) -> Result<(Child, String)> {
    let mut args = vec!["--output", "json", "--sample-interval", "100ms"];
    args.extend_from_slice(extra);
    let mut child = agent(name, &args)?;
    let log = wait_running(&mut child)?;
    // ~300 events of ~1 KB: more than a 64 KiB pipe holds.
    drops(300)?;
    std::thread::sleep(Duration::from_millis(500));
    Ok((child, log))
}

#[test]
fn a_stuck_stop_ends_at_the_shutdown_deadline() -> Result<()> {
    let (mut child, log) = stuck_agent("deadline", &["--shutdown-timeout", "1s"])?;
    signal(&child, libc::SIGTERM)?;
    let (status, took) = exit_within(&mut child, Duration::from_secs(15))?;
    let log = rest_of_log(&mut child, log);
    ensure!(status.code() == Some(1), "exit {status}: {log}");
    ensure!(
        took < Duration::from_secs(4),
        "a 1 s deadline, and the stdout drain alone waits 5 s: took {took:?}"
    );
    ensure!(log.contains("did not stop in time"), "{log}");
    Ok(())
}

#[test]
fn a_second_signal_exits_at_once() -> Result<()> {
    let (mut child, log) = stuck_agent("second", &[])?;
    signal(&child, libc::SIGTERM)?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        child.try_wait()?.is_none(),
        "the first stop waits on the unread stdout"
    );
    let second = Instant::now();
    signal(&child, libc::SIGINT)?;
    let (status, _) = exit_within(&mut child, Duration::from_secs(15))?;
    let took = second.elapsed();
    let log = rest_of_log(&mut child, log);
    ensure!(
        status.code() == Some(130) && status.signal().is_none(),
        "exit {status}: {log}"
    );
    ensure!(
        took < Duration::from_secs(2),
        "took {took:?} after the second signal"
    );
    ensure!(log.contains("second signal: exiting now"), "{log}");
    Ok(())
}
