//! The pipeline step between `track` and `fanout`: attaches to each dropped
//! flow who its two ends are and what NetworkPolicy says about it.
//!
//! Receives [`Event`]s and sends them on (`pipeline` publishes them). A flow is explained once,
//! on its `new` event, against the metadata store as it is then; its
//! `update` and `end` events carry the same explanation. Without metadata
//! (standalone) events pass through unchanged. This is the only part of
//! `explain` that touches a channel; the engine itself stays pure.
//!
//! Incidents get who their two ends are (the client from its cgroup's pod
//! when the cgroup names one, else from its address) and, only when
//! `track` joined a kernel drop of the same flow, that drop's explanation:
//! a timeout alone never blames a NetworkPolicy.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::{RwLock, mpsc};

use super::{Flow, explain};
use crate::{
    enrich::{cgroup::CgroupPaths, store::Store, view::View},
    model::{CgroupOwner, DropEvent, Event, EventKind, Explanation, Identity, Incident},
};

/// The explain step.
pub struct Explainer {
    store: Option<Arc<RwLock<Store>>>,
    by_flow: HashMap<u64, Arc<Explanation>>,
    cgroups: Option<CgroupPaths>,
}

impl Explainer {
    /// Explains against `store`; `None` passes events through.
    pub fn new(store: Option<Arc<RwLock<Store>>>) -> Self {
        Self {
            store,
            by_flow: HashMap::new(),
            cgroups: None,
        }
    }

    /// Also names the cgroup (path, and the pod or kubelet it belongs to)
    /// of every incident's process, resolving ids under this hierarchy.
    pub fn with_cgroups(mut self, cgroups: Option<CgroupPaths>) -> Self {
        self.cgroups = cgroups;
        self
    }

    /// The incident with its process's cgroup path and owner filled in.
    fn attribute(&mut self, incident: Arc<Incident>) -> Arc<Incident> {
        let Some(cgroups) = &mut self.cgroups else {
            return incident;
        };
        let Some(process) = &incident.process else {
            return incident;
        };
        if process.cgroup_path.is_some() {
            return incident;
        }
        let Some((path, owner)) = cgroups.owner_of(process.cgroup_id) else {
            return incident;
        };
        let mut attributed = Incident::clone(&incident);
        if let Some(process) = &mut attributed.process {
            process.cgroup_path = Some(path.to_string());
            process.owner = owner;
        }
        Arc::new(attributed)
    }

    /// Runs until `input` closes (or `output` does).
    pub async fn run(mut self, mut input: mpsc::Receiver<Event>, output: mpsc::Sender<Event>) {
        while let Some(event) = input.recv().await {
            let event = match (&self.store, event) {
                // Only a flow's first event needs the store; its updates
                // reuse what was said then.
                (Some(store), Event::Drop(drop)) if drop.kind == EventKind::New => {
                    let store = Arc::clone(store);
                    let view = store.read().await;
                    Event::Drop(self.annotate(&View::new(&view), drop))
                }
                (Some(_), Event::Drop(drop)) => Event::Drop(self.carry(drop)),
                (store, Event::Incident(incident)) => {
                    let store = store.clone();
                    let incident = self.attribute(incident);
                    match store {
                        Some(store) => {
                            let view = store.read().await;
                            Event::Incident(self.identify_incident(&View::new(&view), &incident))
                        }
                        None => Event::Incident(incident),
                    }
                }
                (_, other) => other,
            };
            if output.send(event).await.is_err() {
                return;
            }
        }
    }

    /// The event with its flow's explanation: computed for a `new` event,
    /// carried for `update` and `end`.
    pub fn annotate(&mut self, view: &View<'_>, drop: Arc<DropEvent>) -> Arc<DropEvent> {
        if drop.kind != EventKind::New {
            return self.carry(drop);
        }
        let explanation = explain_drop(view, &drop);
        if let Some(explanation) = &explanation {
            self.by_flow.insert(drop.flow_id, Arc::clone(explanation));
        }
        with_explanation(drop, explanation)
    }

    /// An `update` or `end` event with the explanation of its flow.
    fn carry(&mut self, drop: Arc<DropEvent>) -> Arc<DropEvent> {
        let explanation = match drop.kind {
            EventKind::End => self.by_flow.remove(&drop.flow_id),
            _ => self.by_flow.get(&drop.flow_id).cloned(),
        };
        with_explanation(drop, explanation)
    }

    /// The incident with its two ends named and, when it joined kernel
    /// drops, the latest drop's explanation (the one held for the flow, or
    /// computed now if the drop's flow already ended).
    pub fn identify_incident(&mut self, view: &View<'_>, incident: &Incident) -> Arc<Incident> {
        let mut named = incident.clone();
        let pod_of_cgroup = match incident
            .process
            .as_ref()
            .and_then(|process| process.owner.as_ref())
        {
            Some(CgroupOwner::Pod { uid, .. }) => view.pod_by_uid(uid).map(|pod| pod.identity()),
            _ => None,
        };
        let destination = view
            .identify_service(
                incident.flow.dst.ip,
                incident.flow.dst.port,
                incident.flow.protocol,
                None,
            )
            .unwrap_or_else(|| view.identify(incident.flow.dst.ip, None));
        let destination_node = match &destination {
            Identity::Pod { node, .. } => node.clone(),
            _ => None,
        };
        named.source =
            Some(pod_of_cgroup.unwrap_or_else(|| {
                view.identify(incident.flow.src.ip, destination_node.as_deref())
            }));
        named.destination = Some(destination);
        if let Some(drop) = incident.drops.last() {
            named.explanation = self
                .by_flow
                .get(&drop.flow_id)
                .cloned()
                .or_else(|| explain_drop(view, drop));
        }
        Arc::new(named)
    }

    /// Flows whose explanation is held.
    pub fn len(&self) -> usize {
        self.by_flow.len()
    }

    /// True when no explanation is held.
    pub fn is_empty(&self) -> bool {
        self.by_flow.is_empty()
    }
}

fn with_explanation(drop: Arc<DropEvent>, explanation: Option<Arc<Explanation>>) -> Arc<DropEvent> {
    if explanation.is_none() {
        return drop;
    }
    let mut annotated = DropEvent::clone(&drop);
    annotated.explanation = explanation;
    Arc::new(annotated)
}

/// What NetworkPolicy says about the dropped packet's flow; `None` (and a
/// debug log) when it cannot be said, e.g. for ICMP or an unknown address.
fn explain_drop(view: &View<'_>, drop: &DropEvent) -> Option<Arc<Explanation>> {
    if !drop.packet.protocol.has_ports() {
        return None;
    }
    let flow = Flow::from_packet(&drop.packet, drop.conntrack.as_ref());
    match explain(view, &flow) {
        Ok(explanation) => Some(Arc::new(explanation)),
        Err(error) => {
            tracing::trace!(%error, flow_id = drop.flow_id, "no explanation");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Protocol, Verdict},
        testkit::{mk_drop_event, mk_namespace, mk_pod, mk_policy, mk_tuple, pod, store},
    };

    fn drop_event(flow_id: u64, kind: EventKind, protocol: Protocol) -> Arc<DropEvent> {
        mk_drop_event(
            flow_id,
            kind,
            mk_tuple([10, 0, 0, 1], 40000, [10, 0, 0, 2], 8080, protocol),
        )
    }

    fn cluster() -> Store {
        store([
            mk_namespace("shop", &[]),
            pod(mk_pod("shop", "web", "10.0.0.1", &[("app", "web")])),
            pod(mk_pod("shop", "api", "10.0.0.2", &[("app", "api")])),
            mk_policy(
                "shop",
                "deny-all",
                "podSelector: {}\npolicyTypes: [Ingress]\n",
            ),
        ])
    }

    #[test]
    fn a_flow_is_explained_once_and_its_updates_carry_the_same_explanation() {
        let cluster = cluster();
        let view = View::new(&cluster);
        let mut explainer = Explainer::new(None);

        let new = explainer.annotate(&view, drop_event(7, EventKind::New, Protocol::Tcp));
        let explanation = new.explanation.clone().expect("explained");
        assert_eq!(explanation.verdict, Verdict::DenyIngress);
        assert_eq!(explainer.len(), 1);

        let update = explainer.annotate(&view, drop_event(7, EventKind::Update, Protocol::Tcp));
        let same = update.explanation.clone().expect("carried");
        assert!(Arc::ptr_eq(&explanation, &same), "not recomputed");

        let end = explainer.annotate(&view, drop_event(7, EventKind::End, Protocol::Tcp));
        assert!(end.explanation.is_some());
        assert!(explainer.is_empty(), "forgotten at the end of the flow");
    }

    #[test]
    fn flows_network_policy_cannot_speak_about_pass_through() {
        let cluster = cluster();
        let view = View::new(&cluster);
        let mut explainer = Explainer::new(None);
        let icmp = explainer.annotate(&view, drop_event(8, EventKind::New, Protocol::Icmp));
        assert!(icmp.explanation.is_none());
        assert!(explainer.is_empty());
    }
}
