//! `cargo xtask fuzz [TARGET] [--time SECONDS]`: the fuzz targets of the
//! `fuzz/` crate (cargo-fuzz on the pinned nightly), one per input the agent
//! reads from outside: each target, or only TARGET, for SECONDS (default 60).
//!
//! libFuzzer starts from the seeds checked in under `fuzz/corpus/<target>/`
//! (read only) and keeps what it finds in `fuzz/target/corpus/<target>/`,
//! so the seeds stay small and later runs go on where earlier ones stopped.
//! A crash is written to `fuzz/artifacts/<target>/` (gitignored); replay it
//! with `cargo +NIGHTLY fuzz run <target> <file>`, fix the module that
//! panicked and keep the input as a unit test. The property tests of the
//! same parsers run in `cargo xtask test`; this is for longer runs.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{bootstrap, process, toolchain};

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
const TARGETS: &[&str] = &[
    "drop_record",
    "socket_record",
    "dns_message",
    "snapshot",
    "filter",
];

/// Seconds per target when `--time` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// Seconds one input may take before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// aya-obj 0.6 calls `Option::map_or_default`, stable in Rust 1.98 but
/// still behind its feature gate in the pinned nightly (built just before):
/// the gate is opened for every crate of the fuzz build (the crates that
/// do not use it warn so). cargo-fuzz adds its own flags to these. Drop
/// this when the nightly pin moves past 1.98.
const RUSTFLAGS: &str = "-Zcrate-attr=feature(result_option_map_or_default)";

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only: Option<&str> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--time" => {
                let value = rest.next().context("--time needs a number of seconds")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|seconds| *seconds > 0)
                    .with_context(|| {
                        format!("--time {value:?} is not a positive number of seconds")
                    })?;
            }
            target if TARGETS.contains(&target) && only.is_none() => only = Some(target),
            other => bail!(
                "unknown fuzz option {other:?} (use [TARGET] [--time SECONDS]; targets: {})",
                TARGETS.join(", ")
            ),
        }
    }
    bootstrap::run()?;
    bootstrap::ensure_cargo_fuzz()?;
    let nightly = format!("+{}", toolchain::nightly()?);
    let targets: Vec<&str> = only.map_or_else(|| TARGETS.to_vec(), |target| vec![target]);
    let fuzz = toolchain::root().join("fuzz");
    let mut crashed = Vec::new();
    for target in targets {
        let found = fuzz.join("target/corpus").join(target);
        std::fs::create_dir_all(&found).with_context(|| format!("creating {}", found.display()))?;
        let seeds = fuzz.join("corpus").join(target);
        let outcome = process::run_with(
            Command::new("cargo")
                .env("RUSTFLAGS", rustflags())
                .args([&nightly, "fuzz", "run", target])
                .arg(&found)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
                .arg("-print_final_stats=1"),
        );
        if let Err(error) = outcome {
            eprintln!("xtask: fuzz target {target} failed: {error:#}");
            crashed.push(target);
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzz targets {crashed:?} failed: inputs in fuzz/artifacts/<target>/; replay one with \
             `cargo {nightly} fuzz run <target> <file>`"
        );
    }
    Ok(())
}

/// [`RUSTFLAGS`], after any the caller set.
fn rustflags() -> String {
    match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} {RUSTFLAGS}"),
        _ => RUSTFLAGS.to_owned(),
    }
}
