//! The seeds' web → api shape, as several tests build it: pods `web` and
//! `api`, the `api` Service (VIP:80 → api:8080/TCP, DNATed on the node the
//! way kube-proxy does), an enforcer's drop of what reaches api:8080
//! (nft counter `deny_api`), and the cluster an agent explains it with.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::Result;
use serde_json::{Value, json};

use super::{Cluster, Lab, Pod, TcpOutcome, connect_tcp};

/// The api pod's port, behind the Service's port 80.
pub const API_PORT: u16 = 8080;

/// The two pods and the Service's address.
pub struct WebToApi {
    /// `frontend/web`, the client.
    pub web: Pod,
    /// `backend/api`, the server whose ingress drops.
    pub api: Pod,
    /// The `api` Service's VIP.
    pub vip: IpAddr,
}

impl WebToApi {
    /// Adds the pods to `lab`, the Service at the lab's VIP number `vip`,
    /// and the drop of TCP to api:8080.
    pub fn new(lab: &mut Lab, vip: u8) -> Result<Self> {
        let web = lab.add_pod("web")?;
        let api = lab.add_pod("api")?;
        let vip = IpAddr::V4(lab.vip(vip));
        lab.nft()
            .service("api", vip, 80, "tcp", api.ipv4.into(), API_PORT)?;
        lab.nft()
            .drop_forward("deny_api", api.ipv4.into(), API_PORT, "tcp")?;
        Ok(Self { web, api, vip })
    }

    /// The cluster as a snapshot tells it: the node `node` (the lab's node
    /// address), both pods on it in their namespaces, and the Service;
    /// policies are the caller's to add.
    pub fn cluster(&self, lab: &Lab, node: &str) -> Cluster {
        let mut cluster = Cluster::new();
        cluster
            .node(node, lab.gateway_v4().into())
            .web_and_api(
                (self.web.ipv4.into(), node),
                (self.api.ipv4.into(), node),
                API_PORT,
                "TCP",
            )
            .api_service(self.vip, self.api.ipv4.into());
        cluster
    }

    /// A TCP connect from web to the Service, given up after `timeout`.
    pub fn connect(&self, timeout: Duration) -> Result<TcpOutcome> {
        connect_tcp(&self.web.netns, SocketAddr::new(self.vip, 80), timeout)
    }
}

/// A policy isolating `backend/api` for ingress with no allow rule.
pub fn deny_all_ingress() -> Value {
    json!({
        "podSelector": { "matchLabels": { "app": "api" } },
        "policyTypes": ["Ingress"],
    })
}
