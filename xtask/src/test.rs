//! `cargo xtask test [--unit|--e2e] [-- FILTER]`: bootstrap, then every
//! check CI runs: formatting, clippy with warnings as errors (user space,
//! xtask and the eBPF crate), unit tests, the privileged end-to-end tests
//! against the real kernel (as root, in parallel), a short benchmark run,
//! and the agent booted on other kernels under qemu (`xtask vm`).

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::{
    bench, bootstrap,
    process::{self, TestTotals},
    toolchain, vm,
};

/// End-to-end tests run at once: they mostly wait on the kernel and the
/// network, so more than the two cores.
const E2E_THREADS: &str = "6";

/// The property tests' seed under `cargo xtask test` (override with
/// `PROPTEST_RNG_SEED`).
const PROPTEST_SEED: &str = "20261202";

pub fn run(args: &[String]) -> Result<()> {
    let mut unit = true;
    let mut e2e = true;
    let mut filter: Vec<&str> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--unit" => e2e = false,
            "--e2e" => unit = false,
            "--" => filter.extend(rest.by_ref().map(String::as_str)),
            other => bail!("unknown test option {other:?} (use --unit, --e2e, -- FILTER)"),
        }
    }
    bootstrap::run()?;
    let stable = format!("+{}", toolchain::stable()?);
    let nightly = format!("+{}", toolchain::nightly()?);
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // A CI run builds once: incremental state would only take disk.
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    warn_when_disk_is_short();

    if unit {
        process::run("cargo", &[&stable, "fmt", "--all", "--", "--check"])?;
        process::run(
            "cargo",
            &[
                &stable,
                "clippy",
                "-p",
                "dropscope",
                "-p",
                "dropscope-abi",
                "-p",
                "dropscope-proto",
                "-p",
                "dropscope-e2e",
                "-p",
                "xtask",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
        process::run(
            "cargo",
            &[
                &nightly,
                "clippy",
                "-p",
                "dropscope-ebpf",
                "--bins",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    let mut totals = TestTotals::default();
    if unit {
        process::run_tests(
            Command::new("cargo")
                .args([
                    stable.as_str(),
                    "test",
                    "-p",
                    "dropscope",
                    "-p",
                    "dropscope-abi",
                    "-p",
                    "dropscope-proto",
                    "-p",
                    "xtask",
                    "--",
                ])
                .args(&filter)
                // The property tests draw the same cases on every run, so a
                // CI result is reproducible; `cargo test` alone draws new
                // ones each time, and `cargo xtask fuzz` searches for long.
                .env(
                    "PROPTEST_RNG_SEED",
                    std::env::var("PROPTEST_RNG_SEED").unwrap_or_else(|_| PROPTEST_SEED.into()),
                ),
            &mut totals,
        )?;
    }
    if e2e {
        let binary = run_e2e(&stable, &filter, &mut totals)?;
        if filter.is_empty() {
            // The benchmarks must keep working: a short run of debug
            // builds, figures unused.
            bench::run_benches(&binary, bench::Mode::Smoke)?;
            // One binary, many kernels: the agent on Debian's 6.1 and 6.12.
            vm::run(&[])?;
        }
    }
    // One closing line for the whole run, in the plain format CI reads.
    println!("xtask: {} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

/// Disk a full run leaves in `target/` (debug, release, musl, benches,
/// the VM images): 5.9 GiB at its peak in a clean-clone run, plus room.
const DISK_NEEDED_MIB: u64 = 7 * 1024;

/// Says so, before hours of building, when the disk that holds `target/`
/// has less free space than a full run takes.
fn warn_when_disk_is_short() {
    let root = toolchain::root();
    let Some(listing) = process::output("df", &["-Pm", &root.to_string_lossy()]) else {
        return;
    };
    let free = listing
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|free| free.parse::<u64>().ok());
    let used = process::output("du", &["-sm", &root.join("target").to_string_lossy()])
        .and_then(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    if let Some(free) = free {
        let wanted = DISK_NEEDED_MIB.saturating_sub(used);
        if free < wanted {
            eprintln!(
                "xtask: warning: {free} MiB free under {}, and a full test run needs about {wanted} MiB more: \
                 the build may fail with \"No space left on device\"",
                root.display()
            );
        }
    }
}

/// Runs the end-to-end tests against the debug agent; returns its path.
fn run_e2e(stable: &str, filter: &[&str], totals: &mut TestTotals) -> Result<PathBuf> {
    process::run("cargo", &[stable, "build", "-p", "dropscope"])?;
    let binary = toolchain::root().join("target/debug/dropscope");
    // Build the test binaries as the invoking user, run them as root.
    process::run(
        "cargo",
        &[stable, "test", "-p", "dropscope-e2e", "--no-run"],
    )?;
    let mut command = process::as_root("cargo");
    command
        .args([
            stable,
            "test",
            "-p",
            "dropscope-e2e",
            "--tests",
            "--no-fail-fast",
            "--",
        ])
        .args(["--test-threads", E2E_THREADS])
        .args(filter)
        .env("DROPSCOPE_BIN", &binary);
    process::run_tests(&mut command, totals)?;
    Ok(binary)
}
