//! A silent destination beyond a lab node: [`Void::NET`] routed by the lab
//! node out of `void0`, a veth whose other end is alone in namespace
//! `ds<lab>-void`, to a next hop nobody is (a MAC address no interface
//! has). The far end receives every frame as "other host" and frees it
//! (reason OTHERHOST, not among the agent's default reasons): no drop
//! event, no ICMP, no answer, like a firewall that drops silently
//! somewhere beyond the node. The agent in the lab node watches `void0`
//! (Ethernet, not a bridge), so SYNs and DNS queries are seen leaving.
//!
//! Made on demand ([`Void::new`]); its namespace is deleted on drop (the
//! lab node's end goes with the lab).

use std::net::Ipv4Addr;

use anyhow::Result;

use super::{Lab, Netns};

/// The silent destination of one lab.
pub struct Void {
    netns: Netns,
}

impl Void {
    /// What is routed to the void: 198.19.0.0/16, part of the benchmarking
    /// range (RFC 2544), which labs do not otherwise use.
    pub const NET: &str = "198.19.0.0/16";
    /// The next hop nobody is.
    const NEXT_HOP: &str = "198.19.255.254";
    /// Its MAC address (locally administered; no interface has it).
    const NEXT_HOP_MAC: &str = "02:00:5e:00:53:01";

    /// An address in [`Self::NET`]: `198.19.<host / 256>.<host % 256>`.
    pub fn address(host: u16) -> Ipv4Addr {
        let [high, low] = host.to_be_bytes();
        Ipv4Addr::new(198, 19, high, low)
    }

    /// Makes `void0` on `lab`'s node, its far end in `ds<lab>-void`, the
    /// permanent neighbour entry and the route.
    pub fn new(lab: &Lab) -> Result<Self> {
        let void = Self {
            netns: Netns::create(&format!("ds{}-void", lab.id()))?,
        };
        lab.node.ip(&[
            "link",
            "add",
            "void0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            void.netns.name(),
        ])?;
        void.netns.ip(&["link", "set", "eth0", "up"])?;
        lab.node.ip(&["link", "set", "void0", "up"])?;
        lab.node.ip(&[
            "neigh",
            "add",
            Self::NEXT_HOP,
            "lladdr",
            Self::NEXT_HOP_MAC,
            "dev",
            "void0",
            "nud",
            "permanent",
        ])?;
        lab.node.ip(&[
            "route",
            "add",
            Self::NET,
            "via",
            Self::NEXT_HOP,
            "dev",
            "void0",
            "onlink",
        ])?;
        Ok(void)
    }
}

impl Drop for Void {
    fn drop(&mut self) {
        self.netns.delete();
    }
}
