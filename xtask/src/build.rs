//! `cargo xtask build`: bootstrap, then the self-contained release binary
//! `target/release/dropscope` (the eBPF object is embedded by agent/build.rs).

use std::path::PathBuf;

use anyhow::Result;

use crate::{bootstrap, process, toolchain};

pub fn run() -> Result<()> {
    bootstrap::run()?;
    build_release()?;
    Ok(())
}

/// Builds the release agent and returns its path.
pub fn build_release() -> Result<PathBuf> {
    let stable = toolchain::stable()?;
    process::run(
        "cargo",
        &[
            &format!("+{stable}"),
            "build",
            "--release",
            "-p",
            "dropscope",
        ],
    )?;
    Ok(toolchain::root().join("target/release/dropscope"))
}
