//! Checks and fixes for what the kernel programs need from the machine:
//! privilege, tracefs, the memlock limit, and the classic tracepoint's
//! record layout.

use std::{
    ffi::{CStr, CString},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use dropscope_abi::{OFFSET_MISSING, SocketOffsets, TracepointOffsets};

use super::Error;

/// Where tracefs normally lives.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// A Linux capability the agent checks for before loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Its name without `CAP_`, as a pod's `securityContext` spells it.
    pub name: &'static str,
    /// Its number (`capabilities(7)`).
    pub number: u8,
    /// What needs it, for the error that names it.
    pub needed_for: &'static str,
    /// Whether CAP_SYS_ADMIN grants the same, as the kernel allows for
    /// the capabilities split off it in 5.8.
    pub or_sys_admin: bool,
}

/// `bpf(2)`: every map and program.
pub const CAP_BPF: Capability = Capability {
    name: "BPF",
    number: 39,
    needed_for: "creating the BPF maps and loading the programs",
    or_sys_admin: true,
};

/// The tracing programs and their reads of kernel memory.
pub const CAP_PERFMON: Capability = Capability {
    name: "PERFMON",
    number: 38,
    needed_for: "loading the tracing programs, kfree_skb, the socket tracepoints and fentry, and attaching tracepoints with perf_event_open",
    or_sys_admin: true,
};

/// The tc programs and the cgroup connect hooks.
pub const CAP_NET_ADMIN: Capability = Capability {
    name: "NET_ADMIN",
    number: 12,
    needed_for: "loading and attaching the tc programs and the cgroup connect hooks, which --no-tc and --no-cgroup-hooks turn off",
    or_sys_admin: false,
};

/// Kernel addresses in `/proc/kallsyms`.
pub const CAP_SYSLOG: Capability = Capability {
    name: "SYSLOG",
    number: 34,
    needed_for: "reading kernel addresses from /proc/kallsyms to name drop locations, unless kptr_restrict is 0 and perf_event_paranoid at most 1",
    or_sys_admin: false,
};

const CAP_SYS_ADMIN: u8 = 21;

/// Capabilities that only make events richer: without them the agent
/// runs and warns.
pub const OPTIONAL_CAPABILITIES: [Capability; 1] = [CAP_SYSLOG];

/// The capabilities loading these hooks needs: CAP_BPF and CAP_PERFMON
/// always, CAP_NET_ADMIN for the tc programs or the cgroup connect hooks.
pub fn required_capabilities(tc: bool, cgroup_hooks: bool) -> Vec<Capability> {
    let mut needed = vec![CAP_BPF, CAP_PERFMON];
    if tc || cgroup_hooks {
        needed.push(CAP_NET_ADMIN);
    }
    needed
}

/// Fails, naming what is missing, when the process cannot load eBPF
/// programs at all (CAP_BPF, CAP_PERFMON).
pub fn require_privilege() -> Result<(), Error> {
    require(&required_capabilities(false, false))
}

/// Fails, naming each missing capability and what needs it, when the
/// process lacks one that these hooks need; warns for each optional one.
/// Checks the effective set, not the user: uid 0 in a container has only
/// the capabilities it was given.
pub fn require_hook_privilege(tc: bool, cgroup_hooks: bool) -> Result<(), Error> {
    require(&required_capabilities(tc, cgroup_hooks))?;
    let effective = effective_capabilities();
    for capability in OPTIONAL_CAPABILITIES {
        if !capability.held(effective) {
            tracing::warn!(
                capability = %format_args!("CAP_{}", capability.name),
                needed_for = capability.needed_for,
                "running without an optional capability"
            );
        }
    }
    Ok(())
}

fn require(needed: &[Capability]) -> Result<(), Error> {
    let effective = effective_capabilities();
    let missing: Vec<String> = needed
        .iter()
        .filter(|capability| !capability.held(effective))
        .map(|capability| format!("CAP_{} ({})", capability.name, capability.needed_for))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotPrivileged {
            missing: missing.join(", "),
        })
    }
}

impl Capability {
    fn held(self, effective: u64) -> bool {
        effective & (1 << self.number) != 0
            || (self.or_sys_admin && effective & (1 << CAP_SYS_ADMIN) != 0)
    }
}

/// The effective capability set (`CapEff` of /proc/self/status); empty
/// when unreadable.
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Mounts tracefs at [`TRACEFS`] when it is not mounted yet (with the
/// mount system call: no `mount` binary is needed or trusted).
pub fn ensure_tracefs() -> Result<PathBuf, Error> {
    let root = PathBuf::from(TRACEFS);
    if root.join("events").is_dir() {
        return Ok(root);
    }
    match mount_filesystem(c"nodev", c"tracefs", &root) {
        Ok(()) if root.join("events").is_dir() => {
            tracing::info!(path = TRACEFS, "mounted tracefs");
            Ok(root)
        }
        Ok(()) => Err(Error::Tracefs {
            path: root,
            source: std::io::Error::other("mounted, but it has no events directory"),
        }),
        Err(source) => Err(Error::Tracefs { path: root, source }),
    }
}

/// `mount -t cgroup2 none DIR`, for a mount namespace that has no cgroup v2
/// mount (see `enrich::cgroup::cgroup2_root`).
pub fn mount_cgroup2(dir: &Path) -> std::io::Result<()> {
    mount_filesystem(c"none", c"cgroup2", dir)
}

/// mount(2) of a pseudo filesystem with no options.
fn mount_filesystem(source: &CStr, fstype: &CStr, dir: &Path) -> std::io::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    // SAFETY: source, target and fstype are NUL-terminated strings that
    // outlive the call; data may be null (no options); mount(2) only reads
    // them.
    let result = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF memory to it
/// (before 5.11); harmless on newer ones.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}

/// The running kernel's release (`uname -r`), or `unknown`.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Reads the field offsets of `skb:kfree_skb` from its format file.
pub fn kfree_skb_format(tracefs: &Path) -> Result<TracepointOffsets, Error> {
    let path = tracefs.join("events/skb/kfree_skb/format");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let field = |name: &str| {
        format_offset(&text, name).ok_or_else(|| Error::TracepointFormat {
            path: path.clone(),
            field: name.to_owned(),
        })
    };
    Ok(TracepointOffsets {
        skbaddr: field("skbaddr")?,
        location: field("location")?,
        reason: field("reason")?,
    })
}

/// Field offsets of the socket tracepoints (`sock:inet_sock_set_state`,
/// `tcp:tcp_retransmit_skb`) from their format files; the socket struct
/// fields are left for BTF (see `KernelBtf::socket_offsets`).
pub fn socket_formats(tracefs: &Path) -> Result<SocketOffsets, Error> {
    let read = |event: &str| {
        let path = tracefs.join("events").join(event).join("format");
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|source| Error::Read { path, source })
    };
    let (state_path, state) = read("sock/inet_sock_set_state")?;
    let (retransmit_path, retransmit) = read("tcp/tcp_retransmit_skb")?;
    let field = |path: &Path, text: &str, name: &str| {
        format_offset(text, name).ok_or_else(|| Error::TracepointFormat {
            path: path.to_owned(),
            field: name.to_owned(),
        })
    };
    let state_field = |name: &str| field(&state_path, &state, name);
    Ok(SocketOffsets {
        state_skaddr: state_field("skaddr")?,
        state_oldstate: state_field("oldstate")?,
        state_newstate: state_field("newstate")?,
        state_sport: state_field("sport")?,
        state_dport: state_field("dport")?,
        state_family: state_field("family")?,
        state_protocol: state_field("protocol")?,
        state_saddr: state_field("saddr")?,
        state_daddr: state_field("daddr")?,
        state_saddr_v6: state_field("saddr_v6")?,
        state_daddr_v6: state_field("daddr_v6")?,
        retransmit_skaddr: field(&retransmit_path, &retransmit, "skaddr")?,
        retransmit_state: field(&retransmit_path, &retransmit, "state")?,
        retransmit_sport: field(&retransmit_path, &retransmit, "sport")?,
        sk_num: OFFSET_MISSING,
        sk_err: OFFSET_MISSING,
        sk_net: OFFSET_MISSING,
        net_ns_inum: OFFSET_MISSING,
    })
}

/// The `offset:` of field `name` in a tracepoint format text.
fn format_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let declaration = line.strip_prefix("field:")?.split(';').next()?;
        let field_name = declaration.rsplit([' ', '*']).next()?;
        // Arrays are declared `__u8 saddr[4]`.
        let field_name = field_name.split('[').next()?;
        if field_name != name {
            return None;
        }
        line.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|offset| offset.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: kfree_skb
ID: 2310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;
";

    #[test]
    fn sys_admin_stands_in_only_where_the_kernel_lets_it() {
        let bit = |capability: Capability| 1u64 << capability.number;
        let sys_admin = 1u64 << CAP_SYS_ADMIN;
        assert!(CAP_BPF.held(bit(CAP_BPF)));
        assert!(CAP_BPF.held(sys_admin));
        assert!(CAP_PERFMON.held(sys_admin));
        assert!(!CAP_PERFMON.held(bit(CAP_BPF)));
        // Netlink (clsact before 6.6) and kallsyms ask for these themselves.
        assert!(!CAP_NET_ADMIN.held(sys_admin));
        assert!(!CAP_SYSLOG.held(sys_admin));
    }

    #[test]
    fn net_admin_is_needed_only_for_tc_and_the_cgroup_hooks() {
        assert_eq!(required_capabilities(false, false), [CAP_BPF, CAP_PERFMON]);
        assert_eq!(
            required_capabilities(true, false),
            [CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN]
        );
        assert_eq!(
            required_capabilities(false, true),
            [CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN]
        );
    }

    #[test]
    fn reads_offsets_from_a_format_file() {
        assert_eq!(format_offset(FORMAT_6_18, "skbaddr"), Some(8));
        assert_eq!(format_offset(FORMAT_6_18, "location"), Some(16));
        assert_eq!(format_offset(FORMAT_6_18, "reason"), Some(36));
        assert_eq!(format_offset(FORMAT_6_18, "missing"), None);
    }
}
