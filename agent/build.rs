//! Builds the kernel programs (`agent-ebpf`, for bpfel) with the pinned
//! nightly and bpf-linker, so that the agent embeds them: one self-contained
//! binary. `cargo xtask bootstrap` installs both.
//!
//! The build is the one aya-build runs (the eBPF crate's binaries for
//! `bpf{el,eb}-unknown-none` with `build-std=core`, BTF and the target
//! architecture as a cfg), but quiet: the inner cargo's progress lines are
//! kept and shown only when it fails, and only the kernel code's own
//! compiler warnings reach the outer build's output.

use std::{
    env,
    ffi::OsString,
    io::Read as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, Message};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=DROPSCOPE_NIGHTLY");
    let nightly = env::var("DROPSCOPE_NIGHTLY").context(
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
    println!("cargo:rerun-if-changed={root}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH is not set")?;
    let arch = if arch.starts_with("riscv64") {
        "riscv64".to_owned()
    } else {
        arch
    };
    let mut rustflags = OsString::new();
    for (index, flag) in [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        if index > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    let mut command = Command::new("rustup");
    command
        .args(["run", &nightly, "cargo", "build", "--package"])
        .arg(ebpf.name.as_str())
        .args([
            "--bins",
            "--message-format=json",
            "--release",
            "--target",
            target,
        ])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-target"))
        .current_dir(root)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer build's compiler must not leak into the nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("running {command:?} (is rustup installed?)"))?;
    let mut stderr = child.stderr.take().context("the eBPF build's stderr")?;
    let progress = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout = std::io::BufReader::new(child.stdout.take().context("the eBPF build's stdout")?);
    let mut programs = Vec::new();
    for message in Message::parse_stream(stdout) {
        match message.context("the eBPF build's messages")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(executable),
                target,
                ..
            }) => programs.push((target.name, executable.into_std_path_buf())),
            Message::CompilerMessage(message) => {
                for line in message.message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let progress = progress.join().unwrap_or_default();
    if !status.success() {
        bail!("building the kernel programs failed ({status}):\n{progress}");
    }
    for (name, program) in programs {
        let destination = out_dir.join(&name);
        std::fs::copy(&program, &destination).with_context(|| {
            format!("copying {} to {}", program.display(), destination.display())
        })?;
    }
    Ok(())
}
