//! `cargo xtask docs`: regenerates the reference pages in `docs/reference/`
//! (the event schema, hint codes, metrics, flags) from their sources; the
//! unit tests of `agent/src/reference/` fail in CI when a page is stale.

use std::process::Command;

use anyhow::Result;

use crate::{bootstrap, process, toolchain};

pub fn run() -> Result<()> {
    bootstrap::run()?;
    let stable = format!("+{}", toolchain::stable()?);
    process::run_with(
        Command::new("cargo")
            .args([
                stable.as_str(),
                "test",
                "-p",
                "dropscope",
                "--lib",
                "reference::",
            ])
            .env("DROPSCOPE_WRITE_DOCS", "1"),
    )?;
    eprintln!("xtask: docs/reference/ regenerated; review and commit it");
    Ok(())
}
