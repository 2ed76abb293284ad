//! The Kubernetes side of a lab: a snapshot (a `List`, as `kubectl get
//! namespaces,pods,services,endpointslices,networkpolicies,nodes -A -o json`
//! prints it) describing the lab's pods, Services and policies with the
//! lab's real addresses, for `dropscope agent --snapshot`.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// A cluster snapshot being written.
#[derive(Default)]
pub struct Cluster {
    items: Vec<Value>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// A namespace with these labels (plus `kubernetes.io/metadata.name`,
    /// which the API server always sets).
    pub fn namespace(&mut self, name: &str, labels: &[(&str, &str)]) -> &mut Self {
        let mut all = serde_json::Map::new();
        all.insert("kubernetes.io/metadata.name".into(), json!(name));
        for (key, value) in labels {
            all.insert((*key).into(), json!(value));
        }
        self.items.push(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": name, "uid": format!("ns-{name}"), "labels": all },
        }));
        self
    }

    /// A node with this internal IP.
    pub fn node(&mut self, name: &str, ip: IpAddr) -> &mut Self {
        self.items.push(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name, "uid": format!("node-{name}") },
            "status": { "addresses": [
                { "type": "InternalIP", "address": ip.to_string() },
                { "type": "Hostname", "address": name },
            ] },
        }));
        self
    }

    /// The two ends most tests use: namespaces `frontend` and `backend`,
    /// pod `frontend/web` (`app=web`) at `web` = (address, node) and pod
    /// `backend/api` (`app=api`, container port `http` = `api_port` over
    /// `protocol`) at `api`.
    pub fn web_and_api(
        &mut self,
        web: (IpAddr, &str),
        api: (IpAddr, &str),
        api_port: u16,
        protocol: &str,
    ) -> &mut Self {
        self.namespace("frontend", &[])
            .namespace("backend", &[])
            .pod("frontend", "web", web.0, web.1, &[("app", "web")], &[])
            .pod(
                "backend",
                "api",
                api.0,
                api.1,
                &[("app", "api")],
                &[("http", api_port, protocol)],
            )
    }

    /// The seeds' kubelet-probe shape: namespace `default`, pod
    /// `default/web` (`app=web`, container port `http` 8080/TCP) at `web`
    /// on `node`, and policy `default/allow-from-pods`, which allows ingress
    /// from every pod of the namespace and nothing else (not the node's
    /// own probes).
    pub fn probed_web(&mut self, node: &str, web: IpAddr) -> &mut Self {
        self.namespace("default", &[])
            .pod(
                "default",
                "web",
                web,
                node,
                &[("app", "web")],
                &[("http", 8080, "TCP")],
            )
            .policy(
                "default",
                "allow-from-pods",
                json!({
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [{ "from": [{ "podSelector": {} }] }],
                }),
            )
    }

    /// Service `backend/api` at `vip`: port `http` 80 to target port 8080
    /// over TCP, selecting `app=api`, with one endpoint, `api` (the pod
    /// [`Self::web_and_api`] makes).
    pub fn api_service(&mut self, vip: IpAddr, api: IpAddr) -> &mut Self {
        self.service(
            "backend",
            "api",
            vip,
            ("http", 80, 8080, "TCP"),
            &[("app", "api")],
            &[("api", api)],
        )
    }

    /// A running pod with labels and container ports `(name, port, protocol)`.
    pub fn pod(
        &mut self,
        namespace: &str,
        name: &str,
        ip: IpAddr,
        node: &str,
        labels: &[(&str, &str)],
        ports: &[(&str, u16, &str)],
    ) -> &mut Self {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), json!(value)))
            .collect();
        let ports: Vec<Value> = ports
            .iter()
            .map(|(port_name, port, protocol)| {
                json!({ "name": port_name, "containerPort": port, "protocol": protocol })
            })
            .collect();
        self.items.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("pod-{namespace}-{name}"),
                "labels": labels,
            },
            "spec": {
                "nodeName": node,
                "containers": [ { "name": "main", "image": "registry.k8s.io/pause:3.10", "ports": ports } ],
            },
            "status": { "phase": "Running", "podIP": ip.to_string(), "podIPs": [ { "ip": ip.to_string() } ] },
        }));
        self
    }

    /// A ClusterIP Service with one port, its selector, and an
    /// EndpointSlice pointing at `backends` (pod namespace/name and IP).
    #[allow(clippy::too_many_arguments, reason = "mirrors the fields of a Service")]
    pub fn service(
        &mut self,
        namespace: &str,
        name: &str,
        cluster_ip: IpAddr,
        port: (&str, u16, u16, &str),
        selector: &[(&str, &str)],
        backends: &[(&str, IpAddr)],
    ) -> &mut Self {
        let (port_name, service_port, target_port, protocol) = port;
        let selector: serde_json::Map<String, Value> = selector
            .iter()
            .map(|(key, value)| ((*key).to_owned(), json!(value)))
            .collect();
        self.items.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": namespace, "uid": format!("svc-{namespace}-{name}") },
            "spec": {
                "type": "ClusterIP", "clusterIP": cluster_ip.to_string(), "clusterIPs": [cluster_ip.to_string()],
                "selector": selector,
                "ports": [ { "name": port_name, "port": service_port, "targetPort": target_port, "protocol": protocol } ],
            },
        }));
        let endpoints: Vec<Value> = backends
            .iter()
            .map(|(pod, ip)| {
                json!({
                    "addresses": [ip.to_string()],
                    "conditions": { "ready": true },
                    "targetRef": { "kind": "Pod", "namespace": namespace, "name": pod },
                })
            })
            .collect();
        self.items.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-lab"), "namespace": namespace,
                "labels": { "kubernetes.io/service-name": name },
            },
            "addressType": if cluster_ip.is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": endpoints,
            "ports": [ { "name": port_name, "port": target_port, "protocol": protocol } ],
        }));
        self
    }

    /// A NetworkPolicy with this spec.
    pub fn policy(&mut self, namespace: &str, name: &str, spec: Value) -> &mut Self {
        self.items.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "name": name, "namespace": namespace, "uid": format!("np-{namespace}-{name}") },
            "spec": spec,
        }));
        self
    }

    /// The objects so far, for an API server to serve.
    pub fn items(&self) -> &[Value] {
        &self.items
    }

    /// Writes the snapshot as a JSON `List` to a unique temporary file.
    pub fn write(&self, lab_id: u32) -> Result<Snapshot> {
        let path = std::env::temp_dir().join(format!("dropscope-lab-{lab_id}-snapshot.json"));
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": self.items });
        std::fs::write(&path, serde_json::to_vec_pretty(&list)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Snapshot { path })
    }
}

/// A snapshot file; removed on drop.
pub struct Snapshot {
    path: PathBuf,
}

impl Snapshot {
    /// Its path, for `--snapshot`.
    pub fn path(&self) -> &str {
        self.path.to_str().unwrap_or_default()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
