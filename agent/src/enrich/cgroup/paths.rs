//! cgroup id → path. Receives the cgroup v2 ids the kernel programs report
//! (a cgroup's id is its directory's inode number in the cgroup2
//! filesystem); emits the cgroup's path below the cgroup2 root, cached.
//!
//! A miss rescans the whole tree, at most once per [`RESCAN_INTERVAL`]; a
//! rescan replaces the cache, so cgroups removed since are forgotten. At
//! most [`MAX_CGROUPS`] are kept; the rest are counted
//! ([`CgroupPaths::overflowed`]).

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::model::CgroupOwner;

use super::owner::owner;

/// The least time between two rescans of the cgroup tree.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The most cgroups [`CgroupPaths`] keeps (a rescan keeps the first ones it
/// finds, walking depth first).
pub const MAX_CGROUPS: usize = 65_536;

/// cgroup id → path below the cgroup2 root (`/kubepods.slice/…`, `/` for
/// the root), cached. Resolving reads the filesystem on a miss: call it off
/// the async runtime's worker threads (or in a blocking task).
#[derive(Debug)]
pub struct CgroupPaths {
    /// Where the cgroup2 filesystem is mounted.
    root: PathBuf,
    /// What the last rescan found.
    paths: HashMap<u64, Arc<str>>,
    /// When the last rescan ran.
    rescanned: Option<Instant>,
    /// cgroups the last rescan found beyond `limit`.
    overflowed: u64,
    /// The most entries kept ([`MAX_CGROUPS`]; smaller in tests).
    limit: usize,
}

impl CgroupPaths {
    /// An empty cache over the cgroup2 filesystem mounted at `root` (see
    /// [`super::cgroup2_root`]). The first miss scans the tree.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            rescanned: None,
            overflowed: 0,
            limit: MAX_CGROUPS,
        }
    }

    /// Where the cgroup2 filesystem is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of cgroup `id` below the root, with a leading `/` (`/` for
    /// the root itself). A cached id answers at once; an unknown one
    /// rescans the tree unless a rescan ran less than [`RESCAN_INTERVAL`]
    /// ago, and is `None` when still unknown.
    pub fn resolve(&mut self, id: u64) -> Option<Arc<str>> {
        self.resolve_at(id, Instant::now())
    }

    /// [`Self::resolve`] with the current time given.
    pub fn resolve_at(&mut self, id: u64, now: Instant) -> Option<Arc<str>> {
        if let Some(path) = self.paths.get(&id) {
            return Some(Arc::clone(path));
        }
        if self
            .rescanned
            .is_some_and(|rescanned| now.saturating_duration_since(rescanned) < RESCAN_INTERVAL)
        {
            return None;
        }
        self.rescan(now);
        self.paths.get(&id).cloned()
    }

    /// The path of cgroup `id` (as [`Self::resolve`]) and who owns it (see
    /// [`super::owner()`]).
    pub fn owner_of(&mut self, id: u64) -> Option<(Arc<str>, Option<CgroupOwner>)> {
        let path = self.resolve(id)?;
        let owner = owner(&path);
        Some((path, owner))
    }

    /// How many cgroups the last rescan found beyond [`MAX_CGROUPS`] and did
    /// not keep (their ids resolve to `None`).
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// How many cgroups are cached.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether no cgroup is cached (none scanned yet, or the root is gone).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Walks the tree below the root, depth first, without following
    /// symbolic links; directories that vanish mid-walk or cannot be read
    /// are skipped. Replaces the cache with what it finds.
    fn rescan(&mut self, now: Instant) {
        self.rescanned = Some(now);
        let mut paths = HashMap::new();
        let mut overflowed = 0u64;
        match fs::metadata(&self.root) {
            Ok(metadata) if metadata.is_dir() => {
                paths.insert(metadata.ino(), Arc::from("/"));
            }
            Ok(_) => {
                tracing::debug!(root = %self.root.display(), "cgroup root is not a directory");
            }
            Err(error) => {
                tracing::debug!(root = %self.root.display(), %error, "cannot read the cgroup root");
            }
        }
        // One open directory per level: memory and descriptors grow with
        // depth only.
        let mut stack = Vec::new();
        if let Some(entries) = read_dir(&self.root) {
            stack.push((entries, String::new()));
        }
        while let Some((entries, parent)) = stack.last_mut() {
            let Some(entry) = entries.next() else {
                stack.pop();
                continue;
            };
            let Ok(entry) = entry else {
                continue;
            };
            // From the directory entry: a symbolic link is not a directory.
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if !is_dir {
                continue;
            }
            // lstat: does not follow links; fails if the cgroup is gone.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let path = format!("{parent}/{}", entry.file_name().to_string_lossy());
            if paths.len() < self.limit {
                paths.insert(metadata.ino(), Arc::from(path.as_str()));
            } else {
                overflowed += 1;
            }
            if let Some(children) = read_dir(&entry.path()) {
                stack.push((children, path));
            }
        }
        if overflowed > 0 {
            tracing::debug!(
                kept = paths.len(),
                overflowed,
                "more cgroups than the cache keeps"
            );
        }
        self.paths = paths;
        self.overflowed = overflowed;
    }
}

/// The entries of `dir`, or `None` when it vanished or cannot be read.
fn read_dir(dir: &Path) -> Option<fs::ReadDir> {
    match fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::debug!(dir = %dir.display(), %error, "cannot read a cgroup directory");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn id(path: &Path) -> io::Result<u64> {
        Ok(fs::symlink_metadata(path)?.ino())
    }

    #[test]
    fn resolves_existing_cgroups_and_the_root() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("system.slice/kubelet.service"))?;
        fs::create_dir_all(root.join("kubepods/burstable"))?;
        fs::write(root.join("cgroup.procs"), "")?;
        let mut paths = CgroupPaths::new(root.to_path_buf());
        let now = Instant::now();

        assert_eq!(paths.resolve_at(id(root)?, now).as_deref(), Some("/"));
        for relative in [
            "system.slice",
            "system.slice/kubelet.service",
            "kubepods",
            "kubepods/burstable",
        ] {
            let want = format!("/{relative}");
            assert_eq!(
                paths.resolve_at(id(&root.join(relative))?, now).as_deref(),
                Some(want.as_str()),
            );
        }
        assert_eq!(paths.resolve_at(id(&root.join("cgroup.procs"))?, now), None);
        assert_eq!(paths.len(), 5);
        assert_eq!(paths.overflowed(), 0);
        Ok(())
    }

    #[test]
    fn a_new_cgroup_is_found_after_the_interval_not_before() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let mut paths = CgroupPaths::new(root.to_path_buf());
        let start = Instant::now();
        assert_eq!(paths.resolve_at(id(root)?, start).as_deref(), Some("/"));

        fs::create_dir_all(root.join("kubepods/pod1"))?;
        let new = id(&root.join("kubepods/pod1"))?;
        let almost = start + RESCAN_INTERVAL - Duration::from_millis(1);
        assert_eq!(paths.resolve_at(new, almost), None, "within the interval");
        assert_eq!(
            paths.resolve_at(new, start + RESCAN_INTERVAL).as_deref(),
            Some("/kubepods/pod1")
        );
        Ok(())
    }

    #[test]
    fn a_miss_within_the_interval_does_not_rescan() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let mut paths = CgroupPaths::new(root.to_path_buf());
        let start = Instant::now();
        assert_eq!(paths.resolve_at(u64::MAX, start), None);
        fs::create_dir(root.join("later"))?;
        let later = id(&root.join("later"))?;
        let soon = start + Duration::from_millis(500);
        assert_eq!(paths.resolve_at(later, soon), None);
        // The interval counts from the rescan, not from the last miss.
        assert_eq!(
            paths.resolve_at(later, start + RESCAN_INTERVAL).as_deref(),
            Some("/later")
        );
        Ok(())
    }

    #[test]
    fn removed_cgroups_are_forgotten_after_a_rescan() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("kubepods/pod1/abc"))?;
        fs::create_dir(root.join("keep"))?;
        let gone = id(&root.join("kubepods/pod1/abc"))?;
        let keep = id(&root.join("keep"))?;
        let mut paths = CgroupPaths::new(root.to_path_buf());
        let start = Instant::now();
        assert_eq!(
            paths.resolve_at(gone, start).as_deref(),
            Some("/kubepods/pod1/abc")
        );

        fs::remove_dir(root.join("kubepods/pod1/abc"))?;
        // Cached until a rescan: ids are not reused while it is.
        assert_eq!(
            paths.resolve_at(gone, start).as_deref(),
            Some("/kubepods/pod1/abc")
        );
        let later = start + RESCAN_INTERVAL;
        assert_eq!(paths.resolve_at(u64::MAX, later), None, "a miss rescans");
        assert_eq!(paths.resolve_at(gone, later), None);
        assert_eq!(paths.resolve_at(keep, later).as_deref(), Some("/keep"));
        Ok(())
    }

    #[test]
    fn symbolic_links_are_not_followed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("a/b"))?;
        fs::create_dir(outside.path().join("elsewhere"))?;
        std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop"))?;
        std::os::unix::fs::symlink(outside.path(), root.join("out"))?;
        let mut paths = CgroupPaths::new(root.to_path_buf());
        let now = Instant::now();
        assert_eq!(
            paths.resolve_at(id(&root.join("a/b"))?, now).as_deref(),
            Some("/a/b")
        );
        assert_eq!(paths.resolve_at(id(outside.path())?, now), None);
        assert_eq!(
            paths.resolve_at(id(&outside.path().join("elsewhere"))?, now),
            None
        );
        assert_eq!(paths.len(), 3, "root, /a, /a/b");
        Ok(())
    }

    #[test]
    fn keeps_at_most_the_limit_and_counts_the_rest() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        for name in ["a/x", "b/y", "c/z"] {
            fs::create_dir_all(root.join(name))?;
        }
        let mut paths = CgroupPaths::new(root.to_path_buf());
        paths.limit = 4;
        paths.resolve_at(id(root)?, Instant::now());
        assert_eq!(paths.len(), 4);
        assert_eq!(paths.overflowed(), 3);
        Ok(())
    }

    #[test]
    fn a_missing_root_resolves_nothing() {
        let mut paths = CgroupPaths::new(PathBuf::from("/nonexistent/dropscope/cgroup2"));
        assert_eq!(paths.resolve_at(1, Instant::now()), None);
        assert!(paths.is_empty());
    }

    #[test]
    fn owner_of_reads_the_path() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let container = "kubepods/burstable/pod0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e/4f2c0d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d";
        fs::create_dir_all(root.join(container))?;
        fs::create_dir_all(root.join("system.slice/kubelet.service"))?;
        let mut paths = CgroupPaths::new(root.to_path_buf());

        let (path, found) = paths
            .owner_of(id(&root.join(container))?)
            .expect("resolved");
        assert_eq!(&*path, format!("/{container}"));
        assert_eq!(
            found,
            Some(CgroupOwner::Pod {
                uid: "0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e".into(),
                container_id: Some(
                    "4f2c0d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d".into()
                ),
                runtime: None,
            })
        );
        let kubelet = paths.owner_of(id(&root.join("system.slice/kubelet.service"))?);
        assert_eq!(
            kubelet,
            Some((
                Arc::from("/system.slice/kubelet.service"),
                Some(CgroupOwner::Kubelet)
            ))
        );
        assert_eq!(
            paths.owner_of(id(&root.join("system.slice"))?),
            Some((Arc::from("/system.slice"), None))
        );
        Ok(())
    }
}
