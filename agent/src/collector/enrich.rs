//! Enrichment at the collector (`--enrich collector`): agents send raw
//! events (addresses, no explanation) and only the collector holds the
//! cluster's metadata (`dropscope collector --kubernetes` or `--snapshot`),
//! so a large cluster has one set of cluster-wide watches instead of one
//! per node.
//!
//! Each node event is completed on its way in, before the join and the
//! merge: a drop gets what NetworkPolicy says about its flow (explained on
//! the first event of a flow the collector sees, the same explanation
//! carried on the flow's later events), an incident its two ends (the
//! client from its cgroup's pod UID, which the agent reads locally, else
//! from its address) and, when it joined kernel drops, their explanation.
//! Events an agent already explained pass unchanged, so agents of both
//! modes can share a collector.
//!
//! The same engine as the agent's: an explanation here equals the agent's
//! for the same metadata. Explanations (the agents' and its own) are held
//! to put back on a flow's `UPDATE` events, which leave their node
//! without one (`convert::wire`); bounded, oldest first out, and a flow
//! whose explanation left is explained again.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

use dropscope_proto::v1;
use tokio::sync::RwLock;

use crate::{
    convert::{self, wire::Carry},
    enrich::{store::Store, view::View},
    explain::{Flow, Target, explain},
};

/// What every node event goes through on its way into the collector: its
/// flow's explanation put back on an `UPDATE` that left its node without
/// it ([`Carry`]), and, when the collector has metadata, what its agent
/// did not say. Shared (`Arc`) by the parts that take node events.
pub struct Ingest {
    store: Option<Arc<RwLock<Store>>>,
    carry: Mutex<Carry>,
}

impl Ingest {
    /// Explains against `store` when there is one.
    pub fn new(store: Option<Arc<RwLock<Store>>>) -> Self {
        Self {
            store,
            carry: Mutex::new(Carry::default()),
        }
    }

    /// Completes `event`.
    pub async fn take(&self, event: &mut v1::Event) {
        self.lock().fill(event);
        let Some(store) = &self.store else { return };
        let node = event.node.clone();
        match &mut event.event {
            Some(v1::event::Event::Drop(drop)) if drop.explanation.is_none() => {
                let store = store.read().await;
                let view = View::new(&store);
                drop.explanation = self.explanation(&view, &node, drop).map(unwrap_shared);
            }
            Some(v1::event::Event::Incident(incident)) if incident.source.is_none() => {
                let store = store.read().await;
                let view = View::new(&store);
                self.identify(&view, &node, incident);
            }
            _ => {}
        }
    }

    /// The explanation of `drop`'s flow: held, or made now.
    fn explanation(
        &self,
        view: &View<'_>,
        node: &str,
        drop: &v1::DropEvent,
    ) -> Option<Arc<v1::Explanation>> {
        if let Some(held) = self.lock().get(node, drop.flow_id) {
            return Some(held);
        }
        let flow = flow_of(drop)?;
        match explain(view, &flow) {
            Ok(explanation) => {
                let explanation = Arc::new(convert::explanation(&explanation));
                self.lock()
                    .insert(node, drop.flow_id, Arc::clone(&explanation));
                Some(explanation)
            }
            Err(error) => {
                tracing::trace!(%error, node, flow_id = drop.flow_id, "no explanation");
                None
            }
        }
    }

    /// Names the incident's two ends and explains its latest joined drop.
    fn identify(&self, view: &View<'_>, node: &str, incident: &mut v1::Incident) {
        let Some(flow) = &incident.flow else { return };
        let (Some(source), Some(destination)) =
            (endpoint(&flow.source), endpoint(&flow.destination))
        else {
            return;
        };
        let protocol = v1::Protocol::try_from(flow.protocol)
            .ok()
            .and_then(convert::protocol_from);
        let named_destination = protocol
            .and_then(|protocol| {
                view.identify_service(destination.0, destination.1, protocol, None)
            })
            .unwrap_or_else(|| view.identify(destination.0, None));
        let destination_node = match &named_destination {
            crate::model::Identity::Pod { node, .. } => node.clone(),
            _ => None,
        };
        let pod_of_cgroup = incident
            .process
            .as_ref()
            .and_then(|process| process.pod.as_ref())
            .and_then(|pod| view.pod_by_uid(&pod.uid))
            .map(|pod| pod.identity());
        let named_source =
            pod_of_cgroup.unwrap_or_else(|| view.identify(source.0, destination_node.as_deref()));
        incident.source = Some(convert::identity(&named_source));
        incident.destination = Some(convert::identity(&named_destination));
        if incident.explanation.is_none()
            && let Some(drop) = incident.drops.last()
        {
            incident.explanation = self.explanation(view, node, drop).map(unwrap_shared);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Carry> {
        self.carry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The flow a dropped packet belongs to, as the explain engine takes it:
/// the packet's tuple (post-NAT) and, after a DNAT, the original
/// destination; `None` without ports or with an unreadable address.
fn flow_of(drop: &v1::DropEvent) -> Option<Flow> {
    let packet = drop.packet.as_ref()?;
    let protocol = convert::protocol_from(v1::Protocol::try_from(packet.protocol).ok()?)?;
    if !protocol.has_ports() {
        return None;
    }
    let source = endpoint(&packet.source)?;
    let destination = endpoint(&packet.destination)?;
    let original = drop
        .conntrack
        .as_ref()
        .filter(|conntrack| conntrack.dnat)
        .and_then(|conntrack| endpoint(&conntrack.original.as_ref()?.destination));
    Some(Flow {
        from: Target::Ip(source.0),
        to: Target::Ip(destination.0),
        port: destination.1,
        protocol,
        original,
    })
}

/// An endpoint's address and port; `None` when unreadable.
fn endpoint(endpoint: &Option<v1::Endpoint>) -> Option<(IpAddr, u16)> {
    let endpoint = endpoint.as_ref()?;
    Some((
        endpoint.ip.parse().ok()?,
        u16::try_from(endpoint.port).ok()?,
    ))
}

fn unwrap_shared(explanation: Arc<v1::Explanation>) -> v1::Explanation {
    Arc::unwrap_or_clone(explanation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert;

    fn drop_to(destination: &str, port: u32, dnat_from: Option<(&str, u32)>) -> v1::DropEvent {
        let tuple = |source: (&str, u32), destination: (&str, u32)| v1::Tuple {
            source: Some(v1::Endpoint {
                ip: source.0.to_owned(),
                port: source.1,
            }),
            destination: Some(v1::Endpoint {
                ip: destination.0.to_owned(),
                port: destination.1,
            }),
            protocol: v1::Protocol::Tcp as i32,
            protocol_number: 6,
        };
        v1::DropEvent {
            flow_id: 7,
            packet: Some(tuple(("10.0.0.5", 40_000), (destination, port))),
            conntrack: dnat_from.map(|vip| v1::Conntrack {
                original: Some(tuple(("10.0.0.5", 40_000), vip)),
                reply: Some(tuple((destination, port), ("10.0.0.5", 40_000))),
                dnat: true,
                snat: false,
            }),
            ..Default::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_drop_becomes_the_flow_the_engine_explains() {
        let flow = flow_of(&drop_to("10.0.1.9", 8080, None)).expect("a flow");
        assert_eq!(flow.from, Target::Ip(ip("10.0.0.5")));
        assert_eq!(flow.to, Target::Ip(ip("10.0.1.9")));
        assert_eq!(flow.port, 8080);
        assert_eq!(flow.original, None);
        let after_dnat =
            flow_of(&drop_to("10.0.1.9", 8080, Some(("10.96.0.10", 80)))).expect("a flow");
        assert_eq!(after_dnat.original, Some((ip("10.96.0.10"), 80)));
    }

    #[test]
    fn unreadable_drops_have_no_flow() {
        let mut bad_address = drop_to("10.0.1.9", 8080, None);
        if let Some(packet) = &mut bad_address.packet {
            packet.source = Some(v1::Endpoint {
                ip: "not an address".to_owned(),
                port: 1,
            });
        }
        assert!(flow_of(&bad_address).is_none());
        let mut big_port = drop_to("10.0.1.9", 70_000, None);
        assert!(flow_of(&big_port).is_none());
        if let Some(packet) = &mut big_port.packet {
            packet.protocol = convert::protocol(crate::model::Protocol::Icmp) as i32;
            packet.destination = Some(v1::Endpoint {
                ip: "10.0.1.9".to_owned(),
                port: 0,
            });
        }
        assert!(flow_of(&big_port).is_none());
    }
}
