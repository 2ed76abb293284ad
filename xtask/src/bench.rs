//! `cargo xtask bench [--quick]`: the benchmarks, side by side with their
//! baselines in the same run, against the release agent. Results land in
//! `target/bench/*.json`; each benchmark prints a Markdown table.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{bootstrap, build, process, toolchain};

pub fn run(args: &[String]) -> Result<()> {
    let mut mode = Mode::Full;
    for arg in args {
        match arg.as_str() {
            "--quick" => mode = Mode::Quick,
            other => bail!("unknown bench option {other:?} (use --quick)"),
        }
    }
    bootstrap::run()?;
    let binary = build::build_release()?;
    run_benches(&binary, mode)
}

/// How the benchmarks are built and how long they measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Optimised builds, full measurements: the figures in BENCHMARKS.md.
    Full,
    /// Optimised builds, short measurements (`cargo xtask bench --quick`).
    Quick,
    /// Debug builds, short measurements: `cargo xtask test` only checks
    /// that every benchmark still runs, and reuses the tests' build for it
    /// (optimised builds of the benchmarks took 11 of a clean-clone CI
    /// run's 32 minutes).
    Smoke,
}

impl Mode {
    /// `cargo bench` options before `--`.
    fn cargo_args(self) -> &'static [&'static str] {
        match self {
            Self::Smoke => &["--profile", "dev"],
            Self::Full | Self::Quick => &[],
        }
    }

    /// The benchmarks' own options, after `--`.
    fn bench_args(self) -> &'static [&'static str] {
        match self {
            Self::Full => &[],
            Self::Quick | Self::Smoke => &["--quick"],
        }
    }
}

/// Runs every benchmark with the agent at `binary`.
pub fn run_benches(binary: &Path, mode: Mode) -> Result<()> {
    let stable = format!("+{}", toolchain::stable()?);
    // Explain latency and metadata memory: user space only.
    process::run_with(
        Command::new("cargo")
            .args([stable.as_str(), "bench", "-p", "dropscope"])
            .args(mode.cargo_args())
            .args(["--bench", "explain", "--"])
            .args(mode.bench_args()),
    )?;
    process::run_with(
        Command::new("cargo")
            .args([stable.as_str(), "bench", "-p", "dropscope-e2e"])
            .args(mode.cargo_args())
            .arg("--no-run"),
    )?;
    // What the kernel hook costs, what the gRPC API delivers, what the
    // socket and tc hooks cost: all need root and the agent binary.
    for bench in [
        "kfree_skb_cost",
        "api_fanout",
        "socket_cost",
        "collector_ceiling",
    ] {
        let mut command = process::as_root("cargo");
        command
            .args([stable.as_str(), "bench", "-p", "dropscope-e2e"])
            .args(mode.cargo_args())
            .args(["--bench", bench, "--"])
            .args(mode.bench_args())
            .env("DROPSCOPE_BIN", binary);
        process::run_with(&mut command)?;
    }
    merge_results()
}

/// `target/bench/results.json`: every benchmark's JSON under its name
/// (each file is valid JSON, so the object built around them is too).
fn merge_results() -> Result<()> {
    let dir = toolchain::root().join("target/bench");
    let mut merged = String::from("{");
    for (index, name) in ["explain", "kfree_skb", "api", "socket", "collector"]
        .iter()
        .enumerate()
    {
        let path = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        if index > 0 {
            merged.push(',');
        }
        merged.push_str(&format!("\n\"{name}\": {}", text.trim()));
    }
    merged.push_str("\n}\n");
    let out = dir.join("results.json");
    std::fs::write(&out, merged).map_err(|error| anyhow::anyhow!("{}: {error}", out.display()))?;
    println!("xtask: benchmark results in {}", out.display());
    Ok(())
}
