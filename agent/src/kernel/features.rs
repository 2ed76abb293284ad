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

/// Fails with a fix when the process cannot load eBPF programs.
pub fn require_privilege() -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 || has_cap_bpf() {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

/// True when the effective capability set has CAP_BPF (39) and CAP_PERFMON (38).
fn has_cap_bpf() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 39) != 0 && caps & (1 << 38) != 0)
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
    fn reads_offsets_from_a_format_file() {
        assert_eq!(format_offset(FORMAT_6_18, "skbaddr"), Some(8));
        assert_eq!(format_offset(FORMAT_6_18, "location"), Some(16));
        assert_eq!(format_offset(FORMAT_6_18, "reason"), Some(36));
        assert_eq!(format_offset(FORMAT_6_18, "missing"), None);
    }
}
