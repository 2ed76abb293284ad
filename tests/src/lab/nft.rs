//! nftables in the node namespace, written the way Kubernetes components
//! write them: Service DNAT like kube-proxy's nftables mode, and drops like
//! a policy enforcer (Calico-style: `ct state new` to a protected endpoint,
//! counted). Counters are the ground truth the tests check against.

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::Netns;

/// The node's nftables.
pub struct Nft<'a> {
    node: &'a Netns,
}

/// An IP protocol as nftables spells it.
fn family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

impl<'a> Nft<'a> {
    pub(super) fn new(node: &'a Netns) -> Self {
        Self { node }
    }

    /// Loads a ruleset text (`nft -f -`).
    pub fn apply(&self, ruleset: &str) -> Result<()> {
        self.node.run_with_input(&["nft", "-f", "-"], ruleset)?;
        Ok(())
    }

    /// A Service: `vip:port/protocol` DNATed to `backend:target_port` in
    /// prerouting, as kube-proxy does.
    pub fn service(
        &self,
        name: &str,
        vip: IpAddr,
        port: u16,
        protocol: &str,
        backend: IpAddr,
        target_port: u16,
    ) -> Result<()> {
        let family = family(vip);
        self.apply(&format!(
            "table {family} kube-proxy {{
               chain nat-prerouting {{ type nat hook prerouting priority -100; }}
               chain nat-output {{ type nat hook output priority -100; }}
             }}
             add rule {family} kube-proxy nat-prerouting {family} daddr {vip} {protocol} dport {port} counter dnat to {dst} comment \"svc {name}\"
             add rule {family} kube-proxy nat-output {family} daddr {vip} {protocol} dport {port} counter dnat to {dst} comment \"svc {name}\"
            ",
            dst = endpoint(backend, target_port),
        ))
    }

    /// A policy enforcer's drop of new connections forwarded to
    /// `to:port/protocol`, counted in counter `counter`.
    pub fn drop_forward(&self, counter: &str, to: IpAddr, port: u16, protocol: &str) -> Result<()> {
        self.drop_in("forward", counter, to, port, protocol)
    }

    /// A drop of new connections to the node itself (`input` hook).
    pub fn drop_input(&self, counter: &str, to: IpAddr, port: u16, protocol: &str) -> Result<()> {
        self.drop_in("input", counter, to, port, protocol)
    }

    /// A drop of new connections the node itself opens to `to:port`
    /// (`output` hook), e.g. the kubelet's health probes.
    pub fn drop_output(&self, counter: &str, to: IpAddr, port: u16, protocol: &str) -> Result<()> {
        self.drop_in("output", counter, to, port, protocol)
    }

    fn drop_in(
        &self,
        hook: &str,
        counter: &str,
        to: IpAddr,
        port: u16,
        protocol: &str,
    ) -> Result<()> {
        let family = family(to);
        self.apply(&format!(
            "table inet enforcer {{
               chain {hook} {{ type filter hook {hook} priority 0; }}
             }}
             add counter inet enforcer {counter}
             add rule inet enforcer {hook} ct state new {family} daddr {to} {protocol} dport {port} counter name {counter} drop
            "
        ))
    }

    /// Packets counted by the named counter of table `inet enforcer`.
    pub fn counter(&self, counter: &str) -> Result<u64> {
        let listing = self
            .node
            .run_with_input(&["nft", "list", "counter", "inet", "enforcer", counter], "")?;
        listing
            .split_whitespace()
            .skip_while(|word| *word != "packets")
            .nth(1)
            .and_then(|packets| packets.parse().ok())
            .with_context(|| format!("no packet count in: {listing}"))
    }
}
