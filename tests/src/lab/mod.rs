//! A node with pods: one "node" network namespace holding a bridge (the
//! pods' gateway, with IPv4 and IPv6 addresses) and the node's nftables
//! rules; one namespace per pod, on a veth into the bridge. Service VIPs are
//! routed to the node and DNATed there, like kube-proxy does. Other nodes
//! hang off the node's uplinks; processes run in a pod (or the node) inside
//! kubelet-shaped cgroups.
//!
//! A lab's IPv4 /24 `10.<a>.<b>.0/24`:
//! - `.0/25`: the pod network on `br0`: the node `.1`, pods from `.10`;
//! - `.128/26`: Service VIPs ([`Lab::vip`]), routed to the node;
//! - `.192/26`: remote nodes ([`Lab::add_remote_node`]), 8 addresses each.

mod agent;
pub mod bpf_objects;
mod cgroup;
pub mod client;
mod cluster;
pub mod cluster_view;
pub mod collector;
pub mod cpu_clock;
mod cpu_limit;
pub mod dns_wire;
pub mod enforcer;
pub mod join_scenario;
pub mod json;
pub mod nats;
mod netns;
mod nft;
pub mod pki;
pub mod privilege;
mod process;
mod remote;
mod traffic;
mod veth_pair;
mod void;
pub mod web_to_api;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result};

pub use agent::{Agent, DropView, json_u64};
pub use cgroup::{Cgroup, PodCgroup, v2_root as cgroup_v2_root};
pub use cluster::{Cluster, Snapshot};
pub use collector::{Collector, Relay, SocketPath};
pub use cpu_limit::CpuLimit;
pub use netns::Netns;
pub use nft::Nft;
pub use process::{LabClient, LabProcess, spawn_entered};
pub use remote::RemoteNode;
pub use traffic::{TcpOutcome, connect_tcp, send_udp, send_udp_interleaved};
pub use veth_pair::VethPair;
pub use void::Void;

/// True when the kernel has a BPF program with this id
/// (`BPF_PROG_GET_FD_BY_ID`).
pub fn program_exists(id: u32) -> Result<bool> {
    #[repr(C)]
    struct GetFdById {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = GetFdById {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix for this command and lives
    // for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            &raw mut attr,
            std::mem::size_of::<GetFdById>(),
        )
    };
    if fd >= 0 {
        // SAFETY: closing the fd the kernel just gave us.
        unsafe { libc::close(fd as i32) };
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ENOENT) {
        return Ok(false);
    }
    Err(error).context("bpf(BPF_PROG_GET_FD_BY_ID)")
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// One pod of a lab.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Its network namespace.
    pub netns: Netns,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address.
    pub ipv6: Ipv6Addr,
}

/// A node with pods; deletes everything it made when dropped.
pub struct Lab {
    /// The node's namespace (bridge, routes, nftables).
    pub node: Netns,
    /// The lab's /24 is `10.<a>.<b>.0`: pods and the node in the lower
    /// /25 (on-link), Service VIPs in `.128/26` (routed to the node),
    /// remote nodes in `.192/26` (see the module docs).
    net: (u8, u8),
    /// Unique number of this lab.
    id: u32,
    pods: Vec<Pod>,
    /// Remote nodes made so far.
    remotes: u8,
    /// Every namespace made so far, deleted on drop even if setting it up
    /// failed half-way.
    made: Vec<Netns>,
    /// The lab's cgroups (`ds<id>.slice`), removed on drop.
    cgroups: cgroup::LabCgroups,
}

/// Labs one test process may make: the lab id is `pid % PROCESS_SLOTS`
/// times this plus a counter, so ids (and subnets) of concurrent test
/// processes stay apart.
const LABS_PER_PROCESS: u32 = 16;
const PROCESS_SLOTS: u32 = 3000;

impl Lab {
    /// Makes a node namespace with a bridge `br0` and the node's addresses.
    pub fn new() -> Result<Self> {
        let counter = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        anyhow::ensure!(
            counter < LABS_PER_PROCESS,
            "a test process may make at most {LABS_PER_PROCESS} labs"
        );
        let id = (std::process::id() % PROCESS_SLOTS) * LABS_PER_PROCESS + counter;
        // 10.64.0.0 .. 10.255.255.0: 49,152 /24s, one per lab id.
        let net = (64 + (id >> 8) as u8, (id & 0xff) as u8);
        let node = Netns::create(&format!("ds{id}-node"))?;
        let lab = Self {
            node: node.clone(),
            net,
            id,
            pods: Vec::new(),
            remotes: 0,
            made: vec![node],
            cgroups: cgroup::LabCgroups::new(id),
        };
        let gateway = lab.gateway_v4();
        let gateway6 = lab.gateway_v6();
        lab.node.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        lab.node
            .run(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        lab.node.ip(&["link", "add", "br0", "type", "bridge"])?;
        lab.node
            .ip(&["addr", "add", &format!("{gateway}/25"), "dev", "br0"])?;
        lab.node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{gateway6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        lab.node.ip(&["link", "set", "br0", "up"])?;
        lab.node.ip(&["link", "set", "lo", "up"])?;
        // Like the pods: a connect from the node itself (the kubelet's)
        // that is dropped gives up after 1 + 2 + 4 s.
        lab.node
            .run(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=2"])?;
        Ok(lab)
    }

    /// The lab's unique number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The node's address on the pod network (the pods' gateway).
    pub fn gateway_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 1)
    }

    /// The node's IPv6 address on the pod network.
    pub fn gateway_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0xd5, self.id as u16, 0, 0, 0, 0, 1)
    }

    /// A Service VIP of this lab: `10.<a>.<b>.(128 + host % 64)` (routed
    /// to the node, not assigned). Use `host` < 64: larger ones wrap around
    /// (the top /26 belongs to the remote nodes).
    pub fn vip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 128 | (host & 0x3f))
    }

    /// True when `ip` belongs to this lab (pods, node, VIPs, remote nodes
    /// and their pods).
    pub fn owns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let [a, b, c, _] = ip.octets();
                a == 10 && b == self.net.0 && c == self.net.1
            }
            IpAddr::V6(ip) => {
                let segments = ip.segments();
                segments[0] == 0xfd00 && segments[1] == 0xd5 && segments[2] == self.id as u16
            }
        }
    }

    /// Makes namespace `ds<id>-<name>`, refusing a name this lab already
    /// used (creating it again would delete the first).
    fn make_netns(&mut self, name: &str) -> Result<Netns> {
        let full = format!("ds{}-{name}", self.id);
        anyhow::ensure!(
            !self.made.iter().any(|made| made.name() == full),
            "this lab already has a namespace named {name}"
        );
        let netns = Netns::create(&full)?;
        self.made.push(netns.clone());
        Ok(netns)
    }

    /// Adds a pod `name` with the next addresses.
    pub fn add_pod(&mut self, name: &str) -> Result<Pod> {
        let index = self.pods.len() as u8 + 10;
        anyhow::ensure!(index < 128, "the pod network of a lab is full");
        let netns = self.make_netns(name)?;
        let ipv4 = Ipv4Addr::new(10, self.net.0, self.net.1, index);
        let ipv6 = Ipv6Addr::new(0xfd00, 0xd5, self.id as u16, 0, 0, 0, 0, index as u16);
        let host_end = format!("veth{index}");
        self.node.ip(&[
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ])?;
        self.node
            .ip(&["link", "set", &host_end, "master", "br0", "up"])?;
        netns.ip(&["link", "set", "lo", "up"])?;
        netns.ip(&["addr", "add", &format!("{ipv4}/25"), "dev", "eth0"])?;
        netns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{ipv6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        netns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &self.gateway_v4().to_string(),
        ])?;
        netns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &self.gateway_v6().to_string(),
        ])?;
        // Fewer SYN retries keep a blocked connect short; the kernel still
        // retransmits, which is what the counts are checked against.
        netns.run(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=2"])?;
        let pod = Pod { netns, ipv4, ipv6 };
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// The pod added as `name`.
    ///
    /// # Panics
    /// When the lab has no such pod (a bug in the test).
    pub fn pod(&self, name: &str) -> &Pod {
        let wanted = format!("ds{}-{name}", self.id);
        self.pods
            .iter()
            .find(|pod| pod.netns.name() == wanted)
            .unwrap_or_else(|| panic!("no pod {name} in this lab"))
    }

    /// The node's nftables.
    pub fn nft(&self) -> Nft<'_> {
        Nft::new(&self.node)
    }

    /// The device index of a pod's veth end on the node.
    pub fn pod_link(&self, pod: &Pod) -> Result<String> {
        let index = self
            .pods
            .iter()
            .position(|known| known.ipv4 == pod.ipv4)
            .context("pod is not in this lab")?;
        Ok(format!("veth{}", index + 10))
    }

    /// Adds a node `name` beyond this one, on a new uplink `up<n>` of the
    /// lab node (see [`RemoteNode`] for its addresses and routes).
    pub fn add_remote_node(&mut self, name: &str) -> Result<RemoteNode> {
        anyhow::ensure!(
            self.remotes < remote::MAX_REMOTE_NODES,
            "a lab may have at most {} remote nodes",
            remote::MAX_REMOTE_NODES
        );
        let index = self.remotes;
        let netns = self.make_netns(name)?;
        self.remotes += 1;
        RemoteNode::setup(&self.node, netns, self.net, index)
    }

    /// The cgroup of `pod`'s container, kubelet-shaped:
    /// `<v2 root>/ds<id>.slice/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`,
    /// with a pod UID and container id derived from the lab id and pod
    /// name (the same on every call). Removed when the lab drops.
    pub fn pod_cgroup(&self, pod: &Pod) -> Result<PodCgroup> {
        let prefix = format!("ds{}-", self.id);
        let name = pod
            .netns
            .name()
            .strip_prefix(&prefix)
            .filter(|_| self.pods.iter().any(|known| known.ipv4 == pod.ipv4))
            .with_context(|| format!("pod {} is not in this lab", pod.netns.name()))?;
        self.cgroups.pod(name)
    }

    /// The kubelet's cgroup, `<v2 root>/ds<id>.slice/kubelet.service`
    /// (for processes in the node's own namespace). Removed when the lab
    /// drops.
    pub fn kubelet_cgroup(&self) -> Result<Cgroup> {
        self.cgroups.make(std::path::Path::new("kubelet.service"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for netns in &self.made {
            netns.delete();
        }
    }
}
