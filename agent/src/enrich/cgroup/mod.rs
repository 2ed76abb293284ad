//! cgroup → owner. Receives the cgroup v2 id the kernel programs report for
//! each TCP connect or DNS query (`bpf_get_current_cgroup_id`: the inode
//! number of the cgroup's directory in the cgroup2 filesystem); emits the
//! cgroup's path and who owns it, read from the kubelet's cgroup layout: a
//! pod's container or the kubelet itself.
//!
//! - [`mount`]: where the cgroup2 filesystem is mounted in this mount
//!   namespace ([`cgroup2_root`]), mounting one when none is.
//! - [`paths`]: cgroup id → path below that root ([`CgroupPaths`]), a
//!   bounded cache refreshed by rescanning the tree at most once per
//!   [`RESCAN_INTERVAL`].
//! - [`owner`](mod@owner): path → [`CgroupOwner`](crate::model::CgroupOwner)
//!   and pod UID, for both kubelet cgroup drivers; path → pod from the store.

pub mod mount;
pub mod owner;
pub mod paths;

use std::path::PathBuf;

pub use mount::{FALLBACK_MOUNT, MOUNTINFO, cgroup2_mount_in, cgroup2_root};
pub use owner::{owner, pod_for_cgroup, pod_uid};
pub use paths::{CgroupPaths, MAX_CGROUPS, RESCAN_INTERVAL};

/// Errors finding or mounting the cgroup v2 filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mount table could not be read.
    #[error(
        "cannot read {path}: {source} (mount /proc in the agent's mount namespace; it is needed to find the cgroup2 filesystem)"
    )]
    Mountinfo {
        /// The file (`/proc/self/mountinfo`).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No cgroup2 filesystem is mounted, and the directory to mount one on
    /// could not be created.
    #[error(
        "no cgroup2 filesystem is mounted and cannot create {path} to mount one: {source} (mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup`, or give the agent the host's /sys/fs/cgroup as a hostPath volume)"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No cgroup2 filesystem is mounted, and mounting one failed.
    #[error(
        "no cgroup2 filesystem is mounted and mounting one on {path} failed: mount(2): {source} (mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup`, give the agent the host's /sys/fs/cgroup as a hostPath volume, or run it with CAP_SYS_ADMIN)"
    )]
    Mount {
        /// The directory it tried to mount on.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
