//! Kubelet-shaped cgroups on the cgroup v2 hierarchy, for attributing a
//! socket to a pod's container (or to the kubelet) by the cgroup of the
//! process that opens it, the way the agent does on a real node.
//!
//! Every cgroup of a lab lives under `<v2 root>/ds<lab id>.slice/`, shaped
//! like the systemd cgroup driver lays pods out:
//! `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`
//! and `kubelet.service`. The lab removes the whole slice on drop (panics
//! included): processes still inside go back to the root cgroup, then the
//! directories are removed bottom-up.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// One cgroup directory on the v2 hierarchy.
#[derive(Clone, Debug)]
pub struct Cgroup {
    path: PathBuf,
    relative: String,
    id: u64,
}

impl Cgroup {
    /// Its absolute directory (write a pid to `cgroup.procs` in it to move
    /// a process there).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its path from the v2 root, with a leading `/`: what
    /// `/proc/<pid>/cgroup` shows after `0::`.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// Its cgroup id: the inode of its directory, what
    /// `bpf_get_current_cgroup_id()` returns for a process inside.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The cgroup v2 path of process `pid` (the `0::` line of
    /// `/proc/<pid>/cgroup`), with a leading `/`.
    pub fn of_process(pid: u32) -> Result<String> {
        let path = format!("/proc/{pid}/cgroup");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        text.lines()
            .find_map(|line| line.strip_prefix("0::"))
            .map(str::to_owned)
            .with_context(|| format!("no cgroup v2 line (0::) in {path}: {text:?}"))
    }

    fn make(root: &Path, path: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating cgroup {} (needs root)", path.display()))?;
        let id = std::fs::metadata(&path)
            .with_context(|| format!("stat {}", path.display()))?
            .ino();
        let relative = format!(
            "/{}",
            path.strip_prefix(root)
                .with_context(|| format!("{} is not under {}", path.display(), root.display()))?
                .display()
        );
        Ok(Self { path, relative, id })
    }
}

/// The cgroup of one container of a pod, kubelet-shaped (systemd driver,
/// BestEffort QoS, containerd).
#[derive(Clone, Debug)]
pub struct PodCgroup {
    uid: String,
    container_id: String,
    cgroup: Cgroup,
}

impl PodCgroup {
    /// The pod's UID, UUID-shaped with dashes (as `metadata.uid`).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The container id: 64 hex digits (as `containerStatuses[].containerID`
    /// after `containerd://`).
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The container's cgroup directory (absolute).
    pub fn path(&self) -> &Path {
        self.cgroup.path()
    }

    /// The container's cgroup path from the v2 root, leading `/`.
    pub fn relative(&self) -> &str {
        self.cgroup.relative()
    }

    /// The container's cgroup id (directory inode).
    pub fn id(&self) -> u64 {
        self.cgroup.id()
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }
}

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`
/// (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a
/// hybrid one).
pub fn v2_root() -> Result<PathBuf> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut found = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER
        let Some((mount, filesystem)) = line.split_once(" - ") else {
            continue;
        };
        if filesystem.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = mount.split_whitespace().collect();
        let [_, _, _, root, mount_point, ..] = fields[..] else {
            continue;
        };
        let path = PathBuf::from(unescape(mount_point));
        // The mount of the whole hierarchy wins over bind mounts of a part.
        if root == "/" {
            return Ok(path);
        }
        found.get_or_insert(path);
    }
    found.context(
        "no cgroup2 file system is mounted (looked in /proc/self/mountinfo): \
         mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`",
    )
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let digits = bytes.get(index + 1..index + 4).unwrap_or_default();
        if bytes[index] == b'\\'
            && digits.len() == 3
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |value, d| value * 8 + u32::from(d - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                index += 4;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// 64-bit FNV-1a of `parts`, each followed by a zero byte.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// `words` 64-bit words of hex derived from `seed`, stable across runs.
fn hex_words(seed: &str, words: u8) -> String {
    (0..words)
        .map(|word| format!("{:016x}", fnv1a(&[seed.as_bytes(), &[word]])))
        .collect()
}

/// A UUID (version 4 layout) derived from `seed`.
pub(super) fn uuid_from(seed: &str) -> String {
    let hex = hex_words(seed, 2);
    // Version 4, variant 10xx: shaped like what the API server hands out.
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16] % 4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    )
}

/// A containerd container id (64 hex digits) derived from `seed`.
pub(super) fn container_id_from(seed: &str) -> String {
    hex_words(seed, 4)
}

/// The cgroups of one lab: `ds<id>.slice` on the v2 hierarchy, made on
/// first use, removed with everything below it on drop.
#[derive(Debug)]
pub(super) struct LabCgroups {
    lab: u32,
    /// `(v2 root, the lab's slice)` once made.
    made: Mutex<Option<(PathBuf, PathBuf)>>,
}

impl LabCgroups {
    pub(super) fn new(lab: u32) -> Self {
        Self {
            lab,
            made: Mutex::new(None),
        }
    }

    /// The v2 root and the lab's slice, made (a leftover of an earlier run
    /// with the same lab id removed first) on the first call.
    fn slice(&self) -> Result<(PathBuf, PathBuf)> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(made) = made.as_ref() {
            return Ok(made.clone());
        }
        let root = v2_root()?;
        let slice = root.join(format!("ds{}.slice", self.lab));
        if slice.exists() {
            remove_tree(&root, &slice).with_context(|| {
                format!("removing the leftover cgroup {} first", slice.display())
            })?;
        }
        std::fs::create_dir(&slice)
            .with_context(|| format!("creating cgroup {} (needs root)", slice.display()))?;
        *made = Some((root.clone(), slice.clone()));
        Ok((root, slice))
    }

    /// `ds<lab>.slice/<relative>`, made with its parents.
    pub(super) fn make(&self, relative: &Path) -> Result<Cgroup> {
        let (root, slice) = self.slice()?;
        Cgroup::make(&root, slice.join(relative))
    }

    /// The cgroup of a pod's container, kubelet-shaped.
    pub(super) fn pod(&self, pod_name: &str) -> Result<PodCgroup> {
        let seed = format!("ds{}/{pod_name}", self.lab);
        let uid = uuid_from(&seed);
        let container_id = container_id_from(&seed);
        let relative = PathBuf::from("kubepods.slice")
            .join("kubepods-besteffort.slice")
            .join(format!(
                "kubepods-besteffort-pod{}.slice",
                uid.replace('-', "_")
            ))
            .join(format!("cri-containerd-{container_id}.scope"));
        Ok(PodCgroup {
            uid,
            container_id,
            cgroup: self.make(&relative)?,
        })
    }
}

impl Drop for LabCgroups {
    fn drop(&mut self) {
        let made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((root, slice)) = made.as_ref()
            && let Err(error) = remove_tree(root, slice)
        {
            eprintln!("lab cleanup: {error:#}");
        }
    }
}

/// Removes cgroup `dir` and everything below it: processes go to the root
/// cgroup, then the directories go, deepest first.
pub fn remove_tree(root: &Path, dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("listing cgroup {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing cgroup {}", dir.display()))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_tree(root, &entry.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            // A process that exits meanwhile is no error.
            let _ = std::fs::write(root.join("cgroup.procs"), pid);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Busy while a moved or exiting process is still accounted.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                if Instant::now() > deadline {
                    bail!(
                        "cgroup {} stays busy (processes: {procs:?}): {error}",
                        dir.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("removing cgroup {}", dir.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_shaped_like_kubernetes_ones() {
        let uid = uuid_from("ds7/client");
        assert_eq!(uid, uuid_from("ds7/client"));
        assert_ne!(uid, uuid_from("ds8/client"));
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
        assert!(uid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        let container = container_id_from("ds7/client");
        assert_eq!(container.len(), 64);
        assert!(container.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/sys/fs/cgroup/a\040b"), "/sys/fs/cgroup/a b");
        assert_eq!(unescape("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }
}
