//! `cargo xtask bench [--quick]`: the benchmarks, side by side with their
//! baselines in the same run, against the release agent. Results land in
//! `target/bench/*.json`; each benchmark prints a Markdown table.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{bootstrap, build, process, toolchain};

pub fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            other => bail!("unknown bench option {other:?} (use --quick)"),
        }
    }
    bootstrap::run()?;
    let binary = build::build_release()?;
    run_benches(&binary, quick)
}

/// Runs every benchmark with the agent at `binary`.
pub fn run_benches(binary: &Path, quick: bool) -> Result<()> {
    let stable = format!("+{}", toolchain::stable()?);
    // Explain latency and metadata memory: user space only.
    let mut explain = Command::new("cargo");
    explain.args([
        stable.as_str(),
        "bench",
        "-p",
        "dropscope",
        "--bench",
        "explain",
    ]);
    if quick {
        explain.args(["--", "--quick"]);
    }
    process::run_with(&mut explain)?;
    process::run(
        "cargo",
        &[&stable, "bench", "-p", "dropscope-e2e", "--no-run"],
    )?;
    // What the kernel hook costs, then what the gRPC API delivers: both
    // need root and the agent binary.
    for bench in ["kfree_skb_cost", "api_fanout"] {
        let mut command = process::as_root("cargo");
        command
            .args([
                stable.as_str(),
                "bench",
                "-p",
                "dropscope-e2e",
                "--bench",
                bench,
                "--",
            ])
            .env("DROPSCOPE_BIN", binary);
        if quick {
            command.arg("--quick");
        }
        process::run_with(&mut command)?;
    }
    Ok(())
}
