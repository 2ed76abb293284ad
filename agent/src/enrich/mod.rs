//! Enrichment: the cluster metadata store. Receives Kubernetes objects from
//! a live watch ([`watch`]) or a snapshot file ([`snapshot`]), both through
//! one [`store::Store::apply`]; answers IP → identity, cgroup → pod and the
//! queries `explain` needs through [`view::View`], including what could not
//! be loaded ([`skipped`]).

pub mod cgroup;
pub mod change;
pub mod freshness;
pub mod object;
pub mod open;
pub mod policy;
pub mod skipped;
pub mod snapshot;
pub mod store;
pub mod view;
pub mod watch;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

/// Where the agent learns who the addresses are and which NetworkPolicies
/// apply.
#[derive(Clone, Debug, Default)]
pub enum MetadataConfig {
    /// None: events carry addresses only.
    #[default]
    Standalone,
    /// A `kubectl get ... -o yaml` List, read once at start.
    Snapshot(PathBuf),
    /// The live API server (kubeconfig or in-cluster service account),
    /// listed at start and watched.
    Kubernetes(watch::WatchSettings),
}

/// Errors of the enrichment step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes object the store cannot use (skipped, never fatal; the
    /// store remembers it so explanations say it is missing).
    #[error("{kind} {namespace}/{name}: {reason}")]
    Invalid {
        /// Its kind.
        kind: &'static str,
        /// Its namespace (empty for cluster objects).
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The snapshot file could not be read.
    #[error("cannot read snapshot {path}: {source}")]
    SnapshotRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The snapshot file is not a Kubernetes List.
    #[error("snapshot {path}: at {field}: {reason}")]
    SnapshotParse {
        /// The file.
        path: PathBuf,
        /// Field path of the problem (`items[3].spec`), `.` for the document.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No Kubernetes client configuration (no kubeconfig, not in a pod).
    #[error(
        "no Kubernetes configuration: {source} (set KUBECONFIG, run in a pod with a service account, or pass --snapshot FILE)"
    )]
    Config {
        /// Why.
        source: kube::config::InferConfigError,
    },
    /// The Kubernetes client could not be built.
    #[error("cannot build the Kubernetes client: {source}")]
    Client {
        /// Why.
        source: kube::Error,
    },
    /// The API server did not answer the first listing in time.
    #[error(
        "the API server did not list every kind within {seconds}s: is it reachable, and may this identity list pods, services, endpointslices, networkpolicies, namespaces and nodes?"
    )]
    SyncTimeout {
        /// The limit.
        seconds: u64,
    },
    /// A watch failed for good.
    #[error("watching {kind}: {source}")]
    Watch {
        /// The kind.
        kind: &'static str,
        /// Why.
        source: kube::runtime::watcher::Error,
    },
}
