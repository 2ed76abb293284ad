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
