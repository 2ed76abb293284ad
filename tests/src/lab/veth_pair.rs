//! Two network namespaces joined by one veth pair and nothing else (no
//! bridge, no forwarding): the shortest path a packet can take between
//! namespaces, for measuring what programs attached to one end cost the
//! traffic over it. An agent started in `near` ([`super::Agent::start_in`])
//! attaches its tc programs to `near`'s end, `eth0`.
//!
//! Addresses come from the benchmarking ranges, 198.18.0.0/15 (RFC 2544)
//! and 2001:2::/48 (RFC 5180), which no lab uses; each pair has namespaces
//! of its own, so pairs never meet. Both namespaces are deleted on drop.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::Result;

use super::Netns;

static NEXT_PAIR: AtomicU32 = AtomicU32::new(0);

/// Two namespaces, `near` and `far`, each with an `eth0` on one veth pair.
pub struct VethPair {
    /// The namespace the measured programs watch.
    pub near: Netns,
    /// The other end.
    pub far: Netns,
}

impl VethPair {
    /// `near`'s address on the link.
    pub const NEAR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    /// `far`'s address on the link.
    pub const FAR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    /// `near`'s IPv6 address on the link.
    pub const NEAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    /// `far`'s IPv6 address on the link.
    pub const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

    /// Makes `dsv<pid>-<n>-near` and `…-far`, joined by a veth pair whose
    /// ends are both `eth0`, up, with [`Self::NEAR`] and [`Self::FAR`] on a
    /// /30 and [`Self::NEAR6`] and [`Self::FAR6`] on a /64 (no duplicate
    /// address detection: usable at once), and loopback up in each.
    pub fn new() -> Result<Self> {
        let prefix = format!(
            "dsv{}-{}",
            std::process::id(),
            NEXT_PAIR.fetch_add(1, Ordering::Relaxed)
        );
        let near = Netns::create(&format!("{prefix}-near"))?;
        let far = match Netns::create(&format!("{prefix}-far")) {
            Ok(far) => far,
            Err(error) => {
                near.delete();
                return Err(error);
            }
        };
        // Deleted on drop from here on, also when the setup fails.
        let pair = Self { near, far };
        pair.near.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pair.far.name(),
        ])?;
        for (netns, address, address6) in [
            (&pair.near, Self::NEAR, Self::NEAR6),
            (&pair.far, Self::FAR, Self::FAR6),
        ] {
            netns.ip(&["link", "set", "lo", "up"])?;
            netns.ip(&["addr", "add", &format!("{address}/30"), "dev", "eth0"])?;
            netns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{address6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            netns.ip(&["link", "set", "eth0", "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        self.near.delete();
        self.far.delete();
    }
}
