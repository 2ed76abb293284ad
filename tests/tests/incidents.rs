//! End-to-end: incidents, the failures a client suffers (a connect that
//! timed out, was refused or needed retries; a DNS question unanswered or
//! answered with an error), decided from the socket's side and joined with
//! the kernel drops of the same flow. The agent runs inside the lab node,
//! so its tc programs watch the pods' veths and the uplinks to remote
//! nodes; clients are `lab-client` processes in kubelet-shaped cgroups.
//!
//! The socket tracepoints see every socket of the host: each test keeps
//! only the incidents from its own pod's address to its own destination,
//! checks the client socket's port on its own, and checks the rest against
//! the kernel's own view (nft counters, the client's outcome, `ss`). A connect to a silent peer
//! lasts one SYN timeout (~7 s with `tcp_syn_retries=2`); the tests wait
//! for the agent with deadlines, never for a fixed time.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{LabClient, LabProcess, Netns, json_u64},
};
use serde_json::Value;

/// For the agent, after the client is done.
const WAIT: Duration = Duration::from_secs(20);
/// Longer than one SYN timeout with two retries (~7 s).
const CONNECT: Duration = Duration::from_secs(20);
/// For things that answer at once.
const QUICK: Duration = Duration::from_secs(5);

fn client() -> LabClient {
    LabClient::new(env!("CARGO_BIN_EXE_lab-client"))
}

/// The value at `path` (object keys), `Null` when absent.
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .unwrap_or(&Value::Null)
}

/// The string at `path`; empty when absent (proto3 JSON omits defaults).
fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).as_str().unwrap_or_default()
}

/// The number at `path` (a proto3 JSON 64-bit string or a number); 0 when
/// absent, as proto3 JSON omits zeros.
fn number(value: &Value, path: &[&str]) -> u64 {
    json_u64(at(value, path)).unwrap_or(0)
}

/// An `Endpoint` (`{"ip", "port"}`) as an address.
fn endpoint(value: &Value) -> Option<SocketAddr> {
    let ip: IpAddr = value.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(value.get("port").and_then(Value::as_u64).unwrap_or(0)).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The `local` address a `lab-client` line names.
fn local_of(line: &Value) -> Result<SocketAddr> {
    let local = text(line, &["local"]);
    local
        .parse()
        .with_context(|| format!("local address {local:?} in {line}"))
}

/// Every incident line so far (the `incident` of each incident event) for
/// which `keep` holds, in arrival order.
fn incidents(agent: &Agent, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|event| event["kind"] == "EVENT_KIND_INCIDENT")
        .filter_map(|event| event.get("incident").cloned())
        .filter(|incident| keep(incident))
        .collect()
}

/// The latest line of every incident, by incident id (0: none given).
fn latest(lines: &[Value]) -> BTreeMap<u64, Value> {
    lines
        .iter()
        .map(|incident| (number(incident, &["incidentId"]), incident.clone()))
        .collect()
}

/// Incidents of flows from address `from` (any port) to `to`: in a lab,
/// the sockets of one client pod to one destination. Tests select by this
/// and check the source port on their own, so a wrong port fails as such.
fn between(from: IpAddr, to: SocketAddr) -> impl Fn(&Value) -> bool {
    move |incident| {
        endpoint(&incident["flow"]["source"]).map(|source| source.ip()) == Some(from)
            && endpoint(&incident["flow"]["destination"]) == Some(to)
    }
}

/// Checks that `incident` is the flow of the client socket at `local`.
fn ensure_socket(incident: &Value, local: SocketAddr) -> Result<()> {
    let source = endpoint(&incident["flow"]["source"]);
    ensure!(
        source == Some(local),
        "the incident's flow starts at the client socket {local}, not at {source:?}: {incident}"
    );
    Ok(())
}

/// Lines as JSON, one a line, for failure messages.
fn show(lines: &[Value]) -> String {
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the latest state of the incidents `keep` selects satisfies
/// `done`; returns those latest states. On timeout the error shows the
/// incident lines of the flow and the agent's log.
fn wait_incidents(
    agent: &Agent,
    what: &str,
    keep: impl Fn(&Value) -> bool,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    agent
        .wait_for(WAIT, what, |agent| {
            let states: Vec<Value> = latest(&incidents(agent, &keep)).into_values().collect();
            done(&states).then_some(states)
        })
        .inspect(|states| {
            // Shown with --nocapture: the one line each incident reads as.
            for state in states {
                eprintln!("incident: {}", state["summary"]);
            }
        })
        .with_context(|| {
            let all = incidents(agent, |_| true);
            format!(
                "incident lines of this flow:\n{}\nthe agent's last incident lines (of {}):\n{}",
                show(&incidents(agent, &keep)),
                all.len(),
                show(&all[all.len().saturating_sub(10)..])
            )
        })
}

/// Waits until the one incident `keep` selects has a state for which
/// `ready` holds, failing when `keep` selects more than one incident.
fn only_incident(
    agent: &Agent,
    what: &str,
    keep: impl Fn(&Value) -> bool,
    ready: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let states = wait_incidents(agent, what, keep, |states| states.iter().any(&ready))?;
    ensure!(
        states.len() == 1,
        "one incident for one flow:\n{}",
        show(&states)
    );
    Ok(states.into_iter().next().unwrap_or_default())
}

/// Waits for the first incident of `keep` and returns the latest state of
/// every incident `keep` selects.
fn wait_any(agent: &Agent, what: &str, keep: impl Fn(&Value) -> bool) -> Result<Vec<Value>> {
    wait_incidents(agent, what, keep, |states| !states.is_empty())
}

/// Polls `check` until it holds, failing after `limit`.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while !check()? {
        ensure!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A DNS server pod answering `answer` on 0.0.0.0:5353.
fn dns_server(netns: &Netns, answer: &str) -> Result<LabProcess> {
    let server = client().spawn_in(
        netns,
        None,
        &["dns-server", "0.0.0.0:5353", "--answer", answer],
    )?;
    let listening = server.first_line(QUICK)?;
    ensure!(
        listening["listening"] == "0.0.0.0:5353",
        "dns-server: {listening}"
    );
    Ok(server)
}

#[test]
fn connect_silently_dropped_beyond_the_node() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(8080)?;
    let cgroup = lab.pod_cgroup(&pod)?;
    // The remote node is a namespace on this very kernel, so its nftables
    // drop fires kfree_skb where the agent sees it, which an agent on
    // another machine never would: NETFILTER_DROP is left out of the
    // reported reasons to make the remote drop as invisible as a real one.
    let agent = Agent::start_in(&lab.node, &["--drop-reasons", "default,-NETFILTER_DROP"])?;

    let to = SocketAddr::new(far.pod_ip().into(), 8080);
    let mut connect = client().spawn_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &to.to_string()],
    )?;
    let pid = connect.pid();
    let result = connect.wait(CONNECT)?;
    ensure!(result["outcome"] == "timed_out", "{result}");
    let local = local_of(&result)?;
    let dropped = far.dropped(8080)?;
    ensure!(dropped >= 2, "the SYN was retransmitted: {dropped} dropped");

    let ours = between(local.ip(), to);
    let states = wait_any(&agent, "the connect's incident", &ours)?;
    ensure!(
        states.len() == 1,
        "one incident for one connect:\n{}",
        show(&states)
    );
    let incident = &states[0];
    let timeouts = incidents(&agent, &ours)
        .into_iter()
        .filter(|line| line["kind"] == "INCIDENT_KIND_CONNECT_TIMEOUT")
        .filter(|line| line["eventKind"] == "INCIDENT_EVENT_KIND_NEW")
        .count();
    assert_eq!(timeouts, 1, "one CONNECT_TIMEOUT decided: {incident}");
    assert_eq!(
        incident["kind"], "INCIDENT_KIND_CONNECT_TIMEOUT",
        "{incident}"
    );
    assert_eq!(incident["place"], "FAILURE_PLACE_BEYOND_NODE", "{incident}");
    assert_eq!(
        endpoint(&incident["flow"]["destination"]),
        Some(to),
        "{incident}"
    );
    assert_eq!(incident["flow"]["protocol"], "PROTOCOL_TCP", "{incident}");
    assert_eq!(endpoint(&incident["asked"]), Some(to), "{incident}");
    let tcp = &incident["tcp"];
    assert_eq!(tcp["outcome"], "CONNECT_OUTCOME_TIMED_OUT", "{incident}");
    assert_eq!(text(tcp, &["socketErrorName"]), "ETIMEDOUT", "{incident}");
    assert_eq!(number(tcp, &["socketError"]), libc::ETIMEDOUT as u64);
    assert_eq!(
        text(tcp, &["leftInterface", "name"]),
        far.uplink(),
        "{incident}"
    );
    // Ground truth: every SYN the remote node dropped left by the uplink,
    // the first one and its retransmissions.
    assert_eq!(
        number(tcp, &["synRetransmits"]),
        dropped - 1,
        "{dropped} SYNs dropped: {incident}"
    );
    // Without fentry/tcp_connect (refused on some kernels) the socket's
    // port is learnt at its first retransmit, so the first SYN or two may
    // leave unmatched: seen leaving are at least the later retransmits.
    let left = number(tcp, &["synsLeft"]);
    ensure!(
        left >= dropped.saturating_sub(2).max(1) && left <= dropped,
        "{left} SYNs seen leaving, {dropped} dropped beyond: {incident}"
    );
    ensure!(
        !text(tcp, &["duration"]).is_empty(),
        "a duration: {incident}"
    );
    let process = &incident["process"];
    assert_eq!(number(process, &["pid"]), u64::from(pid), "{incident}");
    assert_eq!(text(process, &["comm"]), "lab-client", "{incident}");
    assert_eq!(number(process, &["cgroupId"]), cgroup.id(), "{incident}");
    assert_eq!(
        text(process, &["cgroupPath"]),
        cgroup.relative(),
        "{incident}"
    );
    assert_eq!(text(process, &["pod", "uid"]), cgroup.uid(), "{incident}");
    assert_eq!(
        text(process, &["pod", "containerId"]),
        cgroup.container_id(),
        "{incident}"
    );
    assert_eq!(
        text(process, &["pod", "runtime"]),
        "containerd",
        "{incident}"
    );
    ensure!(
        process["kubelet"] != true,
        "a pod is not the kubelet: {incident}"
    );
    ensure!(
        at(incident, &["drops"])
            .as_array()
            .is_none_or(Vec::is_empty),
        "nothing dropped on this node: {incident}"
    );
    ensure!(!text(incident, &["summary"]).is_empty(), "{incident}");
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}

#[test]
fn connect_dropped_by_a_local_rule_joins_the_drop() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    lab.nft()
        .drop_forward("deny_server", server.ipv4.into(), 8443, "tcp")?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &[])?;

    let to = SocketAddr::new(server.ipv4.into(), 8443);
    let result = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &to.to_string()],
        CONNECT,
    )?;
    ensure!(result["outcome"] == "timed_out", "{result}");
    let local = local_of(&result)?;
    let dropped = lab.nft().counter("deny_server")?;
    ensure!(dropped >= 2, "the SYN was retransmitted: {dropped} dropped");

    let incident = only_incident(
        &agent,
        "the connect's incident with its drop",
        between(local.ip(), to),
        |incident| incident["place"] == "FAILURE_PLACE_THIS_NODE",
    )?;
    let incident = &incident;
    assert_eq!(
        incident["kind"], "INCIDENT_KIND_CONNECT_TIMEOUT",
        "{incident}"
    );
    assert_eq!(
        endpoint(&incident["flow"]["destination"]),
        Some(to),
        "{incident}"
    );
    let tcp = &incident["tcp"];
    assert_eq!(tcp["outcome"], "CONNECT_OUTCOME_TIMED_OUT", "{incident}");
    assert_eq!(text(tcp, &["socketErrorName"]), "ETIMEDOUT", "{incident}");
    assert_eq!(
        number(tcp, &["synRetransmits"]),
        dropped - 1,
        "nft dropped {dropped} SYNs: {incident}"
    );
    let drops = at(incident, &["drops"])
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(!drops.is_empty(), "the kernel drop joined: {incident}");
    let drop = &drops[0];
    assert_eq!(
        text(drop, &["reason", "name"]),
        "NETFILTER_DROP",
        "{incident}"
    );
    assert_eq!(
        endpoint(&drop["packet"]["source"]),
        Some(local),
        "{incident}"
    );
    assert_eq!(
        endpoint(&drop["packet"]["destination"]),
        Some(to),
        "{incident}"
    );
    assert_eq!(
        drops
            .iter()
            .map(|drop| number(drop, &["packets"]))
            .sum::<u64>(),
        dropped,
        "the joined drops count every SYN nft dropped: {incident}"
    );
    // The same flow as the drop events the agent printed.
    let printed: BTreeSet<u64> = agent
        .drops(|drop| {
            (drop.src.ip, drop.src.port) == (local.ip(), local.port())
                && (drop.dst.ip, drop.dst.port) == (to.ip(), to.port())
        })
        .iter()
        .map(|drop| drop.flow_id)
        .collect();
    assert_eq!(
        printed.len(),
        1,
        "one drop flow for one connect: {printed:?}"
    );
    assert_eq!(
        Some(number(drop, &["flowId"])),
        printed.first().copied(),
        "the incident's drop is the printed flow: {incident}"
    );
    // Dropped in the agent's own namespace (the lab node's): named, with a
    // device of that node.
    assert_eq!(text(drop, &["netnsName"]), "host", "{incident}");
    let device = text(drop, &["interface"]);
    ensure!(!device.is_empty(), "the drop's device is named: {incident}");
    lab.node
        .ip(&["link", "show", "dev", device])
        .with_context(|| format!("{device} is a device of the lab node: {incident}"))?;
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}

#[test]
fn closed_port_is_refused_not_timed_out() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &[])?;

    // Nothing listens on the server pod's port 7: its kernel sends an RST.
    let to = SocketAddr::new(server.ipv4.into(), 7);
    let result = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &to.to_string()],
        QUICK,
    )?;
    ensure!(result["outcome"] == "refused", "{result}");
    let local = local_of(&result)?;

    let ours = between(local.ip(), to);
    let states = wait_any(&agent, "the refused connect's incident", &ours)?;
    ensure!(
        states.len() == 1,
        "one incident for one connect:\n{}",
        show(&states)
    );
    let incident = &states[0];
    assert_eq!(
        incident["kind"], "INCIDENT_KIND_CONNECT_REFUSED",
        "{incident}"
    );
    assert_eq!(incident["place"], "FAILURE_PLACE_REFUSED", "{incident}");
    assert_eq!(
        endpoint(&incident["flow"]["destination"]),
        Some(to),
        "{incident}"
    );
    let tcp = &incident["tcp"];
    assert_eq!(tcp["outcome"], "CONNECT_OUTCOME_REFUSED", "{incident}");
    assert_eq!(
        text(tcp, &["socketErrorName"]),
        "ECONNREFUSED",
        "{incident}"
    );
    assert_eq!(number(tcp, &["socketError"]), libc::ECONNREFUSED as u64);
    assert_eq!(
        number(tcp, &["synRetransmits"]),
        0,
        "refused at once: {incident}"
    );
    let timeouts: Vec<Value> = incidents(&agent, &ours)
        .into_iter()
        .filter(|line| line["kind"] == "INCIDENT_KIND_CONNECT_TIMEOUT")
        .collect();
    ensure!(
        timeouts.is_empty(),
        "a refused connect did not time out:\n{}",
        show(&timeouts)
    );
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}

#[test]
fn dns_to_a_dnat_vip_dropped_after_translation() -> Result<()> {
    const NAME: &str = "api.shop.svc.cluster.local";
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let coredns = lab.add_pod("coredns")?;
    let _server = dns_server(&coredns.netns, "a:10.1.2.3")?;
    let vip = IpAddr::V4(lab.vip(10));
    lab.nft()
        .service("kube-dns", vip, 53, "udp", coredns.ipv4.into(), 5353)?;
    lab.nft()
        .drop_forward("deny_dns", coredns.ipv4.into(), 5353, "udp")?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &["--dns-timeout", "2s"])?;

    let service = SocketAddr::new(vip, 53);
    let result = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &[
            "dns",
            &service.to_string(),
            NAME,
            "--tries",
            "2",
            "--timeout-ms",
            "500",
        ],
        QUICK,
    )?;
    ensure!(result["outcome"] == "timed_out", "{result}");
    assert_eq!(result["tries"], 2, "{result}");
    let local = local_of(&result)?;
    let dropped = lab.nft().counter("deny_dns")?;
    assert_eq!(dropped, 2, "nft dropped both tries");

    let incident = only_incident(
        &agent,
        "the unanswered question with its drop",
        between(local.ip(), service),
        |incident| incident["place"] == "FAILURE_PLACE_THIS_NODE",
    )?;
    let incident = &incident;
    assert_eq!(
        incident["kind"], "INCIDENT_KIND_DNS_UNANSWERED",
        "{incident}"
    );
    assert_eq!(
        endpoint(&incident["flow"]["destination"]),
        Some(service),
        "the socket's view, before DNAT: {incident}"
    );
    assert_eq!(incident["flow"]["protocol"], "PROTOCOL_UDP", "{incident}");
    let dns = &incident["dns"];
    assert_eq!(text(dns, &["name"]), NAME, "{incident}");
    assert_eq!(number(dns, &["qtype"]), 1, "{incident}");
    assert_eq!(text(dns, &["qtypeName"]), "A", "{incident}");
    assert_eq!(number(dns, &["attempts"]), 2, "{incident}");
    assert_eq!(endpoint(&dns["server"]), Some(service), "{incident}");
    ensure!(dns["answered"] != true, "unanswered: {incident}");
    let drops = at(incident, &["drops"])
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(!drops.is_empty(), "the kernel drop joined: {incident}");
    let drop = &drops[0];
    assert_eq!(
        text(drop, &["reason", "name"]),
        "NETFILTER_DROP",
        "{incident}"
    );
    let backend = SocketAddr::new(coredns.ipv4.into(), 5353);
    assert_eq!(
        endpoint(&drop["packet"]["destination"]),
        Some(backend),
        "the packet was dropped after DNAT: {incident}"
    );
    assert_eq!(
        endpoint(&drop["packet"]["source"]),
        Some(local),
        "{incident}"
    );
    assert_eq!(
        endpoint(&drop["conntrack"]["original"]["destination"]),
        Some(service),
        "conntrack's original tuple: the VIP: {incident}"
    );
    assert_eq!(
        endpoint(&drop["conntrack"]["original"]["source"]),
        Some(local),
        "{incident}"
    );
    assert_eq!(
        endpoint(&drop["conntrack"]["reply"]["source"]),
        Some(backend),
        "conntrack's reply tuple: the backend: {incident}"
    );
    assert_eq!(
        drops
            .iter()
            .map(|drop| number(drop, &["packets"]))
            .sum::<u64>(),
        dropped,
        "the joined drops count both tries: {incident}"
    );
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}

#[test]
fn nxdomain_is_a_dns_error() -> Result<()> {
    const NAME: &str = "missing.shop.svc.cluster.local";
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let coredns = lab.add_pod("coredns")?;
    let _server = dns_server(&coredns.netns, "nxdomain")?;
    let vip = IpAddr::V4(lab.vip(10));
    lab.nft()
        .service("kube-dns", vip, 53, "udp", coredns.ipv4.into(), 5353)?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &["--dns-timeout", "2s"])?;

    let service = SocketAddr::new(vip, 53);
    let result = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &[
            "dns",
            &service.to_string(),
            NAME,
            "--tries",
            "2",
            "--timeout-ms",
            "500",
        ],
        QUICK,
    )?;
    ensure!(
        result["outcome"] == "answered" && result["rcode"] == 3,
        "{result}"
    );
    let local = local_of(&result)?;

    let states = wait_any(
        &agent,
        "the DNS error's incident",
        between(local.ip(), service),
    )?;
    ensure!(
        states.len() == 1,
        "one incident for one question:\n{}",
        show(&states)
    );
    let incident = &states[0];
    assert_eq!(incident["kind"], "INCIDENT_KIND_DNS_ERROR", "{incident}");
    assert_eq!(incident["place"], "FAILURE_PLACE_REFUSED", "{incident}");
    assert_eq!(
        endpoint(&incident["flow"]["destination"]),
        Some(service),
        "{incident}"
    );
    let dns = &incident["dns"];
    assert_eq!(text(dns, &["name"]), NAME, "{incident}");
    assert_eq!(dns["answered"], true, "{incident}");
    assert_eq!(number(dns, &["rcode"]), 3, "{incident}");
    assert_eq!(text(dns, &["rcodeName"]), "NXDOMAIN", "{incident}");
    assert_eq!(number(dns, &["attempts"]), 1, "{incident}");
    ensure!(
        !text(dns, &["latency"]).is_empty(),
        "the answer's latency: {incident}"
    );
    ensure!(
        at(incident, &["drops"])
            .as_array()
            .is_none_or(Vec::is_empty),
        "nothing was dropped: {incident}"
    );
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}

#[test]
fn kubelet_probe_from_the_node_is_attributed_to_the_kubelet() -> Result<()> {
    let mut lab = Lab::new()?;
    let target = lab.add_pod("target")?;
    // An ingress policy enforcer's drop of what the node itself sends to
    // the pod's probe port.
    lab.nft()
        .drop_output("deny_probe", target.ipv4.into(), 8443, "tcp")?;
    let kubelet = lab.kubelet_cgroup()?;
    let agent = Agent::start_in(&lab.node, &[])?;

    let to = SocketAddr::new(target.ipv4.into(), 8443);
    let result = client().run_in(
        &lab.node,
        Some(kubelet.path()),
        &["connect", &to.to_string()],
        CONNECT,
    )?;
    ensure!(result["outcome"] == "timed_out", "{result}");
    let local = local_of(&result)?;
    ensure!(local.ip() == IpAddr::V4(lab.gateway_v4()), "{result}");
    let dropped = lab.nft().counter("deny_probe")?;
    ensure!(dropped >= 1, "nft dropped the probe's SYNs: {dropped}");

    let incident = only_incident(
        &agent,
        "the probe's incident with its drop",
        between(local.ip(), to),
        |incident| incident["place"] == "FAILURE_PLACE_THIS_NODE",
    )?;
    let incident = &incident;
    assert_eq!(
        incident["kind"], "INCIDENT_KIND_CONNECT_TIMEOUT",
        "{incident}"
    );
    let process = &incident["process"];
    assert_eq!(process["kubelet"], true, "{incident}");
    assert_eq!(
        text(process, &["cgroupPath"]),
        kubelet.relative(),
        "{incident}"
    );
    ensure!(process.get("pod").is_none(), "not a pod: {incident}");
    let summary = text(incident, &["summary"]);
    ensure!(
        summary.starts_with("kubelet"),
        "the summary names the kubelet first: {summary:?}"
    );
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}

#[test]
fn killed_mid_connect_is_neither_success_nor_timeout() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(7000)?;
    far.drop_silently(7001)?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &[])?;

    let to = SocketAddr::new(far.pod_ip().into(), 7000);
    let mut hold =
        client().spawn_in(&pod.netns, Some(cgroup.path()), &["hold", &to.to_string()])?;
    let held = local_of(&hold.first_line(QUICK)?)?;
    ensure!(held.ip() == IpAddr::V4(pod.ipv4), "{held}");
    eventually(QUICK, "the held SYN at the remote node", || {
        Ok(far.dropped(7000)? >= 1)
    })?;
    hold.kill()?;
    ensure!(
        pod.netns.syn_sent(to)?.is_empty(),
        "killing the client closed its connect"
    );
    // A marker connect to another silent port, started after the kill,
    // times out after the held one would have: once its incident is out,
    // the agent has seen that span.
    let marker_to = SocketAddr::new(far.pod_ip().into(), 7001);
    let marker = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &marker_to.to_string()],
        CONNECT,
    )?;
    ensure!(marker["outcome"] == "timed_out", "{marker}");
    wait_incidents(
        &agent,
        "the marker's CONNECT_TIMEOUT",
        between(pod.ipv4.into(), marker_to),
        |states| {
            states
                .iter()
                .any(|incident| incident["kind"] == "INCIDENT_KIND_CONNECT_TIMEOUT")
        },
    )?;

    // Whatever source port the agent names, nothing from this pod to the
    // held destination.
    let about_held = incidents(&agent, between(held.ip(), to));
    ensure!(
        about_held.is_empty(),
        "a connect its owner closed ({held}) is no incident:\n{}",
        show(&about_held)
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn more_pending_connects_than_slots_are_counted() -> Result<()> {
    const COUNT: u64 = 64;
    const SLOTS: u64 = 16;
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(7100)?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &["--connect-slots", &SLOTS.to_string()])?;

    let to = SocketAddr::new(far.pod_ip().into(), 7100);
    let _many = {
        let many = client().spawn_in(
            &pod.netns,
            Some(cgroup.path()),
            &["connects", &to.to_string(), "--count", &COUNT.to_string()],
        )?;
        let started = many.first_line(QUICK)?;
        ensure!(started["started"] == COUNT, "{started}");
        many
    };
    // The sockets stay open; the kernel gives up on each after one SYN
    // timeout. Then a refused marker: once its incident is out, the agent
    // has read past every timeout.
    eventually(CONNECT, "every connect to give up", || {
        Ok(pod.netns.syn_sent(to)?.is_empty())
    })?;
    let closed = SocketAddr::new(far.pod_ip().into(), 7101);
    let marker = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &closed.to_string()],
        QUICK,
    )?;
    ensure!(marker["outcome"] == "refused", "{marker}");
    wait_any(
        &agent,
        "the marker's incident",
        between(pod.ipv4.into(), closed),
    )?;

    let followed = latest(&incidents(&agent, between(pod.ipv4.into(), to)));
    let timeouts = followed
        .values()
        .filter(|incident| incident["kind"] == "INCIDENT_KIND_CONNECT_TIMEOUT")
        .count() as u64;
    ensure!(
        followed.len() as u64 == timeouts,
        "every followed connect timed out:\n{}",
        show(&followed.values().cloned().collect::<Vec<_>>())
    );
    ensure!(
        (1..=SLOTS).contains(&timeouts),
        "{timeouts} connects followed with {SLOTS} slots"
    );
    let untracked: Vec<Value> = agent
        .losses()
        .into_iter()
        .filter(|loss| loss["source"] == "LOSS_SOURCE_CONNECTS_UNTRACKED")
        .collect();
    let lost: u64 = untracked
        .iter()
        .map(|loss| number(loss, &["lostEvents"]))
        .sum();
    eprintln!("{timeouts} of {COUNT} connects followed, {lost} counted as not followed");
    // Every one of ours not followed is counted (other sockets of the
    // host may add to it, never subtract).
    ensure!(
        lost >= COUNT - SLOTS && lost >= COUNT - timeouts,
        "{lost} connects counted as not followed ({timeouts} of {COUNT} followed): {untracked:?}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn connect_retried_after_lost_syns() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(7200)?;
    let to = SocketAddr::new(far.pod_ip().into(), 7200);
    // A listener on the remote pod address (the DNS server listens on TCP
    // as well).
    let listener = client().spawn_in(
        &far.netns,
        None,
        &["dns-server", &to.to_string(), "--answer", "silent"],
    )?;
    let listening = listener.first_line(QUICK)?;
    ensure!(listening["tcp"] == true, "listening on TCP: {listening}");
    let cgroup = lab.pod_cgroup(&pod)?;
    let agent = Agent::start_in(&lab.node, &[])?;

    let mut connect = client().spawn_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &to.to_string()],
    )?;
    // The first SYN and one retransmission lost, then the path opens (the
    // counter stays).
    eventually(QUICK, "two SYNs dropped", || Ok(far.dropped(7200)? >= 2))?;
    far.nft().apply("flush chain inet enforcer input")?;
    let result = connect.wait(CONNECT)?;
    ensure!(result["outcome"] == "connected", "{result}");
    let local = local_of(&result)?;
    let dropped = far.dropped(7200)?;

    let states = wait_any(
        &agent,
        "the retried connect's incident",
        between(local.ip(), to),
    )?;
    ensure!(
        states.len() == 1,
        "one incident for one connect:\n{}",
        show(&states)
    );
    let incident = &states[0];
    assert_eq!(
        incident["kind"], "INCIDENT_KIND_CONNECT_RETRIED",
        "{incident}"
    );
    assert_eq!(incident["place"], "FAILURE_PLACE_NOT_FAILED", "{incident}");
    let tcp = &incident["tcp"];
    assert_eq!(tcp["outcome"], "CONNECT_OUTCOME_ESTABLISHED", "{incident}");
    assert_eq!(
        number(tcp, &["synRetransmits"]),
        dropped,
        "{dropped} SYNs lost, each retransmitted: {incident}"
    );
    ensure!(dropped >= 1);
    assert_eq!(number(tcp, &["socketError"]), 0, "{incident}");
    ensure_socket(incident, local)?;
    agent.stop()?;
    Ok(())
}
