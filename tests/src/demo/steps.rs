//! What a workload of the demo does (a DNS lookup, an HTTP request, a
//! kubelet probe), run for real by `lab-client` in the pod's network
//! namespace and kubelet-shaped cgroup, and what its user would have seen.

use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use serde_json::Value;

use crate::lab::{Lab, LabClient, Netns};

/// Longest a step may take: a connect gives up after 1 + 2 + 4 s of SYN
/// retransmits (the lab's `tcp_syn_retries=2`).
const STEP_LIMIT: Duration = Duration::from_secs(20);

/// One action of a workload.
#[derive(Clone, Debug)]
pub enum Action {
    /// An A lookup of `name` sent to `server` (two tries, one second each).
    Dns {
        /// The DNS Service's address.
        server: SocketAddr,
        /// The name looked up.
        name: String,
    },
    /// `GET path` over a new TCP connection to `to`.
    Http {
        /// The address connected to.
        to: SocketAddr,
        /// The request path.
        path: String,
    },
}

/// An action and who does it.
#[derive(Clone, Debug)]
pub struct Step {
    /// Who acts, for the reader: `shop/cart`, `kubelet on demo-node`.
    pub who: String,
    /// The network namespace it runs in.
    pub netns: Netns,
    /// The lab pod whose container cgroup it runs in; `None` for the
    /// kubelet (the node's `kubelet.service` cgroup).
    pub pod: Option<String>,
    /// What it does.
    pub action: Action,
}

/// What a step came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// True when the workload got what it asked for.
    pub succeeded: bool,
    /// What its user saw, in a few words.
    pub seen: String,
}

impl Step {
    /// The command a person would have typed, for the reader.
    pub fn command(&self) -> String {
        match &self.action {
            Action::Dns { server, name } => format!("lookup {name} (A) via {server}"),
            Action::Http { to, path } => format!("GET http://{to}{path}"),
        }
    }

    /// Runs it in `lab` and says how it went.
    pub fn run(&self, lab: &Lab, client: &LabClient) -> Result<Outcome> {
        let cgroup = match &self.pod {
            Some(pod) => lab.pod_cgroup(lab.pod(pod))?.path().to_path_buf(),
            None => lab.kubelet_cgroup()?.path().to_path_buf(),
        };
        let result = match &self.action {
            Action::Dns { server, name } => client.run_in(
                &self.netns,
                Some(&cgroup),
                &[
                    "dns",
                    &server.to_string(),
                    name,
                    "--tries",
                    "2",
                    "--timeout-ms",
                    "1000",
                ],
                STEP_LIMIT,
            )?,
            Action::Http { to, path } => client.run_in(
                &self.netns,
                Some(&cgroup),
                &["connect", &to.to_string(), "--http", path],
                STEP_LIMIT,
            )?,
        };
        Ok(match &self.action {
            Action::Dns { .. } => dns_outcome(&result),
            Action::Http { .. } => http_outcome(&result),
        })
    }
}

fn seconds(result: &Value) -> String {
    let ms = result["elapsed_ms"].as_u64().unwrap_or(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn dns_outcome(result: &Value) -> Outcome {
    let tries = result["tries"].as_u64().unwrap_or(0);
    match result["outcome"].as_str().unwrap_or_default() {
        "answered" if result["rcode"].as_u64() == Some(0) => Outcome {
            succeeded: true,
            seen: format!("answered in {}", seconds(result)),
        },
        "answered" => Outcome {
            succeeded: false,
            seen: format!(
                "answered with rcode {} in {}",
                result["rcode"],
                seconds(result)
            ),
        },
        "timed_out" => Outcome {
            succeeded: false,
            seen: format!("no answer after {tries} tries ({})", seconds(result)),
        },
        other => Outcome {
            succeeded: false,
            seen: format!("{other} after {}", seconds(result)),
        },
    }
}

fn http_outcome(result: &Value) -> Outcome {
    match result["outcome"].as_str().unwrap_or_default() {
        "connected" => {
            let status = result["status"].as_str().unwrap_or_default().to_owned();
            Outcome {
                succeeded: status.contains(" 200 "),
                seen: format!("{status} in {}", seconds(result)),
            }
        }
        "timed_out" => Outcome {
            succeeded: false,
            seen: format!(
                "connect timed out after {} (ETIMEDOUT), no response",
                seconds(result)
            ),
        },
        "refused" => Outcome {
            succeeded: false,
            seen: format!("connection refused after {}", seconds(result)),
        },
        other => Outcome {
            succeeded: false,
            seen: format!("{other} after {}", seconds(result)),
        },
    }
}
