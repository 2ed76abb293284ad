//! Peer semantics (`from` / `to` entries). A peer with only `podSelector`
//! selects pods of the policy's own namespace; with only
//! `namespaceSelector`, every pod of the selected namespaces; with both,
//! pods matching `podSelector` inside namespaces matching
//! `namespaceSelector` (AND, in one entry; separate entries are OR).
//! `namespaceSelector: {}` selects every namespace. An empty peer list
//! matches every peer. Selectors only ever match pods that are not
//! host-network (their traffic carries the node address): nodes, host
//! networking and outside addresses are matched by `ipBlock` only.
//! `ipBlock` matches any address in `cidr` and in no `except` range, pod
//! addresses included (the reference leaves ipBlock on pod IPs to the
//! implementation; dropscope treats it as plain address matching).
//! Receives compiled peers and the other end of the flow; emits whether a
//! peer matched and, when none did, why each missed.

use std::net::IpAddr;

use ipnet::IpNet;

use super::selector;
use crate::enrich::view::{Labels, Namespace, Peer, Pod, Selector, View};

/// The other end of the flow, as a peer is checked against it.
#[derive(Clone, Copy, Debug)]
pub struct PeerEnd<'a> {
    /// Its address.
    pub ip: IpAddr,
    /// The pod, when it is one (host-network pods included).
    pub pod: Option<&'a Pod>,
}

impl<'a> PeerEnd<'a> {
    /// The pod, when selectors can match it (not host-network).
    pub fn selectable(&self) -> Option<&'a Pod> {
        self.pod.filter(|pod| !pod.host_network)
    }
}

/// Why one peer did not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMiss<'p> {
    /// A selector peer, but the other end is not a pod selectors can match.
    NotAPod,
    /// A podSelector-only peer (the policy's namespace), pod elsewhere.
    OtherNamespace {
        /// The policy's namespace.
        policy_namespace: &'p str,
    },
    /// The namespaceSelector does not select the pod's namespace.
    NamespaceNotSelected {
        /// The selector.
        selector: &'p Selector,
    },
    /// The podSelector does not select the pod.
    PodNotSelected {
        /// The selector.
        selector: &'p Selector,
        /// The namespaceSelector beside it, when there is one.
        namespaces: Option<&'p Selector>,
    },
    /// The address is outside the ipBlock's CIDR.
    IpNotCovered {
        /// The CIDR.
        cidr: IpNet,
    },
    /// The address is in the CIDR but an except range removes it.
    IpExcepted {
        /// The CIDR.
        cidr: IpNet,
        /// The except range.
        except: IpNet,
    },
}

/// The outcome of a rule's peer list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerOutcome<'p> {
    /// True when some peer (or the empty list) matched.
    pub matched: bool,
    /// Why each peer missed (peer index, reason), when none matched.
    pub misses: Vec<(usize, PeerMiss<'p>)>,
}

/// Checks one peer; `None` when it matches.
pub fn check<'p>(
    view: &View<'_>,
    policy_namespace: &'p str,
    peer: &'p Peer,
    end: &PeerEnd<'_>,
) -> Option<PeerMiss<'p>> {
    match peer {
        Peer::IpBlock { cidr, except } => {
            if !cidr.contains(&end.ip) {
                return Some(PeerMiss::IpNotCovered { cidr: *cidr });
            }
            except
                .iter()
                .find(|range| range.contains(&end.ip))
                .map(|range| PeerMiss::IpExcepted {
                    cidr: *cidr,
                    except: *range,
                })
        }
        Peer::Pods { namespaces, pods } => {
            let Some(pod) = end.selectable() else {
                return Some(PeerMiss::NotAPod);
            };
            match namespaces {
                None if pod.namespace.as_ref() != policy_namespace => {
                    return Some(PeerMiss::OtherNamespace { policy_namespace });
                }
                Some(selector) if !namespace_selected(view, selector, &pod.namespace) => {
                    return Some(PeerMiss::NamespaceNotSelected { selector });
                }
                _ => {}
            }
            match pods {
                Some(selector) if !selector::matches(selector, &pod.labels) => {
                    Some(PeerMiss::PodNotSelected {
                        selector,
                        namespaces: namespaces.as_ref(),
                    })
                }
                _ => None,
            }
        }
    }
}

/// True when a namespaceSelector selects a namespace. A namespace the store
/// does not know is taken to carry only `kubernetes.io/metadata.name`.
pub fn namespace_selected(view: &View<'_>, selector: &Selector, namespace: &str) -> bool {
    if selector.is_empty() {
        return true;
    }
    match view.namespace(namespace) {
        Some(found) => selector::matches(selector, &found.labels),
        None => selector::matches(
            selector,
            &Labels::from_pairs([("kubernetes.io/metadata.name", namespace)]),
        ),
    }
}

/// Checks a rule's peer list (empty: every peer).
pub fn check_all<'p>(
    view: &View<'_>,
    policy_namespace: &'p str,
    peers: &'p [Peer],
    end: &PeerEnd<'_>,
) -> PeerOutcome<'p> {
    if peers.is_empty() {
        return PeerOutcome {
            matched: true,
            misses: Vec::new(),
        };
    }
    let mut misses = Vec::new();
    for (index, peer) in peers.iter().enumerate() {
        match check(view, policy_namespace, peer, end) {
            None => {
                return PeerOutcome {
                    matched: true,
                    misses: Vec::new(),
                };
            }
            Some(miss) => misses.push((index, miss)),
        }
    }
    PeerOutcome {
        matched: false,
        misses,
    }
}

/// True when some (not host-network) pod of the namespaces in scope
/// matches `pods`. `namespaces` is the peer's namespaceSelector, or `None`
/// for the policy's own namespace.
pub fn any_pod_selected(
    view: &View<'_>,
    policy_namespace: &str,
    namespaces: Option<&Selector>,
    pods: &Selector,
) -> bool {
    let in_namespace = |namespace: &str| {
        let matching =
            |pod: &&std::sync::Arc<Pod>| !pod.host_network && selector::matches(pods, &pod.labels);
        match pods.first_equality() {
            Some((key, value)) => view
                .pods_in_with_label(namespace, key, value)
                .any(|pod| matching(&pod)),
            None => view.pods_in(namespace).any(|pod| matching(&pod)),
        }
    };
    match namespaces {
        None => in_namespace(policy_namespace),
        Some(selector) => {
            let namespace_matches = |namespace: &Namespace| {
                selector::matches(selector, &namespace.labels) && in_namespace(&namespace.name)
            };
            // From the smaller side: the namespaces holding pods with the
            // podSelector's first equality, or those the namespaceSelector
            // may select.
            let by_pod_label = pods.first_equality().map(|(key, value)| {
                (
                    view.namespaces_with_pod_label_count(key, value),
                    view.namespaces_with_pod_label(key, value),
                )
            });
            match by_pod_label {
                Some((count, namespaces))
                    if count <= view.namespaces_maybe_selected_count(selector) =>
                {
                    namespaces
                        .filter_map(|name| view.namespace(name))
                        .any(namespace_matches)
                }
                _ => view
                    .namespaces_maybe_selected(selector)
                    .any(namespace_matches),
            }
        }
    }
}

/// Label keys a namespaceSelector requires that no namespace carries.
pub fn missing_namespace_keys<'s>(view: &View<'_>, selector: &'s Selector) -> Vec<&'s str> {
    selector::required_keys(selector)
        .filter(|key| !view.namespace_label_key_exists(key))
        .collect()
}

/// True when a namespaceSelector selects at least one namespace.
pub fn any_namespace_selected(view: &View<'_>, selector: &Selector) -> bool {
    view.namespaces_maybe_selected(selector)
        .any(|namespace| selector::matches(selector, &namespace.labels))
}
