//! `cargo xtask vm [--kernel 6.1|6.12|PACKAGE]…`: the same agent binary on
//! other kernels. Builds a static (musl) agent, boots each Debian cloud
//! kernel under qemu (software emulation) with a busybox initramfs, lets
//! the agent attach, provokes TCP SYNs to a closed port, and checks that
//! the drops come back named (`NO_SOCKET` is 2 on 6.1 and 3 on later
//! kernels: the names come from each kernel's BTF).

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{bootstrap, process, toolchain};

const MUSL: &str = "x86_64-unknown-linux-musl";
const APT: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("musl-gcc", "musl-tools"),
];

/// The guest's /init: attach, provoke three drops, print log and events.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip link set lo up
echo "== kernel $(uname -r)"
/dropscope agent --output json --listen none --metrics-listen none --node-name vm --duration 120s --sample-interval 500ms > /out.json 2> /err.log &
i=0
while ! grep -q "agent running" /err.log; do
  i=$((i+1)); [ $i -gt 120 ] && break; sleep 1
  grep -q "^dropscope: " /err.log && break
done
for n in 1 2 3; do nc -w 1 127.0.0.1 9 </dev/null; done
sleep 2
kill -TERM %1; wait
echo "== log"; cat /err.log
echo "== events"; cat /out.json
echo "== done"
poweroff -f
"#;

pub fn run(args: &[String]) -> Result<()> {
    let mut kernels: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--kernel" => kernels.push(rest.next().context("--kernel needs a value")?.clone()),
            other => bail!("unknown vm option {other:?} (use --kernel 6.1|6.12|PACKAGE)"),
        }
    }
    if kernels.is_empty() {
        kernels = vec!["6.1".into(), "6.12".into()];
    }
    bootstrap::run()?;
    bootstrap::ensure_apt(APT)?;
    let stable = toolchain::stable()?;
    let targets = process::output(
        "rustup",
        &["target", "list", "--installed", "--toolchain", &stable],
    )
    .unwrap_or_default();
    if !targets.lines().any(|line| line.trim() == MUSL) {
        process::run("rustup", &["target", "add", MUSL, "--toolchain", &stable])?;
    }
    process::run_with(
        Command::new("cargo")
            .args([
                &format!("+{stable}"),
                "build",
                "--release",
                "-p",
                "dropscope",
                "--target",
                MUSL,
            ])
            .env("CC_x86_64_unknown_linux_musl", "musl-gcc"),
    )?;
    let root = toolchain::root();
    let work = root.join("target/vm");
    let agent = root.join("target").join(MUSL).join("release/dropscope");
    ensure_static(&agent)?;
    let initrd = initramfs(&work, &agent)?;
    let mut failures = Vec::new();
    for kernel in &kernels {
        match boot(&work, kernel, &initrd) {
            Ok(summary) => println!("xtask vm: {kernel}: {summary}"),
            Err(error) => {
                println!("xtask vm: {kernel}: FAILED: {error:#}");
                failures.push(kernel.clone());
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "the agent failed on {failures:?}; logs in {}",
            work.display()
        );
    }
    Ok(())
}

/// Refuses a binary that asks for a program interpreter (`PT_INTERP`, the
/// dynamic loader): the image (`deploy/Containerfile`, `FROM scratch`) and
/// the VMs' initramfs hold no libc, so the agent must be static.
fn ensure_static(binary: &Path) -> Result<()> {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let field = |offset: usize, width: usize| -> Option<u64> {
        let bytes = elf.get(offset..offset + width)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)),
        )
    };
    // ELF64, little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!(
            "{} is not a 64-bit little-endian ELF file",
            binary.display()
        );
    }
    let (Some(table), Some(entry), Some(count)) = (field(0x20, 8), field(0x36, 2), field(0x38, 2))
    else {
        bail!("{}: truncated ELF header", binary.display());
    };
    for index in 0..count {
        let at = usize::try_from(table + index * entry)?;
        let kind = field(at, 4)
            .with_context(|| format!("{}: truncated program header", binary.display()))?;
        if kind == u64::from(PT_INTERP) {
            bail!(
                "{} is dynamically linked (it asks for a program interpreter): the image and the VMs hold no libc",
                binary.display()
            );
        }
    }
    Ok(())
}

/// Packs busybox, the agent and /init into `work/initrd.gz`.
fn initramfs(work: &Path, agent: &Path) -> Result<std::path::PathBuf> {
    let image = work.join("root");
    let _ = std::fs::remove_dir_all(&image);
    for dir in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(image.join(dir))?;
    }
    let busybox = process::output("sh", &["-c", "command -v busybox"]).context("busybox")?;
    std::fs::copy(busybox.trim(), image.join("bin/busybox"))?;
    std::fs::copy(agent, image.join("dropscope"))
        .with_context(|| format!("copying {}", agent.display()))?;
    std::fs::write(image.join("init"), INIT)?;
    process::run("chmod", &["+x", &image.join("init").to_string_lossy()])?;
    let initrd = work.join("initrd.gz");
    process::run_with(Command::new("sh").current_dir(&image).args([
        "-c",
        &format!(
            "find . | cpio -o -H newc 2>/dev/null | gzip -1 > {}",
            initrd.display()
        ),
    ]))?;
    Ok(initrd)
}

/// The newest Debian cloud kernel package for a version like `6.1`, or a
/// full package name as given.
fn package(kernel: &str) -> Result<String> {
    if kernel.starts_with("linux-image-") {
        return Ok(kernel.to_owned());
    }
    // `6.1` must not match 6.12: the version is followed by `.` or `-`.
    let pattern = format!(
        "^linux-image-{}[.-][.0-9+a-z-]*-cloud-amd64-unsigned$",
        kernel.replace('.', "\\.")
    );
    let found =
        process::output("apt-cache", &["search", "--names-only", &pattern]).unwrap_or_default();
    let mut names: Vec<&str> = found
        .lines()
        .filter_map(|line| line.split(" - ").next())
        .collect();
    names.sort_by_key(|name| version_key(name));
    names
        .last()
        .map(|name| (*name).to_owned())
        .with_context(|| format!("no Debian package matches {pattern} (run apt-get update?)"))
}

fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// Boots `kernel` with the initramfs and checks what the agent reported.
fn boot(work: &Path, kernel: &str, initrd: &Path) -> Result<String> {
    let name = package(kernel)?;
    let unpacked = work.join(&name);
    if !unpacked.join("boot").is_dir() {
        process::run_with(
            Command::new("apt-get")
                .current_dir(work)
                .args(["download", &name]),
        )?;
        let deb = std::fs::read_dir(work)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .find(|path| {
                path.file_name()
                    .and_then(|file| file.to_str())
                    .is_some_and(|file| {
                        file.starts_with(&format!("{name}_")) && file.ends_with(".deb")
                    })
            })
            .context("the downloaded .deb")?;
        process::run(
            "dpkg",
            &["-x", &deb.to_string_lossy(), &unpacked.to_string_lossy()],
        )?;
    }
    let vmlinuz = std::fs::read_dir(unpacked.join("boot"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|file| file.to_str())
                .is_some_and(|file| file.starts_with("vmlinuz"))
        })
        .context("vmlinuz in the package")?;
    let log_path = work.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let status = Command::new("timeout")
        .args([
            "600",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
        ])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("starting qemu-system-x86_64")?;
    let output = std::fs::read_to_string(&log_path)?;
    if !status.success() && !output.contains("== done") {
        bail!("qemu exited with {status}; see {}", log_path.display());
    }
    let hook = output
        .lines()
        .find(|line| line.contains("attached kfree_skb"))
        .and_then(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with("hook="))
        })
        .with_context(|| format!("the agent did not attach; see {}", log_path.display()))?;
    let named = output
        .lines()
        .filter(|line| {
            line.contains(r#""kind":"DROP_EVENT_KIND_NEW""#)
                && line.contains(r#""name":"NO_SOCKET""#)
        })
        .count();
    if named < 3 {
        bail!(
            "{named} of 3 drops reported as NO_SOCKET; see {}",
            log_path.display()
        );
    }
    Ok(format!(
        "{name}: attached with {hook}, {named} drops reported as NO_SOCKET"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_binary_is_refused_and_a_non_elf_file_too() {
        // This test binary is linked against the host's libc.
        let this = std::env::current_exe().expect("the test binary");
        let error = ensure_static(&this).expect_err("dynamic").to_string();
        assert!(error.contains("dynamically linked"), "{error}");
        let error = ensure_static(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect_err("a text file")
            .to_string();
        assert!(error.contains("not a 64-bit little-endian ELF"), "{error}");
    }
}
