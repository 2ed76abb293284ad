//! Names of the agent's own network namespace and its interfaces, for
//! events that would otherwise carry bare numbers: an interface index is
//! named only when the record happened in the agent's namespace (on a node,
//! with `hostNetwork`, the host's), since the same index means another
//! device elsewhere.

use std::{
    collections::HashMap,
    ffi::CStr,
    os::unix::fs::MetadataExt as _,
    time::{Duration, Instant},
};

use crate::model::Interface;

/// How long an interface name is trusted before it is looked up again (an
/// index can be reused by a new interface).
const NAME_TTL: Duration = Duration::from_secs(10);

/// Names kept at most; the cache starts over beyond.
const MAX_NAMES: usize = 4096;

/// A cache of interface names of the agent's network namespace.
#[derive(Debug, Default)]
pub struct InterfaceNames {
    names: HashMap<u32, (Option<String>, Instant)>,
}

impl InterfaceNames {
    /// Interface `ifindex` of this network namespace, named when it exists.
    pub fn interface(&mut self, ifindex: u32) -> Interface {
        let now = Instant::now();
        let name = match self.names.get(&ifindex) {
            Some((name, at)) if now.duration_since(*at) < NAME_TTL => name.clone(),
            _ => {
                let name = interface_name(ifindex);
                if self.names.len() > MAX_NAMES {
                    self.names.clear();
                }
                self.names.insert(ifindex, (name.clone(), now));
                name
            }
        };
        Interface { ifindex, name }
    }
}

/// The inode of the agent's network namespace (what the kernel records as
/// a drop's `netns`), when `/proc/self/ns/net` can be read.
pub fn own_netns() -> Option<u32> {
    let metadata = std::fs::metadata("/proc/self/ns/net").ok()?;
    u32::try_from(metadata.ino()).ok()
}

/// The name of interface `ifindex` in the agent's network namespace.
fn interface_name(ifindex: u32) -> Option<String> {
    if ifindex == 0 {
        return None;
    }
    let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer has IF_NAMESIZE bytes, as if_indextoname requires;
    // it returns NULL or a pointer into that buffer.
    let name = unsafe { libc::if_indextoname(ifindex, buffer.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into the buffer.
    let name = unsafe { CStr::from_ptr(buffer.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_named_and_index_zero_is_not() {
        let mut names = InterfaceNames::default();
        assert_eq!(names.interface(1).name.as_deref(), Some("lo"));
        assert_eq!(names.interface(0).name, None);
        assert!(own_netns().is_some_and(|inode| inode > 0));
    }
}
