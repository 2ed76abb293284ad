//! Running commands: echo what runs, fail with what failed.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `program args…` in the workspace root, inheriting stdio.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    run_with(Command::new(program).args(args))
}

/// Runs a prepared command (its current directory defaults to the root).
pub fn run_with(command: &mut Command) -> Result<()> {
    if command.get_current_dir().is_none() {
        command.current_dir(crate::toolchain::root());
    }
    eprintln!("xtask: $ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(command));
    }
    Ok(())
}

/// A slow step being done: says what and how long it usually takes when
/// it starts, and how long it took when it ends (dropped).
pub struct Step {
    what: String,
    started: std::time::Instant,
}

impl Step {
    /// Announces `what` (with `usually`, e.g. "a minute").
    pub fn start(what: impl Into<String>, usually: &str) -> Self {
        let what = what.into();
        eprintln!("xtask: {what} (one-time; usually {usually}) ...");
        Self {
            what,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        eprintln!(
            "xtask: {} took {:.0?}",
            self.what,
            std::time::Duration::from_secs(self.started.elapsed().as_secs())
        );
    }
}

/// Totals of `cargo test` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
}

/// Runs a `cargo test` command, echoing its output, and adds its
/// `test result:` lines to `totals`.
pub fn run_tests(command: &mut Command, totals: &mut TestTotals) -> Result<()> {
    use std::io::{BufRead, BufReader};
    if command.get_current_dir().is_none() {
        command.current_dir(crate::toolchain::root());
    }
    eprintln!("xtask: $ {}", describe(command));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                totals.passed += count(result, " passed");
                totals.failed += count(result, " failed");
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed with {status}", describe(command));
    }
    Ok(())
}

/// The number before `label` in a `test result:` line.
fn count(result: &str, label: &str) -> u64 {
    result
        .split(';')
        .find_map(|part| part.trim().strip_suffix(label.trim_start()))
        .and_then(|number| number.trim().rsplit(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// Runs a command quietly and returns its stdout; `None` when it cannot
/// start or fails.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// True when `program` is on PATH.
pub fn exists(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// A command for `program` that runs as root: directly when we are root,
/// else through `sudo -E` keeping PATH (for rustup's cargo).
pub fn as_root(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-E", "--preserve-env=PATH", program]);
        sudo
    }
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
