//! `cargo xtask demo [--ci] [--only N]`: bootstrap, build the agent and the
//! demo (`dropscope-demo` and `lab-client` from the e2e crate), then replace
//! this process with the demo, as root (through sudo when not root), so
//! Ctrl-C reaches it directly and it removes its lab before exiting.

use std::{os::unix::process::CommandExt, process::Command};

use anyhow::Result;

use crate::{bootstrap, process, toolchain};

pub fn run(args: &[String]) -> Result<()> {
    bootstrap::run()?;
    let stable = format!("+{}", toolchain::stable()?);
    process::run("cargo", &[&stable, "build", "-p", "dropscope"])?;
    process::run(
        "cargo",
        &[
            &stable,
            "build",
            "-p",
            "dropscope-e2e",
            "--bin",
            "dropscope-demo",
            "--bin",
            "lab-client",
        ],
    )?;
    let target = toolchain::root().join("target/debug");
    let mut command = if process::is_root() {
        Command::new(target.join("dropscope-demo"))
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(target.join("dropscope-demo"));
        sudo
    };
    command
        .args(args.iter().skip_while(|arg| *arg == "--"))
        .env("DROPSCOPE_BIN", target.join("dropscope"));
    eprintln!("xtask: running the demo (Ctrl-C stops it and removes its lab)");
    let error = command.exec();
    Err(error.into())
}
