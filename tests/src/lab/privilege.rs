//! The agent confined the way `deploy/dropscope.yaml` confines it: uid 0
//! holding only the capabilities the DaemonSet adds (bounding, permitted
//! and effective sets; nothing inheritable or ambient), no_new_privs
//! (`allowPrivilegeEscalation: false`), a 64 KiB memlock limit (no
//! `SYS_RESOURCE` to lift it), and a mount namespace of its own in which
//! the root filesystem (`readOnlyRootFilesystem`), `/sys`, `/proc/sys`,
//! tracefs and the cgroup v2 root are read-only and the API socket's
//! directory (the `/run/dropscope` host path) is the one writable place.
//! `setpriv`, `prlimit`, `unshare` and `mount` (util-linux) set it up
//! before the agent is executed; the seccomp profile is not applied (see
//! the README's Security section).

use std::{
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result, bail, ensure};

use super::{Agent, Netns, cgroup};

/// The DaemonSet, whose capabilities the confinement grants.
pub const MANIFEST: &str = include_str!("../../../deploy/dropscope.yaml");

/// RLIMIT_MEMLOCK of a confined agent, in bytes.
pub const MEMLOCK_BYTES: u64 = 64 * 1024;

/// Capability numbers by name (`capabilities(7)`), as a pod's
/// `securityContext` spells them.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities the DaemonSet's container adds (`capabilities.add`,
/// in flow or block style), as written there.
pub fn daemonset_capabilities() -> Result<Vec<String>> {
    let mut lines = MANIFEST
        .lines()
        .skip_while(|line| line.trim() != "capabilities:");
    lines
        .next()
        .context("no `capabilities:` in deploy/dropscope.yaml")?;
    let mut added = Vec::new();
    let mut in_add = false;
    for line in lines {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(list) = line.strip_prefix("add:") {
            let list = list.trim();
            if list.is_empty() {
                in_add = true;
                continue;
            }
            let list = list
                .strip_prefix('[')
                .and_then(|list| list.strip_suffix(']'))
                .with_context(|| format!("capabilities.add: {line}"))?;
            added.extend(list.split(',').map(unquote));
            break;
        }
        match line.strip_prefix("- ") {
            Some(item) if in_add => added.push(unquote(item)),
            _ if in_add => break,
            _ => {}
        }
    }
    ensure!(
        !added.is_empty(),
        "deploy/dropscope.yaml adds no capabilities"
    );
    for name in &added {
        number(name)?;
    }
    Ok(added)
}

fn unquote(item: &str) -> String {
    item.trim().trim_matches('"').trim_matches('\'').to_owned()
}

fn number(name: &str) -> Result<u32> {
    let name = name.strip_prefix("CAP_").unwrap_or(name);
    CAPABILITIES
        .iter()
        .position(|known| *known == name)
        .map(|index| index as u32)
        .with_context(|| format!("unknown capability {name}"))
}

/// What a confined agent holds.
#[derive(Clone, Debug)]
pub struct Confinement {
    capabilities: Vec<String>,
}

impl Confinement {
    /// Exactly the DaemonSet's capabilities.
    pub fn daemonset() -> Result<Self> {
        Ok(Self {
            capabilities: daemonset_capabilities()?,
        })
    }

    /// The same without `capability` (as the manifest spells it), which
    /// must be one of them.
    pub fn without(mut self, capability: &str) -> Result<Self> {
        let before = self.capabilities.len();
        self.capabilities.retain(|held| held != capability);
        ensure!(
            self.capabilities.len() < before,
            "{capability} is not among {:?}",
            self.capabilities
        );
        Ok(self)
    }

    /// The capabilities held, as the manifest spells them.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether `capability` is held.
    pub fn holds(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|held| held == capability)
    }

    /// The capability set as `/proc/PID/status` shows it (`CapEff`).
    pub fn mask(&self) -> Result<u64> {
        self.capabilities
            .iter()
            .try_fold(0, |mask, name| Ok(mask | 1 << number(name)?))
    }

    /// The command that confines what follows it: a mount namespace with
    /// `writable` the only writable directory and `cgroup_root` read-only,
    /// then the memlock limit, then the capabilities and no_new_privs.
    fn wrapper(&self, writable: &Path, cgroup_root: &Path) -> Result<Vec<String>> {
        const SCRIPT: &str = r#"
dir=$1; cgroup=$2; shift 2
read_only() { mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; }
mount --bind "$dir" "$dir"
mount -o remount,bind,ro /
mount -o remount,bind,ro /sys
read_only /sys/kernel/tracing
read_only "$cgroup"
read_only /proc/sys
exec "$@"
"#;
        let mut bounding = "-all".to_owned();
        for name in &self.capabilities {
            number(name)?;
            bounding.push_str(",+");
            bounding.push_str(&name.to_ascii_lowercase());
        }
        let path = |path: &Path| {
            path.to_str()
                .map(str::to_owned)
                .with_context(|| format!("{} is not UTF-8", path.display()))
        };
        Ok([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-euc",
            SCRIPT,
            "confine",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([path(writable)?, path(cgroup_root)?])
        .chain([
            "prlimit".to_owned(),
            format!("--memlock={MEMLOCK_BYTES}:{MEMLOCK_BYTES}"),
            "setpriv".to_owned(),
            "--clear-groups".to_owned(),
            "--inh-caps=-all".to_owned(),
            "--ambient-caps=-all".to_owned(),
            format!("--bounding-set={bounding}"),
            "--no-new-privs".to_owned(),
            "--".to_owned(),
        ])
        .collect())
    }
}

/// Directories for confined agents' sockets, unique per process.
static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A confined agent in a lab node; its socket directory is removed on drop.
pub struct ConfinedAgent {
    agent: Agent,
    dir: SocketDir,
}

struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ConfinedAgent {
    /// Starts the agent in `netns` (the node, as `hostNetwork` puts it)
    /// under `confinement`, with its API socket in a directory of its own
    /// and `--cgroup-root` at the cgroup v2 root (as the DaemonSet sets
    /// `DROPSCOPE_CGROUP_ROOT`), plus `extra`; waits until it is attached.
    /// Fails, with its log, when it exits first.
    pub fn start_in(netns: &Netns, confinement: &Confinement, extra: &[&str]) -> Result<Self> {
        if extra.contains(&"--listen") || extra.contains(&"--cgroup-root") {
            bail!("a confined agent's --listen and --cgroup-root are set by the confinement");
        }
        let dir = SocketDir(std::env::temp_dir().join(format!(
            "dropscope-e2e-confined-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        )));
        std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
        let cgroup_root = cgroup::v2_root()?;
        let listen = format!("unix:{}", dir.0.join("dropscope.sock").display());
        let cgroup_arg = cgroup_root
            .to_str()
            .context("the cgroup v2 root is not UTF-8")?
            .to_owned();
        let mut arguments = vec!["--listen", listen.as_str(), "--cgroup-root", &cgroup_arg];
        arguments.extend_from_slice(extra);
        let wrapper = confinement.wrapper(&dir.0, &cgroup_root)?;
        let agent = Agent::start_wrapped(Some(netns), &wrapper, &arguments)?;
        Ok(Self { agent, dir })
    }

    /// The directory of the agent's API socket (its one writable place).
    pub fn socket_dir(&self) -> &Path {
        &self.dir.0
    }

    /// Checks from `/proc` that the running agent holds exactly
    /// `confinement`'s capabilities and nothing it could gain: uid 0,
    /// no inheritable or ambient capabilities, no_new_privs, the memlock
    /// limit.
    pub fn check(&self, confinement: &Confinement) -> Result<()> {
        let pid = self.agent.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> Result<&str> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        let mask = |name: &str| -> Result<u64> {
            u64::from_str_radix(field(name)?, 16).with_context(|| name.to_owned())
        };
        let want = confinement.mask()?;
        for name in ["CapEff", "CapPrm", "CapBnd"] {
            let held = mask(name)?;
            ensure!(
                held == want,
                "{name} {held:#x}, the DaemonSet's capabilities {:?} are {want:#x}",
                confinement.capabilities
            );
        }
        for name in ["CapInh", "CapAmb"] {
            ensure!(mask(name)? == 0, "{name} is {:#x}", mask(name)?);
        }
        ensure!(field("NoNewPrivs")? == "1", "no_new_privs is not set");
        let uid = field("Uid")?;
        ensure!(
            uid.split_whitespace().all(|id| id == "0"),
            "the agent runs as uid 0: Uid {uid}"
        );
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
        let memlock = limits
            .lines()
            .find(|line| line.starts_with("Max locked memory"))
            .context("no memlock limit")?;
        ensure!(
            memlock.split_whitespace().nth(3) == Some(MEMLOCK_BYTES.to_string().as_str()),
            "the memlock limit stays at {MEMLOCK_BYTES} bytes: {memlock}"
        );
        Ok(())
    }
}

impl Deref for ConfinedAgent {
    type Target = Agent;

    fn deref(&self) -> &Agent {
        &self.agent
    }
}

impl DerefMut for ConfinedAgent {
    fn deref_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }
}

/// Whether `/proc/kallsyms` shows kernel addresses to a process with or
/// without CAP_SYSLOG, from `kptr_restrict` and `perf_event_paranoid`, as
/// the kernel decides (`kallsyms_show_value`).
pub fn kallsyms_addresses_visible(with_syslog: bool) -> Result<bool> {
    let sysctl = |name: &str| -> Result<i64> {
        let path = format!("/proc/sys/kernel/{name}");
        std::fs::read_to_string(&path)
            .with_context(|| path.clone())?
            .trim()
            .parse()
            .with_context(|| path.clone())
    };
    Ok(match sysctl("kptr_restrict")? {
        0 => sysctl("perf_event_paranoid")? <= 1 || with_syslog,
        1 => with_syslog,
        _ => false,
    })
}
