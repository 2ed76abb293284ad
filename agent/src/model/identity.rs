//! Who an IP address is: a pod, a Service VIP, a node or something outside
//! the cluster. `enrich` makes these from its store; `explain`, `track` and
//! the sinks receive them. No I/O here.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;

/// The controller that owns a pod, walked up to the workload a user names
/// (a ReplicaSet's Deployment, a Job's CronJob when it can be told).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`, …
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// Where a Service VIP sent the packet (the DNAT target), when known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// The backend address.
    pub ip: IpAddr,
    /// The target port (post-DNAT).
    pub port: u16,
    /// `namespace/name` of the backend pod, when the address is a known pod.
    pub pod: Option<String>,
}

/// The identity of one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A pod (for a host-network pod the address is its node's).
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// `metadata.uid`.
        uid: String,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// The owning workload, when it has one.
        workload: Option<Workload>,
        /// The node it is scheduled on.
        node: Option<String>,
        /// True when it shares its node's network namespace.
        host_network: bool,
    },
    /// A Service's virtual IP.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The name of the Service port the packet was for, when known.
        port_name: Option<String>,
        /// The backend it was DNATed to, when known.
        backend: Option<Backend>,
    },
    /// A node's address (kubelet, host-network processes).
    Node {
        /// Node name.
        name: String,
        /// True when this node runs the destination pod: its kubelet is the
        /// one sending health probes to it.
        is_kubelet_of_destination: bool,
    },
    /// An address outside every known pod, Service and node.
    External {
        /// The address as a host prefix (`/32`, `/128`).
        cidr: IpNet,
    },
    /// Inside the cluster's pod ranges but not a known object (stale
    /// metadata, or a pod that already went away).
    Unknown {
        /// The address.
        ip: IpAddr,
    },
}

impl Identity {
    /// `namespace/name` for pods and Services, the node name for nodes,
    /// the address otherwise.
    pub fn display_name(&self) -> String {
        self.to_string()
    }

    /// The pod's `namespace/name`, when this is a pod.
    pub fn pod_key(&self) -> Option<String> {
        match self {
            Self::Pod {
                namespace, name, ..
            } => Some(format!("{namespace}/{name}")),
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod {
                namespace,
                name,
                host_network,
                ..
            } => {
                write!(f, "pod {namespace}/{name}")?;
                if *host_network {
                    f.write_str(" (hostNetwork)")?;
                }
                Ok(())
            }
            Self::Service {
                namespace, name, ..
            } => write!(f, "service {namespace}/{name}"),
            Self::Node { name, .. } => write!(f, "node {name}"),
            Self::External { cidr } => write!(f, "external {cidr}"),
            Self::Unknown { ip } => write!(f, "unknown {ip}"),
        }
    }
}
