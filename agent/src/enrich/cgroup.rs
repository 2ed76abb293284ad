//! cgroup → pod. Receives a cgroup path (from `/proc/PID/cgroup` or the
//! kernel's cgroup id resolved to a path); emits the pod UID the kubelet put
//! in it, and the pod from the store. Both kubelet cgroup drivers:
//! systemd (`kubepods-besteffort-pod<uid with underscores>.slice`) and
//! cgroupfs (`kubepods/burstable/pod<uid>`).

use std::sync::Arc;

use super::view::{Pod, View};

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

/// The pod UID (with dashes) in a kubelet cgroup path, if any.
pub fn pod_uid(path: &str) -> Option<String> {
    for segment in path.split('/').rev() {
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
    }
    None
}

/// The pod whose cgroup this is.
pub fn pod_for_cgroup<'a>(view: &View<'a>, path: &str) -> Option<&'a Arc<Pod>> {
    view.pod_by_uid(&pod_uid(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_cgroup_paths() {
        let uid = "0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e";
        let cases = [
            (
                "systemd besteffort",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice/cri-containerd-abc.scope",
                Some(uid),
            ),
            (
                "systemd guaranteed",
                "/kubepods.slice/kubepods-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice",
                Some(uid),
            ),
            (
                "cgroupfs burstable",
                "/kubepods/burstable/pod0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e/4f2c0d",
                Some(uid),
            ),
            (
                "cgroupfs guaranteed",
                "/kubepods/pod0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e",
                Some(uid),
            ),
            ("not a pod", "/system.slice/containerd.service", None),
            ("bad uid", "/kubepods/burstable/podnot-a-uid", None),
        ];
        for (name, path, want) in cases {
            assert_eq!(pod_uid(path).as_deref(), want, "{name}");
        }
    }
}
