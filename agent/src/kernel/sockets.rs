//! The socket and wire hooks: cgroup `connect4`/`connect6` at the cgroup v2
//! root, the `sock:inet_sock_set_state` and `tcp:tcp_retransmit_skb`
//! tracepoints, and tc programs on every Ethernet interface of the agent's
//! network namespace except bridges and loopback (the host side of pod
//! veths and the uplinks), followed as interfaces come and go.
//!
//! tc programs attach as TCX links where the kernel has them (6.6+: links
//! live with the agent's file descriptors, so nothing stays attached if it
//! dies) and as clsact filters otherwise.

use std::{
    collections::HashMap,
    ffi::{CStr, CString},
    path::PathBuf,
};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSockAddr, FEntry, SchedClassifier, TcAttachType, TracePoint,
        tc::SchedClassifierLinkId,
    },
};
use dropscope_abi::maps;
use tokio::io::{Interest, unix::AsyncFd};

use super::{Error, map_handles::take};

/// Which socket and wire hooks to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// Follow TCP connects (the socket tracepoints).
    pub connects: bool,
    /// Attach the cgroup connect hooks (with `connects`).
    pub cgroup_hooks: bool,
    /// The cgroup v2 mount the connect hooks attach at (set by the pipeline
    /// once found).
    pub cgroup_root: Option<PathBuf>,
    /// Attach the tc programs (DNS, SYNs leaving the node).
    pub tc: bool,
    /// Sockets in SYN_SENT followed at once.
    pub connect_slots: u32,
}

/// The maps the socket capture step reads.
pub struct SocketMaps {
    /// Connect and DNS records, registered with the async reactor.
    pub events: AsyncFd<RingBuf<MapData>>,
    /// Per-CPU counters of the socket and tc hooks.
    pub stats: PerCpuArray<MapData, u64>,
}

const CONNECT4: &str = "connect4";
const CONNECT6: &str = "connect6";
const STATE: &str = "inet_sock_set_state";
const RETRANSMIT: &str = "tcp_retransmit_skb";
const SYNACK: &str = "tcp_retransmit_synack";
const TCP_CONNECT: &str = "tcp_connect";
const TC_INGRESS: &str = "tc_ingress";
const TC_EGRESS: &str = "tc_egress";

/// Loads and attaches the connect hooks and socket tracepoints, and loads
/// the tc programs (attached by [`Interfaces::refresh`]). Returns the names
/// of what is attached.
pub fn attach(ebpf: &mut Ebpf, config: &SocketConfig) -> Result<Vec<&'static str>, Error> {
    let mut attached = Vec::new();
    if config.connects
        && config.cgroup_hooks
        && let Some(root) = &config.cgroup_root
    {
        let cgroup = std::fs::File::open(root).map_err(|source| Error::Read {
            path: root.clone(),
            source,
        })?;
        for name in [CONNECT4, CONNECT6] {
            let program: &mut CgroupSockAddr = program(ebpf, name)?;
            program
                .load()
                .map_err(|source| program_error("load", name, source))?;
            program
                // A cgroup link (5.7+) always coexists with other programs; its
                // flags must be 0.
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(|source| program_error("attach", name, source))?;
            attached.push(name);
        }
    }
    let tracepoints: &[(&'static str, &str)] = if config.connects {
        &[(STATE, "sock"), (RETRANSMIT, "tcp"), (SYNACK, "tcp")]
    } else {
        &[]
    };
    for &(name, category) in tracepoints {
        let program: &mut TracePoint = program(ebpf, name)?;
        program
            .load()
            .map_err(|source| program_error("load", name, source))?;
        program
            .attach(category, name)
            .map_err(|source| program_error("attach", name, source))?;
        attached.push(name);
    }
    if config.connects {
        // Where the kernel allows fentry, a connect's port is known as its
        // first SYN leaves; otherwise from its first retransmit.
        match attach_fentry(ebpf, TCP_CONNECT) {
            Ok(()) => attached.push(TCP_CONNECT),
            Err(error) => tracing::warn!(
                %error,
                "fentry/tcp_connect unavailable: a connect's first SYN is not matched to it on the wire (its retransmits are)"
            ),
        }
    }
    if config.tc {
        for name in [TC_INGRESS, TC_EGRESS] {
            let program: &mut SchedClassifier = program(ebpf, name)?;
            program
                .load()
                .map_err(|source| program_error("load", name, source))?;
        }
        attached.push("tc");
    }
    tracing::info!(programs = ?attached, cgroup_root = ?config.cgroup_root, "attached socket hooks");
    Ok(attached)
}

fn attach_fentry(ebpf: &mut Ebpf, name: &'static str) -> Result<(), Error> {
    let btf = aya::Btf::from_sys_fs().map_err(|error| Error::BtfRead {
        path: super::btf::VMLINUX_BTF.into(),
        message: error.to_string(),
    })?;
    let program: &mut FEntry = program(ebpf, name)?;
    program
        .load(name, &btf)
        .map_err(|source| program_error("load", name, source))?;
    program
        .attach()
        .map_err(|source| program_error("attach", name, source))?;
    Ok(())
}

/// Takes the socket hooks' maps.
pub fn maps(ebpf: &mut Ebpf) -> Result<SocketMaps, Error> {
    let events: RingBuf<MapData> = take(ebpf, maps::SOCKET_EVENTS)?;
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
    // owns the ring buffer, and always returns that same fd.
    let events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }.map_err(
        |error| Error::Syscall {
            call: "epoll registration of the socket ring buffer",
            source: error.into_parts().1,
        },
    )?;
    Ok(SocketMaps {
        events,
        stats: take(ebpf, maps::SOCKET_STATS)?,
    })
}

/// The interfaces the tc programs are attached to.
#[derive(Debug, Default)]
pub struct Interfaces {
    attached: HashMap<u32, Watched>,
}

#[derive(Debug)]
struct Watched {
    name: String,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
}

/// What a refresh changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InterfaceChanges {
    /// Interfaces newly watched.
    pub added: Vec<String>,
    /// Interfaces that went away.
    pub removed: Vec<String>,
    /// Interfaces that could not be watched, with why.
    pub failed: Vec<(String, String)>,
}

impl Interfaces {
    /// Names of the watched interfaces.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .attached
            .values()
            .map(|watched| watched.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Attaches to interfaces that appeared and forgets those that went.
    pub fn refresh(&mut self, ebpf: &mut Ebpf) -> Result<InterfaceChanges, Error> {
        let mut changes = InterfaceChanges::default();
        let present = list_interfaces()?;
        let gone: Vec<u32> = self
            .attached
            .iter()
            .filter(|(index, watched)| present.get(index) != Some(&watched.name))
            .map(|(index, _)| *index)
            .collect();
        for index in gone {
            if let Some(watched) = self.attached.remove(&index) {
                for (name, link) in watched.links {
                    // The kernel detaches a device's programs when it goes;
                    // a link that is already defunct is as good as gone.
                    if let Ok(program) = program::<SchedClassifier>(ebpf, name) {
                        let _ = program.detach(link);
                    }
                }
                changes.removed.push(watched.name);
            }
        }
        for (index, name) in present {
            if self.attached.contains_key(&index) || !watchable(&name) {
                continue;
            }
            match attach_tc(ebpf, index) {
                Ok(links) => {
                    self.attached.insert(
                        index,
                        Watched {
                            name: name.clone(),
                            links,
                        },
                    );
                    changes.added.push(name);
                }
                Err(error) => changes.failed.push((name, error.to_string())),
            }
        }
        Ok(changes)
    }
}

fn attach_tc(
    ebpf: &mut Ebpf,
    index: u32,
) -> Result<Vec<(&'static str, SchedClassifierLinkId)>, Error> {
    let tcx = aya::util::KernelVersion::current()
        .map(|version| version >= aya::util::KernelVersion::new(6, 6, 0))
        .unwrap_or(false);
    if !tcx {
        // clsact must exist before filters attach; "exists" is fine.
        let _ = aya::programs::tc::qdisc_add_clsact(index);
    }
    let mut links = Vec::new();
    for (name, direction) in [
        (TC_INGRESS, TcAttachType::Ingress),
        (TC_EGRESS, TcAttachType::Egress),
    ] {
        let program: &mut SchedClassifier = program(ebpf, name)?;
        let link = program
            .attach(index, direction)
            .map_err(|source| program_error("attach", name, source))?;
        links.push((name, link));
    }
    Ok(links)
}

/// Interfaces of this network namespace, by index.
fn list_interfaces() -> Result<HashMap<u32, String>, Error> {
    // SAFETY: if_nameindex returns a NULL-terminated array (or NULL) that is
    // freed with if_freenameindex once read.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(Error::Syscall {
                call: "if_nameindex",
                source: std::io::Error::last_os_error(),
            });
        }
        let mut interfaces = HashMap::new();
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            let name = CStr::from_ptr((*entry).if_name)
                .to_string_lossy()
                .into_owned();
            interfaces.insert((*entry).if_index, name);
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
        Ok(interfaces)
    }
}

/// True for Ethernet interfaces that are neither loopback nor a bridge
/// (a bridge's traffic is seen on its ports).
fn watchable(name: &str) -> bool {
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    hardware_type(&cname) == Some(ARPHRD_ETHER) && driver(&cname).as_deref() != Some("bridge")
}

const ARPHRD_ETHER: u16 = 1;

/// The link-layer type (`ARPHRD_*`) of an interface.
fn hardware_type(name: &CStr) -> Option<u16> {
    with_ifreq(name, |socket, request| {
        // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
        let result = unsafe {
            libc::ioctl(
                socket,
                libc::SIOCGIFHWADDR as _,
                request as *mut libc::ifreq,
            )
        };
        // SAFETY: the request was zeroed, then filled by the ioctl when it
        // succeeded; either way the field is initialised.
        let family = unsafe { request.ifr_ifru.ifru_hwaddr.sa_family };
        (result == 0).then_some(family)
    })
}

/// The driver of an interface (`ETHTOOL_GDRVINFO`), e.g. `veth`, `bridge`.
fn driver(name: &CStr) -> Option<String> {
    #[repr(C)]
    struct DriverInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 32 * 4 + 12 + 4 * 5],
    }
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut info = DriverInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 32 * 4 + 12 + 4 * 5],
    };
    with_ifreq(name, |socket, request| {
        request.ifr_ifru.ifru_data = (&raw mut info).cast();
        // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO writes a drvinfo of the
        // size above through ifr_data, which points at `info`.
        let result = unsafe { libc::ioctl(socket, SIOCETHTOOL as _, request as *mut libc::ifreq) };
        if result != 0 {
            return None;
        }
        let end = info.driver.iter().position(|byte| *byte == 0).unwrap_or(32);
        Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
    })
}

/// Runs `work` with a datagram socket and an `ifreq` naming `name`.
fn with_ifreq<T>(name: &CStr, work: impl FnOnce(i32, &mut libc::ifreq) -> Option<T>) -> Option<T> {
    let bytes = name.to_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: a plain C struct; all-zero is a valid ifreq.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; the fd is closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return None;
    }
    let result = work(socket, &mut request);
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(socket) };
    result
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(Error::Program {
            action: "find",
            program: name,
            source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
        })?
        .try_into()
        .map_err(|source| program_error("find", name, source))
}

fn program_error(
    action: &'static str,
    program: &'static str,
    source: aya::programs::ProgramError,
) -> Error {
    Error::Program {
        action,
        program,
        source: Box::new(source),
    }
}
