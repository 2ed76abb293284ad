//! A second node beyond the lab node: a network namespace on a veth pair
//! (`up<n>` on the lab node, its uplink; `eth0` on the remote node), with a
//! routed "pod" address of its own, so traffic from the lab's pods leaves
//! the lab node through the uplink like it leaves a real node for another.
//! The remote node drops what a test tells it to, silently, and counts it.
//!
//! Addresses come from the lab's own /24, in its top /26
//! (`10.<a>.<b>.192/26`), eight addresses per remote node `n`:
//! `192+8n+1` the lab node's uplink, `192+8n+2` the remote node's `eth0`
//! (its node IP), `192+8n+4/30` its pod range (routed to it), of which
//! `192+8n+5` is assigned (on its `lo`).

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;

use super::{Netns, Nft};

/// Remote nodes one lab may have (the top /26 in blocks of 8).
pub(super) const MAX_REMOTE_NODES: u8 = 8;

/// The first host of the remote nodes' range in the lab's /24.
pub(super) const REMOTE_BASE: u8 = 192;

/// A node beyond the lab node, reached through the lab node's uplink.
#[derive(Clone, Debug)]
pub struct RemoteNode {
    /// Its network namespace.
    pub netns: Netns,
    net: (u8, u8),
    index: u8,
}

impl RemoteNode {
    fn host(&self, offset: u8) -> Ipv4Addr {
        Ipv4Addr::new(
            10,
            self.net.0,
            self.net.1,
            REMOTE_BASE + 8 * self.index + offset,
        )
    }

    /// The lab node's end of the uplink (`up<n>`), this node's gateway.
    pub fn uplink_address(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// The name of the lab node's end of the link (`up<n>`).
    pub fn uplink(&self) -> String {
        format!("up{}", self.index)
    }

    /// Its node IP (on its `eth0`).
    pub fn address(&self) -> Ipv4Addr {
        self.host(2)
    }

    /// A pod address on it, reachable from the lab's pods through the
    /// uplink.
    pub fn pod_ip(&self) -> Ipv4Addr {
        self.host(5)
    }

    /// Its nftables.
    pub fn nft(&self) -> Nft<'_> {
        Nft::new(&self.netns)
    }

    /// Makes it drop TCP SYNs to `pod_ip():port` silently (input hook, no
    /// RST, no ICMP), counted in counter `silent_<port>` of its table
    /// `inet enforcer` (see [`RemoteNode::dropped`]).
    pub fn drop_silently(&self, port: u16) -> Result<()> {
        let to = self.pod_ip();
        self.nft().apply(&format!(
            "table inet enforcer {{
               chain input {{ type filter hook input priority 0; }}
             }}
             add counter inet enforcer silent_{port}
             add rule inet enforcer input ip daddr {to} tcp dport {port} tcp flags & (syn | ack) == syn counter name silent_{port} drop
            "
        ))
    }

    /// SYNs dropped so far by [`RemoteNode::drop_silently`]`(port)`.
    pub fn dropped(&self, port: u16) -> Result<u64> {
        self.nft().counter(&format!("silent_{port}"))
    }

    /// Makes remote node number `index` of the lab `net` (whose node is
    /// `node`) in `netns`.
    pub(super) fn setup(node: &Netns, netns: Netns, net: (u8, u8), index: u8) -> Result<Self> {
        let remote = Self { netns, net, index };
        let uplink = remote.uplink();
        let pods = Ipv4Addr::new(10, net.0, net.1, REMOTE_BASE + 8 * index + 4);
        node.ip(&[
            "link",
            "add",
            &uplink,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            remote.netns.name(),
        ])?;
        node.ip(&[
            "addr",
            "add",
            &format!("{}/30", remote.uplink_address()),
            "dev",
            &uplink,
        ])?;
        node.ip(&["link", "set", &uplink, "up"])?;
        node.ip(&[
            "route",
            "add",
            &format!("{pods}/30"),
            "via",
            &remote.address().to_string(),
            "dev",
            &uplink,
        ])?;
        let netns = &remote.netns;
        netns.ip(&["link", "set", "lo", "up"])?;
        netns.ip(&[
            "addr",
            "add",
            &format!("{}/30", remote.address()),
            "dev",
            "eth0",
        ])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        // On lo: dummy links need a module not every kernel has.
        netns.ip(&[
            "addr",
            "add",
            &format!("{}/32", remote.pod_ip()),
            "dev",
            "lo",
        ])?;
        netns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &remote.uplink_address().to_string(),
        ])?;
        Ok(remote)
    }

    /// True when `ip` is one of its addresses (node or pod range).
    pub fn owns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                a == 10
                    && (b, c) == self.net
                    && d >= REMOTE_BASE
                    && (d - REMOTE_BASE) / 8 == self.index
            }
            IpAddr::V6(_) => false,
        }
    }
}
