//! cgroup path → owner. Receives a cgroup path (from `/proc/PID/cgroup` or
//! a cgroup id resolved by [`super::CgroupPaths`]); emits who owns it as a
//! [`CgroupOwner`]: a pod's container, with the pod UID the kubelet put in
//! the path and the container id and runtime the runtime put below it, or
//! the kubelet itself. Both kubelet cgroup drivers:
//!
//! | driver | pod cgroup | container cgroup below it |
//! |---|---|---|
//! | systemd | `kubepods-besteffort-pod<uid with underscores>.slice` | `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` |
//! | cgroupfs | `kubepods/burstable/pod<uid>` | `<id>` |
//!
//! The kubelet: `kubelet.service` (systemd, under any slice), `kubelet` or
//! `kubelet.slice` (cgroupfs `--kubelet-cgroups`).

use std::sync::Arc;

use crate::model::CgroupOwner;

use crate::enrich::view::{Pod, View};

/// A container runtime's name for a container's cgroup (systemd driver, and
/// cri-o with the cgroupfs driver, which names them the same without
/// `.scope`).
struct RuntimeScope {
    /// What precedes the container id (`cri-containerd-`).
    prefix: &'static str,
    /// The runtime's name as reported in [`CgroupOwner::Pod::runtime`].
    runtime: &'static str,
    /// Whether the cgroup holds the container's processes (`false` for
    /// cri-o's conmon monitor, which carries the container's id).
    is_container: bool,
}

/// Longest prefix first where one is a prefix of another (`crio-conmon-`
/// before `crio-`).
const RUNTIME_SCOPES: [RuntimeScope; 4] = [
    RuntimeScope {
        prefix: "cri-containerd-",
        runtime: "containerd",
        is_container: true,
    },
    RuntimeScope {
        prefix: "crio-conmon-",
        runtime: "cri-o",
        is_container: false,
    },
    RuntimeScope {
        prefix: "crio-",
        runtime: "cri-o",
        is_container: true,
    },
    RuntimeScope {
        prefix: "docker-",
        runtime: "docker",
        is_container: true,
    },
];

/// cgroup names the kubelet runs in.
const KUBELET_SEGMENTS: [&str; 3] = ["kubelet.service", "kubelet.slice", "kubelet"];

fn is_uid(candidate: &str) -> bool {
    candidate.len() == 36
        && candidate
            .bytes()
            .enumerate()
            .all(|(index, byte)| match index {
                8 | 13 | 18 | 23 => byte == b'-',
                _ => byte.is_ascii_hexdigit(),
            })
}

/// A container id: 64 lowercase hex digits as runtimes write them; 12 to 64
/// accepted (short ids).
fn is_container_id(candidate: &str) -> bool {
    (12..=64).contains(&candidate.len())
        && candidate
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The pod UID (with dashes) a single path segment names, if it is a
/// kubelet pod cgroup. `path` is the whole path (the cgroupfs driver's
/// `pod<uid>` counts only below `kubepods`).
fn segment_pod_uid(segment: &str, path: &str) -> Option<String> {
    // systemd driver: kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice
    if let Some(slice) = segment.strip_suffix(".slice")
        && slice.starts_with("kubepods")
        && let Some((_, uid)) = slice.rsplit_once("-pod")
    {
        let uid = uid.replace('_', "-");
        if is_uid(&uid) {
            return Some(uid);
        }
    }
    // cgroupfs driver: kubepods/burstable/pod<uid>
    if let Some(uid) = segment.strip_prefix("pod")
        && is_uid(uid)
        && path.contains("kubepods")
    {
        return Some(uid.to_string());
    }
    None
}

/// The pod cgroup in a path: the pod UID, and the segment right below the
/// pod's cgroup (the container's), if any.
fn pod_cgroup(path: &str) -> Option<(String, Option<&str>)> {
    let mut child = None;
    for segment in path.rsplit('/').filter(|segment| !segment.is_empty()) {
        if let Some(uid) = segment_pod_uid(segment, path) {
            return Some((uid, child));
        }
        child = Some(segment);
    }
    None
}

/// The container id and runtime a container cgroup's name gives: each
/// `None` when the name does not give it.
fn container(segment: &str) -> (Option<String>, Option<String>) {
    let (name, is_scope) = match segment.strip_suffix(".scope") {
        Some(name) => (name, true),
        None => (segment, false),
    };
    for scope in &RUNTIME_SCOPES {
        if let Some(id) = name.strip_prefix(scope.prefix) {
            if !is_container_id(id) {
                return (None, None);
            }
            let id = scope.is_container.then(|| id.to_string());
            return (id, Some(scope.runtime.to_string()));
        }
    }
    // cgroupfs driver (containerd, docker): the bare id, runtime unnamed.
    if !is_scope && is_container_id(name) {
        return (Some(name.to_string()), None);
    }
    (None, None)
}

/// The pod UID (with dashes) in a kubelet cgroup path, if any.
pub fn pod_uid(path: &str) -> Option<String> {
    pod_cgroup(path).map(|(uid, _)| uid)
}

/// Who owns the cgroup at `path` (relative to the cgroup2 root, as
/// [`super::CgroupPaths::resolve`] gives it): a pod's container (the pod
/// UID from either kubelet cgroup driver; the container id and runtime from
/// the cgroup right below the pod's, when it names them), or the kubelet.
/// `None` for anything else (system services, user sessions, the root).
///
/// A cgroup nested below a container's (`…/cri-containerd-<id>.scope/init`)
/// belongs to that container.
///
/// ```
/// use dropscope::{enrich::cgroup::owner, model::CgroupOwner};
///
/// assert_eq!(owner("/system.slice/kubelet.service"), Some(CgroupOwner::Kubelet));
/// ```
pub fn owner(path: &str) -> Option<CgroupOwner> {
    if let Some((uid, child)) = pod_cgroup(path) {
        let (container_id, runtime) = child.map(container).unwrap_or_default();
        return Some(CgroupOwner::Pod {
            uid,
            container_id,
            runtime,
        });
    }
    path.rsplit('/')
        .any(|segment| KUBELET_SEGMENTS.contains(&segment))
        .then_some(CgroupOwner::Kubelet)
}

/// The pod whose cgroup this is.
pub fn pod_for_cgroup<'a>(view: &View<'a>, path: &str) -> Option<&'a Arc<Pod>> {
    view.pod_by_uid(&pod_uid(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e";
    const ID: &str = "4f2c0d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d";

    #[test]
    fn kubelet_cgroup_paths() {
        let cases = [
            (
                "systemd besteffort",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice/cri-containerd-abc.scope",
                Some(UID),
            ),
            (
                "systemd guaranteed",
                "/kubepods.slice/kubepods-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice",
                Some(UID),
            ),
            (
                "cgroupfs burstable",
                "/kubepods/burstable/pod0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e/4f2c0d",
                Some(UID),
            ),
            (
                "cgroupfs guaranteed",
                "/kubepods/pod0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e",
                Some(UID),
            ),
            ("not a pod", "/system.slice/containerd.service", None),
            ("bad uid", "/kubepods/burstable/podnot-a-uid", None),
        ];
        for (name, path, want) in cases {
            assert_eq!(pod_uid(path).as_deref(), want, "{name}");
        }
    }

    fn pod(container_id: Option<&str>, runtime: Option<&str>) -> Option<CgroupOwner> {
        Some(CgroupOwner::Pod {
            uid: UID.to_string(),
            container_id: container_id.map(str::to_string),
            runtime: runtime.map(str::to_string),
        })
    }

    #[test]
    fn owners_of_cgroup_layouts() {
        let systemd_pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice";
        let cgroupfs_pod = "/kubepods/burstable/pod0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e";
        let short = &ID[..12];
        let rows: Vec<(&str, String, Option<CgroupOwner>)> = vec![
            (
                "systemd containerd",
                format!("{systemd_pod}/cri-containerd-{ID}.scope"),
                pod(Some(ID), Some("containerd")),
            ),
            (
                "systemd cri-o",
                format!("{systemd_pod}/crio-{ID}.scope"),
                pod(Some(ID), Some("cri-o")),
            ),
            (
                "systemd cri-o conmon is not the container",
                format!("{systemd_pod}/crio-conmon-{ID}.scope"),
                pod(None, Some("cri-o")),
            ),
            (
                "systemd docker",
                format!("{systemd_pod}/docker-{ID}.scope"),
                pod(Some(ID), Some("docker")),
            ),
            (
                "systemd guaranteed pod, containerd",
                format!(
                    "/kubepods.slice/kubepods-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice/cri-containerd-{ID}.scope"
                ),
                pod(Some(ID), Some("containerd")),
            ),
            (
                "systemd cgroup nested below the container's",
                format!("{systemd_pod}/crio-{ID}.scope/container"),
                pod(Some(ID), Some("cri-o")),
            ),
            (
                "systemd short id",
                format!("{systemd_pod}/cri-containerd-{short}.scope"),
                pod(Some(short), Some("containerd")),
            ),
            (
                "systemd pod slice itself",
                systemd_pod.to_string(),
                pod(None, None),
            ),
            (
                "systemd unknown scope below the pod",
                format!("{systemd_pod}/podman-{ID}.scope"),
                pod(None, None),
            ),
            (
                "systemd id too short",
                format!("{systemd_pod}/cri-containerd-{}.scope", &ID[..11]),
                pod(None, None),
            ),
            (
                "systemd id too long",
                format!("{systemd_pod}/cri-containerd-{ID}0.scope"),
                pod(None, None),
            ),
            (
                "systemd id upper case",
                format!("{systemd_pod}/docker-{}.scope", ID.to_uppercase()),
                pod(None, None),
            ),
            (
                "cgroupfs container",
                format!("{cgroupfs_pod}/{ID}"),
                pod(Some(ID), None),
            ),
            (
                "cgroupfs besteffort container",
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                pod(Some(ID), None),
            ),
            (
                "cgroupfs guaranteed container",
                format!("/kubepods/pod{UID}/{ID}"),
                pod(Some(ID), None),
            ),
            (
                "cgroupfs cri-o container",
                format!("{cgroupfs_pod}/crio-{ID}"),
                pod(Some(ID), Some("cri-o")),
            ),
            (
                "cgroupfs pod itself",
                cgroupfs_pod.to_string(),
                pod(None, None),
            ),
            (
                "cgroupfs pod, trailing slash",
                format!("{cgroupfs_pod}/"),
                pod(None, None),
            ),
            (
                "cgroupfs not a container id",
                format!("{cgroupfs_pod}/not-hex"),
                pod(None, None),
            ),
            (
                "cgroupfs bare id with .scope",
                format!("{cgroupfs_pod}/{ID}.scope"),
                pod(None, None),
            ),
            (
                "kubelet, systemd",
                "/system.slice/kubelet.service".to_string(),
                Some(CgroupOwner::Kubelet),
            ),
            (
                "kubelet, systemd, another slice",
                "/runtime.slice/kubelet.service".to_string(),
                Some(CgroupOwner::Kubelet),
            ),
            (
                "kubelet, systemd, nested node (kind)",
                format!("/system.slice/docker-{ID}.scope/kubelet.slice/kubelet.service"),
                Some(CgroupOwner::Kubelet),
            ),
            (
                "kubelet, cgroupfs --kubelet-cgroups=/kubelet",
                "/kubelet".to_string(),
                Some(CgroupOwner::Kubelet),
            ),
            (
                "kubelet, cgroupfs --kubelet-cgroups=/kubelet.slice",
                "/kubelet.slice".to_string(),
                Some(CgroupOwner::Kubelet),
            ),
            (
                "kubelet, cgroupfs under a parent",
                "/system/kubelet".to_string(),
                Some(CgroupOwner::Kubelet),
            ),
            (
                "container runtime service",
                "/system.slice/containerd.service".to_string(),
                None,
            ),
            (
                "a service named like the kubelet",
                "/system.slice/kubelet-watchdog.service".to_string(),
                None,
            ),
            (
                "kubepods slice without a pod",
                "/kubepods.slice/kubepods-burstable.slice".to_string(),
                None,
            ),
            (
                "pod<uid> outside kubepods",
                format!("/machine/pod{UID}/{ID}"),
                None,
            ),
            (
                "docker outside kubernetes",
                format!("/system.slice/docker-{ID}.scope"),
                None,
            ),
            (
                "user session",
                "/user.slice/user-1000.slice/session-3.scope".to_string(),
                None,
            ),
            ("root", "/".to_string(), None),
            ("empty", String::new(), None),
        ];
        for (layout, path, want) in rows {
            assert_eq!(owner(&path), want, "{layout}: {path}");
        }
    }
}
