//! `cargo xtask run [-- ARGS]`: build, then replace this process with
//! `dropscope agent ARGS` (through sudo when not root), so Ctrl-C reaches
//! the agent directly and it detaches cleanly.

use std::{os::unix::process::CommandExt, process::Command};

use anyhow::Result;

use crate::{build, process};

pub fn run(args: &[String]) -> Result<()> {
    crate::bootstrap::run()?;
    let binary = build::build_release()?;
    let passed: Vec<&String> = args.iter().skip_while(|arg| *arg == "--").collect();
    let mut command = if process::is_root() {
        Command::new(&binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&binary);
        sudo
    };
    command.arg("agent").args(passed);
    eprintln!("xtask: running {} agent (Ctrl-C to stop)", binary.display());
    let error = command.exec();
    Err(error.into())
}
