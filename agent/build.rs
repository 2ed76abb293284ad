//! Builds the kernel programs (`agent-ebpf`, for bpfel) with the pinned
//! nightly and bpf-linker, so that the agent embeds them: one self-contained
//! binary. `cargo xtask bootstrap` installs both.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=DROPSCOPE_NIGHTLY");
    let nightly = std::env::var("DROPSCOPE_NIGHTLY").context(
        "DROPSCOPE_NIGHTLY is not set: build through cargo (it comes from .cargo/config.toml)",
    )?;
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == "dropscope-ebpf")
        .ok_or_else(|| anyhow!("package dropscope-ebpf is not in the workspace"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent directory for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&nightly))
}
