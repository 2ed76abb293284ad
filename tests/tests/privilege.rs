//! End-to-end: the agent with only what `deploy/dropscope.yaml` grants it
//! (`lab::privilege`): uid 0 with exactly the DaemonSet's capabilities,
//! no_new_privs, a 64 KiB memlock limit, a read-only root filesystem,
//! read-only `/sys`, tracefs and cgroup root, one writable socket
//! directory. With all of them every program attaches and drops,
//! incidents and DNS errors are reported; with one left out, the agent
//! exits naming it, or runs and says what it cannot do.
//!
//! Each capability the DaemonSet adds has its test here
//! (`every_capability_of_the_daemonset_is_tested_here`).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{
        DropView, LabClient, json_u64,
        privilege::{
            ConfinedAgent, Confinement, daemonset_capabilities, kallsyms_addresses_visible,
        },
        send_udp,
    },
};
use serde_json::Value;

/// For the agent's events.
const WAIT: Duration = Duration::from_secs(20);
/// Longer than one SYN timeout with two retries (~7 s).
const CONNECT: Duration = Duration::from_secs(20);
/// For what answers at once.
const QUICK: Duration = Duration::from_secs(5);

/// What the test of each capability checks, by the DaemonSet's name for it.
const TESTED: [(&str, &str); 4] = [
    ("BPF", "without_bpf_the_agent_exits_naming_it"),
    ("PERFMON", "without_perfmon_the_agent_exits_naming_it"),
    (
        "NET_ADMIN",
        "without_net_admin_the_agent_exits_naming_it + without_net_admin_the_hooks_that_need_it_can_be_turned_off",
    ),
    (
        "SYSLOG",
        "without_syslog_drop_locations_stay_numeric_and_the_agent_says_why",
    ),
];

fn client() -> LabClient {
    LabClient::new(env!("CARGO_BIN_EXE_lab-client"))
}

/// Every incident line for which `keep` holds, in arrival order.
fn incidents(agent: &Agent, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|event| event["kind"] == "EVENT_KIND_INCIDENT")
        .filter_map(|event| event.get("incident").cloned())
        .filter(|incident| keep(incident))
        .collect()
}

/// An `Endpoint` (`{"ip", "port"}`) as an address.
fn endpoint(value: &Value) -> Option<SocketAddr> {
    let ip: IpAddr = value.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(value.get("port").and_then(Value::as_u64).unwrap_or(0)).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Incidents from address `from` to `to`.
fn between(from: IpAddr, to: SocketAddr) -> impl Fn(&Value) -> bool {
    move |incident| {
        endpoint(&incident["flow"]["source"]).map(|source| source.ip()) == Some(from)
            && endpoint(&incident["flow"]["destination"]) == Some(to)
    }
}

/// The `local` address a `lab-client` line names.
fn local_of(line: &Value) -> Result<SocketAddr> {
    let local = line["local"].as_str().unwrap_or_default();
    local
        .parse()
        .with_context(|| format!("local address {local:?} in {line}"))
}

/// The one log line containing `marker`.
fn log_line(log: &str, marker: &str) -> Result<String> {
    log.lines()
        .find(|line| line.contains(marker))
        .map(str::to_owned)
        .with_context(|| format!("no {marker:?} in the agent's log:\n{log}"))
}

/// The symbol of a drop's kernel location ("" when numeric).
fn symbol(drop: &DropView) -> &str {
    drop.raw["location"]["symbol"].as_str().unwrap_or_default()
}

/// Starting the agent without `capability` fails, and the error names it.
fn exits_naming(capability: &str) -> Result<()> {
    let lab = Lab::new()?;
    let confinement = Confinement::daemonset()?.without(capability)?;
    let error = match ConfinedAgent::start_in(&lab.node, &confinement, &[]) {
        Ok(agent) => anyhow::bail!(
            "the agent started without CAP_{capability}:\n{}",
            agent.log()
        ),
        Err(error) => format!("{error:#}"),
    };
    ensure!(
        error.contains(&format!("dropscope lacks CAP_{capability} (")),
        "the agent's error names CAP_{capability}:\n{error}"
    );
    Ok(())
}

#[test]
fn every_capability_of_the_daemonset_is_tested_here() -> Result<()> {
    let mut added = daemonset_capabilities()?;
    added.sort();
    let mut tested: Vec<String> = TESTED.iter().map(|(name, _)| (*name).to_owned()).collect();
    tested.sort();
    ensure!(
        added == tested,
        "deploy/dropscope.yaml adds {added:?}; this file tests {tested:?}: a capability granted needs a test of what breaks without it"
    );
    Ok(())
}

#[test]
fn the_daemonsets_privileges_are_enough_for_every_hook() -> Result<()> {
    const NAME: &str = "missing.shop.svc.cluster.local";
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    let coredns = lab.add_pod("coredns")?;
    lab.nft()
        .drop_forward("deny_server", server.ipv4.into(), 8443, "tcp")?;
    let vip = IpAddr::V4(lab.vip(10));
    lab.nft()
        .service("kube-dns", vip, 53, "udp", coredns.ipv4.into(), 5353)?;
    let mut dns_server = client().spawn_in(
        &coredns.netns,
        None,
        &["dns-server", "0.0.0.0:5353", "--answer", "nxdomain"],
    )?;
    let listening = dns_server.first_line(QUICK)?;
    ensure!(
        listening["listening"] == "0.0.0.0:5353",
        "dns-server: {listening}"
    );
    let cgroup = lab.pod_cgroup(&pod)?;
    let confinement = Confinement::daemonset()?;
    let mut agent = ConfinedAgent::start_in(&lab.node, &confinement, &["--dns-timeout", "2s"])?;
    agent.check(&confinement)?;

    // Every program attached, on every interface of the node.
    let log = agent.log();
    log_line(&log, "attached kfree_skb")?;
    let sockets = log_line(&log, "attached socket hooks")?;
    for program in [
        "\"connect4\"",
        "\"connect6\"",
        "\"inet_sock_set_state\"",
        "\"tcp_retransmit_skb\"",
        "\"tcp_retransmit_synack\"",
        "\"tc\"",
    ] {
        ensure!(sockets.contains(program), "{program} attached: {sockets}");
    }
    let running = log_line(&log, "dropscope agent running")?;
    for watched in [&pod, &server, &coredns] {
        let link = lab.pod_link(watched)?;
        ensure!(
            running.contains(&format!("\"{link}\"")),
            "tc watches {link}: {running}"
        );
    }
    ensure!(
        !log.contains("cannot watch this interface") && !log.contains(" ERROR "),
        "nothing failed to attach:\n{log}"
    );

    // A DNS error: seen only by the tc programs.
    let service = SocketAddr::new(vip, 53);
    let result = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &[
            "dns",
            &service.to_string(),
            NAME,
            "--tries",
            "1",
            "--timeout-ms",
            "500",
        ],
        QUICK,
    )?;
    ensure!(result["outcome"] == "answered", "{result}");
    let asker = local_of(&result)?;
    let dns = agent.wait_for(WAIT, "the DNS error's incident", |agent| {
        incidents(agent, between(asker.ip(), service))
            .into_iter()
            .find(|incident| incident["kind"] == "INCIDENT_KIND_DNS_ERROR")
    })?;
    ensure!(dns["dns"]["rcodeName"] == "NXDOMAIN", "{dns}");

    // A connect dropped on the node: the kfree_skb hook reports the drop,
    // the socket tracepoints decide the incident, the connect hooks give
    // the destination asked for, the read-only cgroup root names the pod.
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
    ensure!(dropped >= 1, "nft dropped the SYNs: {dropped}");
    let drop = agent.wait_for(WAIT, "the connect's drop", |agent| {
        agent
            .drops(|drop| {
                (drop.src.ip, drop.src.port) == (local.ip(), local.port())
                    && (drop.dst.ip, drop.dst.port) == (to.ip(), to.port())
            })
            .into_iter()
            .next()
    })?;
    ensure!(drop.reason == "NETFILTER_DROP", "{:?}", drop.raw);
    let named = kallsyms_addresses_visible(true)?;
    ensure!(
        !symbol(&drop).is_empty() == named,
        "with CAP_SYSLOG the location is named ({named} on this host): {}",
        drop.raw
    );
    let incident = agent.wait_for(WAIT, "the connect's incident with its drop", |agent| {
        incidents(agent, between(local.ip(), to))
            .into_iter()
            .find(|incident| incident["place"] == "FAILURE_PLACE_THIS_NODE")
    })?;
    ensure!(
        incident["kind"] == "INCIDENT_KIND_CONNECT_TIMEOUT",
        "{incident}"
    );
    ensure!(
        endpoint(&incident["asked"]) == Some(to),
        "the connect hooks saw the destination asked for: {incident}"
    );
    ensure!(
        incident["process"]["pod"]["uid"].as_str() == Some(cgroup.uid()),
        "the cgroup names the pod: {incident}"
    );
    ensure!(
        json_u64(&incident["drops"][0]["flowId"]) == Some(drop.flow_id),
        "the incident joins the drop: {incident}"
    );

    // It wrote nothing but its socket, and stops cleanly.
    let written: Vec<_> = std::fs::read_dir(agent.socket_dir())?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name()))
        .collect();
    ensure!(written == ["dropscope.sock"], "{written:?}");
    agent.stop_keeping_events()?;
    dns_server.kill()?;
    Ok(())
}

#[test]
fn without_bpf_the_agent_exits_naming_it() -> Result<()> {
    exits_naming("BPF")
}

#[test]
fn without_perfmon_the_agent_exits_naming_it() -> Result<()> {
    exits_naming("PERFMON")
}

#[test]
fn without_net_admin_the_agent_exits_naming_it() -> Result<()> {
    exits_naming("NET_ADMIN")
}

#[test]
fn without_net_admin_the_hooks_that_need_it_can_be_turned_off() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    lab.nft()
        .drop_forward("deny_udp", server.ipv4.into(), 9999, "udp")?;
    let confinement = Confinement::daemonset()?.without("NET_ADMIN")?;
    let mut agent =
        ConfinedAgent::start_in(&lab.node, &confinement, &["--no-tc", "--no-cgroup-hooks"])?;
    agent.check(&confinement)?;
    let sockets = log_line(&agent.log(), "attached socket hooks")?;
    ensure!(
        !sockets.contains("connect4") && !sockets.contains("\"tc\""),
        "{sockets}"
    );
    let to = SocketAddr::new(server.ipv4.into(), 9999);
    send_udp(&pod.netns, vec![0], to, 3)?;
    let dropped = lab.nft().counter("deny_udp")?;
    ensure!(dropped == 3, "nft dropped {dropped}");
    agent.wait_for(WAIT, "the datagrams' drop", |agent| {
        agent
            .drops(|drop| drop.src.ip == IpAddr::V4(pod.ipv4) && drop.dst.port == 9999)
            .into_iter()
            .find(|drop| drop.packets == dropped)
    })?;
    agent.stop_keeping_events()?;
    Ok(())
}

#[test]
fn without_syslog_drop_locations_stay_numeric_and_the_agent_says_why() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    lab.nft()
        .drop_forward("deny_udp", server.ipv4.into(), 9999, "udp")?;
    let confinement = Confinement::daemonset()?.without("SYSLOG")?;
    let mut agent = ConfinedAgent::start_in(&lab.node, &confinement, &[])?;
    agent.check(&confinement)?;
    let warning = log_line(&agent.log(), "running without an optional capability")?;
    ensure!(warning.contains("CAP_SYSLOG"), "{warning}");
    let to = SocketAddr::new(server.ipv4.into(), 9999);
    send_udp(&pod.netns, vec![0], to, 1)?;
    let drop = agent.wait_for(WAIT, "the datagram's drop", |agent| {
        agent
            .drops(|drop| drop.src.ip == IpAddr::V4(pod.ipv4) && drop.dst.port == 9999)
            .into_iter()
            .next()
    })?;
    ensure!(
        drop.raw["location"]["address"] != Value::Null,
        "the address is always there: {}",
        drop.raw
    );
    let named = kallsyms_addresses_visible(false)?;
    ensure!(
        !symbol(&drop).is_empty() == named,
        "without CAP_SYSLOG the location is named only if kptr_restrict and perf_event_paranoid allow ({named} on this host): {}",
        drop.raw
    );
    agent.stop_keeping_events()?;
    Ok(())
}
