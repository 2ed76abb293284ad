//! The pinned toolchains, read from `.cargo/config.toml` `[env]` (the one
//! place they are written), and the workspace root.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The pinned stable toolchain for the agent, e.g. `1.98.0`.
pub fn stable() -> Result<String> {
    pin("DROPSCOPE_STABLE")
}

/// The pinned nightly toolchain for the eBPF crate, e.g. `nightly-2026-06-01`.
pub fn nightly() -> Result<String> {
    pin("DROPSCOPE_NIGHTLY")
}

fn pin(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run xtask as `cargo xtask ...` from the repository (it comes from .cargo/config.toml)")
    })
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
