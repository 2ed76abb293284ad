//! A CPU limit for one process, like a DaemonSet's `resources.limits.cpu`:
//! a cgroup of its own with a CFS quota, on whichever hierarchy the machine
//! has the cpu controller (cgroup v2's `cpu.max`, or v1's
//! `cpu.cfs_quota_us`). Removed on drop, the process moved back first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A process held to a share of one CPU; released on drop.
pub struct CpuLimit {
    group: PathBuf,
    root: PathBuf,
    pid: u32,
}

/// The period the quota is a share of.
const PERIOD_US: u64 = 100_000;

impl CpuLimit {
    /// Holds `pid` (and its threads) to `percent` of one CPU.
    pub fn apply(pid: u32, percent: u64, name: &str) -> Result<Self> {
        let quota = PERIOD_US * percent / 100;
        let (root, v2) = hierarchy()?;
        let group = root.join(name);
        std::fs::create_dir_all(&group).with_context(|| format!("creating {}", group.display()))?;
        let limit = Self {
            group: group.clone(),
            root,
            pid,
        };
        if v2 {
            write(&group.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
        } else {
            write(&group.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&group.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        write(&group.join("cgroup.procs"), &pid.to_string())?;
        Ok(limit)
    }
}

/// Where the cpu controller is, and whether it is cgroup v2.
fn hierarchy() -> Result<(PathBuf, bool)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading mounts")?;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, mount_point, kind, options, ..] = fields[..] else {
            continue;
        };
        let path = PathBuf::from(mount_point);
        if kind == "cgroup2" {
            let controllers =
                std::fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|name| name == "cpu") {
                // Children may only use the cpu controller once it is on.
                let _ = write(&path.join("cgroup.subtree_control"), "+cpu");
                return Ok((path, true));
            }
        } else if kind == "cgroup" && options.split(',').any(|option| option == "cpu") {
            return Ok((path, false));
        }
    }
    bail!("no cgroup hierarchy with the cpu controller is mounted (looked in /proc/self/mounts)")
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // Back to the root, if it still runs; then the group can go.
        let _ = std::fs::write(self.root.join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.group);
    }
}
