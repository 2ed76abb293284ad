//! `cargo xtask test [--unit|--e2e] [-- FILTER]`: bootstrap, then every
//! check CI runs: formatting, clippy with warnings as errors (user space,
//! xtask and the eBPF crate), unit tests, and the privileged end-to-end
//! tests against the real kernel (as root, in parallel).

use std::process::Command;

use anyhow::{Result, bail};

use crate::{bootstrap, process, toolchain};

/// End-to-end tests run at once: they mostly wait on the kernel and the
/// network, so more than the two cores.
const E2E_THREADS: &str = "6";

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

    if unit {
        process::run("cargo", &[&stable, "fmt", "--all", "--", "--check"])?;
        process::run(
            "cargo",
            &[
                &stable, "clippy", "-p", "dropscope", "-p", "dropscope-abi", "-p", "dropscope-e2e",
                "-p", "xtask", "--all-targets", "--", "-D", "warnings",
            ],
        )?;
        process::run(
            "cargo",
            &[
                &nightly, "clippy", "-p", "dropscope-ebpf", "--bins", "--release",
                "--target", "bpfel-unknown-none", "-Z", "build-std=core", "--", "-D", "warnings",
            ],
        )?;
        let mut unit_args = vec![stable.as_str(), "test", "-p", "dropscope", "-p", "dropscope-abi"];
        if !filter.is_empty() {
            unit_args.push("--");
            unit_args.extend(&filter);
        }
        process::run("cargo", &unit_args)?;
    }
    if e2e {
        run_e2e(&stable, &filter)?;
    }
    Ok(())
}

fn run_e2e(stable: &str, filter: &[&str]) -> Result<()> {
    process::run("cargo", &[stable, "build", "-p", "dropscope"])?;
    let binary = toolchain::root().join("target/debug/dropscope");
    // Build the test binaries as the invoking user, run them as root.
    process::run("cargo", &[stable, "test", "-p", "dropscope-e2e", "--no-run"])?;
    let mut command = if process::is_root() {
        Command::new("cargo")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-E", "--preserve-env=PATH", "cargo"]);
        sudo
    };
    command
        .args([stable, "test", "-p", "dropscope-e2e", "--"])
        .args(["--test-threads", E2E_THREADS])
        .args(filter)
        .env("DROPSCOPE_BIN", &binary);
    process::run_with(&mut command)
}
