//! A node with pods: one "node" network namespace holding a bridge (the
//! pods' gateway, with IPv4 and IPv6 addresses) and the node's nftables
//! rules; one namespace per pod, on a veth into the bridge. Service VIPs are
//! routed to the node and DNATed there, like kube-proxy does.

mod agent;
pub mod client;
mod cluster;
mod cpu_limit;
mod netns;
mod nft;
mod traffic;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result};

pub use agent::{Agent, DropView, json_u64};
pub use cluster::{Cluster, Snapshot};
pub use cpu_limit::CpuLimit;
pub use netns::Netns;
pub use nft::Nft;
pub use traffic::{TcpOutcome, connect_tcp, send_udp};

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
    /// /25 (on-link), Service VIPs in the upper one (routed to the node).
    net: (u8, u8),
    /// Unique number of this lab.
    id: u32,
    pods: Vec<Pod>,
    /// Every namespace made so far, deleted on drop even if setting it up
    /// failed half-way.
    made: Vec<Netns>,
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
            made: vec![node],
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

    /// A Service VIP of this lab (`host` < 128; routed to the node, not
    /// assigned).
    pub fn vip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 128 | (host & 0x7f))
    }

    /// True when `ip` belongs to this lab (pods, node, VIPs).
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

    /// Adds a pod `name` with the next addresses.
    pub fn add_pod(&mut self, name: &str) -> Result<Pod> {
        let index = self.pods.len() as u8 + 10;
        let netns = Netns::create(&format!("ds{}-{name}", self.id))?;
        self.made.push(netns.clone());
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        for netns in &self.made {
            netns.delete();
        }
    }
}
