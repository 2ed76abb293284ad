//! Where the cgroup v2 filesystem is. Receives this mount namespace's mount
//! table (`/proc/self/mountinfo`); emits the directory the cgroup2
//! filesystem is mounted on: `/sys/fs/cgroup` on a unified host,
//! `/sys/fs/cgroup/unified` on a hybrid one, wherever a container mounted it,
//! or, when none is mounted, one this module mounts at [`FALLBACK_MOUNT`].

use std::{
    ffi::OsString,
    fs, io,
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
};

use super::Error;

/// The mount table of the agent's mount namespace.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Where [`cgroup2_root`] mounts a cgroup2 filesystem when none is mounted.
pub const FALLBACK_MOUNT: &str = "/run/dropscope/cgroup2";

/// The cgroup2 mount point in a `/proc/self/mountinfo` text, if any: the
/// first whose root field is `/` (the whole hierarchy), else the first one
/// (a subtree bind-mounted into a container). Escapes in the mount point
/// (`\040` for a space, `\011`, `\012`, `\134`) are undone. Lines that are
/// not mountinfo lines are skipped.
///
/// ```
/// use dropscope::enrich::cgroup::cgroup2_mount_in;
///
/// let mountinfo = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
/// assert_eq!(cgroup2_mount_in(mountinfo), Some("/sys/fs/cgroup".into()));
/// ```
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for line in mountinfo.lines() {
        // mount-id parent-id major:minor root mount-point options [optional…] - fstype source super-options
        let Some((mount, filesystem)) = line.split_once(" - ") else {
            continue;
        };
        if filesystem.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let mut fields = mount.split(' ');
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let mount_point = unescape(mount_point);
        if root == "/" {
            return Some(mount_point);
        }
        subtree.get_or_insert(mount_point);
    }
    subtree
}

/// Undoes the kernel's octal escapes (`\ooo`) in a mountinfo field.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && let Some(digits) = bytes.get(index + 1..index + 4)
            && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        {
            let value = digits
                .iter()
                .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                index += 4;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The directory the cgroup2 filesystem is mounted on in this mount
/// namespace (read from [`MOUNTINFO`]). When none is mounted (a container
/// given only its own `/sys`), creates [`FALLBACK_MOUNT`], mounts cgroup2
/// there with `mount` (the caller's: `kernel::features::mount_cgroup2`,
/// needs CAP_SYS_ADMIN) and returns that.
pub fn cgroup2_root(mount: impl FnOnce(&Path) -> io::Result<()>) -> Result<PathBuf, Error> {
    find_or_mount(Path::new(MOUNTINFO), Path::new(FALLBACK_MOUNT), mount)
}

/// [`cgroup2_root`] with its mount table, fallback directory and mount call
/// given.
fn find_or_mount(
    mountinfo: &Path,
    fallback: &Path,
    mount: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<PathBuf, Error> {
    let text = fs::read_to_string(mountinfo).map_err(|source| Error::Mountinfo {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    if let Some(root) = cgroup2_mount_in(&text) {
        tracing::debug!(path = %root.display(), "cgroup2 found");
        return Ok(root);
    }
    fs::create_dir_all(fallback).map_err(|source| Error::CreateDir {
        path: fallback.to_path_buf(),
        source,
    })?;
    mount(fallback).map_err(|source| Error::Mount {
        path: fallback.to_path_buf(),
        source,
    })?;
    tracing::info!(
        path = %fallback.display(),
        "mounted cgroup2: none was mounted in this mount namespace"
    );
    Ok(fallback.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A systemd host in unified mode (cgroup v2 only).
    const UNIFIED: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
25 23 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw
26 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
27 23 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
28 23 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:11 - bpf bpf rw,mode=700
";

    /// A host in hybrid mode: v1 controllers plus v2 at `unified`.
    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
";

    /// A host on cgroup v1 only.
    const NONE: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
";

    /// A container without a cgroup namespace that was given its own
    /// subtree, then the whole hierarchy at a path with a space and a tab.
    const ESCAPED: &str = "\
1040 1039 0:26 /kubepods.slice/kubepods-pod1.slice /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime master:9 - cgroup2 cgroup2 rw
1041 1039 0:26 / /host/cgroup\\040v2\\011x\\134y rw,nosuid,nodev,noexec,relatime master:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_cgroup2_mount() {
        let rows = [
            ("unified", UNIFIED, Some("/sys/fs/cgroup")),
            ("hybrid", HYBRID, Some("/sys/fs/cgroup/unified")),
            ("none: cgroup v1 only", NONE, None),
            (
                "escaped, whole hierarchy preferred",
                ESCAPED,
                Some("/host/cgroup v2\tx\\y"),
            ),
            (
                "subtree only",
                "1040 1039 0:26 /kubepods.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                Some("/sys/fs/cgroup"),
            ),
            (
                "no optional fields",
                "5 1 0:26 / /cg rw - cgroup2 none rw\n",
                Some("/cg"),
            ),
            ("garbage", "not a mountinfo line\n\n", None),
            ("empty", "", None),
        ];
        for (name, mountinfo, want) in rows {
            assert_eq!(
                cgroup2_mount_in(mountinfo),
                want.map(PathBuf::from),
                "{name}"
            );
        }
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(r"a\040b"), PathBuf::from("a b"));
        assert_eq!(unescape(r"a\04"), PathBuf::from(r"a\04"));
        assert_eq!(unescape(r"a\089"), PathBuf::from(r"a\089"));
        assert_eq!(unescape(r"a\777"), PathBuf::from(r"a\777"));
        assert_eq!(unescape("\\"), PathBuf::from("\\"));
    }

    #[test]
    fn a_mounted_cgroup2_is_used_as_is() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mountinfo = dir.path().join("mountinfo");
        fs::write(&mountinfo, HYBRID)?;
        let fallback = dir.path().join("fallback");
        let root = find_or_mount(&mountinfo, &fallback, |_| {
            panic!("must not mount when one is mounted")
        })?;
        assert_eq!(root, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(!fallback.exists());
        Ok(())
    }

    #[test]
    fn none_mounted_mounts_at_the_fallback() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mountinfo = dir.path().join("mountinfo");
        fs::write(&mountinfo, NONE)?;
        let fallback = dir.path().join("run/dropscope/cgroup2");
        let mounted = Cell::new(false);
        let root = find_or_mount(&mountinfo, &fallback, |target| {
            assert!(target.is_dir(), "the directory is created first");
            mounted.set(true);
            Ok(())
        })?;
        assert_eq!(root, fallback);
        assert!(mounted.get());
        Ok(())
    }

    #[test]
    fn errors_name_the_file_and_the_fix() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("no-such-mountinfo");
        let error =
            find_or_mount(&missing, dir.path(), |_| Ok(())).expect_err("unreadable mountinfo");
        assert!(error.to_string().contains("no-such-mountinfo"), "{error}");

        let mountinfo = dir.path().join("mountinfo");
        fs::write(&mountinfo, NONE)?;
        let fallback = dir.path().join("cgroup2");
        let error = find_or_mount(&mountinfo, &fallback, |_| {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        })
        .expect_err("mount fails");
        let message = error.to_string();
        assert!(
            message.contains(&fallback.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("mount -t cgroup2 none /sys/fs/cgroup"),
            "{message}"
        );

        let file = dir.path().join("a-file");
        fs::write(&file, "")?;
        let error = find_or_mount(&mountinfo, &file.join("cgroup2"), |_| Ok(()))
            .expect_err("cannot create the directory");
        assert!(matches!(error, Error::CreateDir { .. }), "{error}");
        assert!(error.to_string().contains("a-file"), "{error}");
        Ok(())
    }
}
