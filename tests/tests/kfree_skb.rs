//! End-to-end: the `kfree_skb` hook on the real kernel, in network-namespace
//! labs with nftables rules written like kube-proxy and a policy enforcer.
//! Each test makes its own lab and its own agent, and looks only at events
//! with its own addresses.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    os::unix::process::CommandExt as _,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{DropView, TcpOutcome, connect_tcp, send_udp},
};

const WAIT: Duration = Duration::from_secs(20);

fn ours(lab: &Lab) -> impl Fn(&DropView) -> bool + '_ {
    |drop| lab.owns(drop.src.ip) || lab.owns(drop.dst.ip)
}

/// Drops the agent's kernel ring could not take. (Other loss kinds cover the
/// whole host, shared with the parallel tests, so they are not this test's.)
fn ring_losses(agent: &Agent) -> Vec<serde_json::Value> {
    agent
        .losses()
        .into_iter()
        .filter(|loss| loss["source"] == "LOSS_SOURCE_KERNEL_RING_FULL")
        .collect()
}

/// Waits until the flows matching `keep` add up to `expected` packets and
/// returns them.
fn wait_for_total(
    agent: &Agent,
    what: &str,
    expected: u64,
    keep: impl Fn(&DropView) -> bool,
) -> Result<Vec<DropView>> {
    agent.wait_for(WAIT, what, |agent| {
        let flows: Vec<DropView> = agent.flows(&keep).into_values().collect();
        (flows.iter().map(|flow| flow.packets).sum::<u64>() == expected).then_some(flows)
    })
}

#[test]
fn tcp_to_a_service_vip_dnatted_then_dropped_has_both_tuples_and_the_retry_count() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let backend = lab.add_pod("backend")?;
    let vip = IpAddr::V4(lab.vip(50));
    lab.nft()
        .service("web", vip, 80, "tcp", backend.ipv4.into(), 8080)?;
    lab.nft()
        .drop_forward("deny_web", backend.ipv4.into(), 8080, "tcp")?;
    let agent = Agent::start(&[])?;

    let outcome = connect_tcp(
        &client.netns,
        SocketAddr::new(vip, 80),
        Duration::from_millis(3500),
    )?;
    ensure!(
        outcome == TcpOutcome::TimedOut,
        "the connect must time out, got {outcome:?}"
    );
    let dropped = lab.nft().counter("deny_web")?;
    ensure!(
        dropped >= 2,
        "the kernel retried the SYN: nft counted {dropped}"
    );

    let flows = wait_for_total(&agent, "the SYN retries", dropped, |drop| {
        ours(&lab)(drop) && drop.dst.port == 8080
    })?;
    ensure!(
        flows.len() == 1,
        "one event flow for one connection, got {flows:#?}"
    );
    let flow = &flows[0];
    assert_eq!(flow.reason, "NETFILTER_DROP");
    assert_eq!(flow.protocol, "TCP");
    assert!(
        flow.tcp_flags.contains(&"SYN".to_owned()),
        "{:?}",
        flow.tcp_flags
    );
    assert_eq!(flow.src.ip, IpAddr::V4(client.ipv4));
    assert_eq!(
        flow.dst.ip,
        IpAddr::V4(backend.ipv4),
        "the packet tuple is post-DNAT"
    );
    let (original_src, original_dst) = flow.original.context("conntrack original tuple")?;
    assert_eq!(
        (original_dst.ip, original_dst.port),
        (vip, 80),
        "original tuple: the VIP"
    );
    assert_eq!(original_src, flow.src);
    let (reply_src, reply_dst) = flow.reply.context("conntrack reply tuple")?;
    assert_eq!(
        (reply_src.ip, reply_src.port),
        (IpAddr::V4(backend.ipv4), 8080),
        "reply: the backend"
    );
    assert_eq!(reply_dst, flow.src);

    let news = agent.drops(|drop| ours(&lab)(drop) && drop.kind == "new");
    assert_eq!(
        news.len(),
        1,
        "one event on first sight, then count updates: {news:#?}"
    );
    let (first, last) = (
        flow.raw["firstSeen"].as_str(),
        flow.raw["lastSeen"].as_str(),
    );
    // RFC 3339 with nanoseconds, all in one offset: ordered as text.
    assert!(
        first.is_some() && first < last,
        "first {first:?} before last {last:?}"
    );
    assert!(
        ring_losses(&agent).is_empty(),
        "losses: {:?}",
        agent.losses()
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn udp_dns_to_vip_53_dnatted_to_5353_then_dropped_has_both_tuples() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let dns = lab.add_pod("coredns")?;
    let vip = IpAddr::V4(lab.vip(10));
    lab.nft()
        .service("kube-dns", vip, 53, "udp", dns.ipv4.into(), 5353)?;
    lab.nft()
        .drop_forward("deny_dns", dns.ipv4.into(), 5353, "udp")?;
    let agent = Agent::start(&[])?;

    send_udp(&client.netns, vec![0], SocketAddr::new(vip, 53), 3)?;
    let dropped = lab.nft().counter("deny_dns")?;
    assert_eq!(dropped, 3);
    let flows = wait_for_total(&agent, "the DNS drops", dropped, |drop| {
        ours(&lab)(drop) && drop.protocol == "UDP"
    })?;
    assert_eq!(flows.len(), 1, "one flow for one socket: {flows:#?}");
    let flow = &flows[0];
    assert_eq!(flow.reason, "NETFILTER_DROP");
    assert_eq!(
        (flow.dst.ip, flow.dst.port),
        (IpAddr::V4(dns.ipv4), 5353),
        "dropped after DNAT"
    );
    let (_, original_dst) = flow.original.context("conntrack original")?;
    assert_eq!(
        (original_dst.ip, original_dst.port),
        (vip, 53),
        "sent to the Service port"
    );
    let (reply_src, _) = flow.reply.context("conntrack reply")?;
    assert_eq!(reply_src.port, 5353);
    agent.stop()?;
    Ok(())
}

#[test]
fn an_ipv6_drop_is_reported() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let node_v6 = IpAddr::V6(lab.gateway_v6());
    lab.nft().drop_input("deny_v6", node_v6, 7070, "tcp")?;
    let agent = Agent::start(&[])?;

    let outcome = connect_tcp(
        &client.netns,
        SocketAddr::new(node_v6, 7070),
        Duration::from_millis(1500),
    )?;
    assert_eq!(outcome, TcpOutcome::TimedOut);
    let dropped = lab.nft().counter("deny_v6")?;
    ensure!(dropped >= 1, "nft counted no drop");
    let flows = wait_for_total(&agent, "the IPv6 drops", dropped, |drop| {
        ours(&lab)(drop) && drop.dst.port == 7070
    })?;
    let flow = &flows[0];
    assert_eq!(flow.reason, "NETFILTER_DROP");
    assert_eq!(flow.src.ip, IpAddr::V6(client.ipv6));
    assert_eq!(flow.dst.ip, node_v6);
    assert!(flow.tcp_flags.contains(&"SYN".to_owned()));
    agent.stop()?;
    Ok(())
}

/// A classic BPF classifier in direct-action mode (the kernel runs it as
/// eBPF): UDP to `port` returns TC_ACT_SHOT (2), the rest TC_ACT_UNSPEC.
/// Offsets count from the Ethernet header.
fn tc_drop_udp(port: u16) -> String {
    format!("7,48 0 0 23,21 0 4 17,177 0 0 14,72 0 0 16,21 0 1 {port},6 0 0 2,6 0 0 4294967295")
}

#[test]
fn a_tc_ingress_drop_is_reported_with_its_reason() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let link = lab.pod_link(&client)?;
    lab.node
        .run(&["tc", "qdisc", "add", "dev", &link, "clsact"])?;
    lab.node.run(&[
        "tc",
        "filter",
        "add",
        "dev",
        &link,
        "ingress",
        "protocol",
        "ip",
        "bpf",
        "bytecode",
        &tc_drop_udp(9999),
        "da",
    ])?;
    let agent = Agent::start(&[])?;

    send_udp(
        &client.netns,
        vec![0],
        SocketAddr::new(lab.gateway_v4().into(), 9999),
        5,
    )?;
    let flows = wait_for_total(&agent, "the tc drops", 5, |drop| {
        ours(&lab)(drop) && drop.dst.port == 9999
    })?;
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].reason, "TC_INGRESS");
    agent.stop()?;
    Ok(())
}

#[test]
fn a_tc_egress_drop_is_reported_with_its_reason() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    // On the node's end of the server's veth, towards the server.
    let link = lab.pod_link(&server)?;
    lab.node
        .run(&["tc", "qdisc", "add", "dev", &link, "clsact"])?;
    lab.node.run(&[
        "tc",
        "filter",
        "add",
        "dev",
        &link,
        "egress",
        "protocol",
        "ip",
        "bpf",
        "bytecode",
        &tc_drop_udp(9998),
        "da",
    ])?;
    let agent = Agent::start(&[])?;

    send_udp(
        &client.netns,
        vec![0],
        SocketAddr::new(server.ipv4.into(), 9998),
        4,
    )?;
    let flows = wait_for_total(&agent, "the tc egress drops", 4, |drop| {
        ours(&lab)(drop) && drop.dst.port == 9998
    })?;
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].reason, "TC_EGRESS");
    assert_eq!(flows[0].dst.ip, IpAddr::V4(server.ipv4));
    agent.stop()?;
    Ok(())
}

#[test]
fn allowed_traffic_produces_no_event() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let backend = lab.add_pod("backend")?;
    let vip = IpAddr::V4(lab.vip(80));
    lab.nft()
        .service("web", vip, 80, "tcp", backend.ipv4.into(), 8080)?;
    // A sentinel drop marks "everything before it has been reported".
    lab.nft()
        .drop_input("sentinel", lab.gateway_v4().into(), 9000, "udp")?;
    let agent = Agent::start(&[])?;

    let backend_address = SocketAddr::new(backend.ipv4.into(), 8080);
    let server = backend
        .netns
        .enter(move || TcpListener::bind(backend_address))??;
    let accept = std::thread::spawn(move || server.accept().map(|_| ()));
    let outcome = connect_tcp(
        &client.netns,
        SocketAddr::new(vip, 80),
        Duration::from_secs(5),
    )?;
    assert_eq!(outcome, TcpOutcome::Connected);
    accept
        .join()
        .map_err(|_| anyhow::anyhow!("accept thread panicked"))??;

    send_udp(
        &client.netns,
        vec![0],
        SocketAddr::new(lab.gateway_v4().into(), 9000),
        1,
    )?;
    agent.wait_for(WAIT, "the sentinel drop", |agent| {
        (!agent
            .drops(|drop| ours(&lab)(drop) && drop.dst.port == 9000)
            .is_empty())
        .then_some(())
    })?;
    let others = agent.drops(|drop| ours(&lab)(drop) && drop.dst.port != 9000);
    assert!(
        others.is_empty(),
        "allowed traffic produced drop events: {others:#?}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn a_burst_of_10000_drops_across_1000_flows_reconciles_exactly() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let dns = lab.add_pod("dns")?;
    let vip = IpAddr::V4(lab.vip(53));
    lab.nft()
        .service("dns", vip, 53, "udp", dns.ipv4.into(), 5353)?;
    lab.nft()
        .drop_forward("burst", dns.ipv4.into(), 5353, "udp")?;
    let agent = Agent::start(&["--idle-timeout", "60s"])?;

    let ports: Vec<u16> = (30_000..31_000).collect();
    send_udp(&client.netns, ports, SocketAddr::new(vip, 53), 10)?;
    let dropped = lab.nft().counter("burst")?;
    assert_eq!(dropped, 10_000, "nft counted every datagram");

    let flows = wait_for_total(&agent, "10,000 drops", dropped, |drop| {
        ours(&lab)(drop) && drop.reason == "NETFILTER_DROP" && drop.dst.port == 5353
    })?;
    assert_eq!(flows.len(), 1000, "one flow per source port");
    assert!(
        flows.iter().all(|flow| flow.packets == 10),
        "10 drops per flow"
    );
    let news = agent.drops(|drop| ours(&lab)(drop) && drop.kind == "new");
    assert_eq!(
        news.len(),
        1000,
        "one event per flow on first sight, not per packet"
    );
    assert!(
        agent.losses().is_empty(),
        "losses reported: {:?}",
        agent.losses()
    );
    let log = agent.stop()?;
    assert!(
        log.contains("lost_ring_full=0"),
        "kernel statistics report no loss:\n{log}"
    );
    Ok(())
}

#[test]
fn the_classic_tracepoint_fallback_reports_the_same_drops() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    lab.nft()
        .drop_input("deny", lab.gateway_v4().into(), 6000, "udp")?;
    let agent = Agent::start(&["--hook", "tracepoint"])?;
    ensure!(
        agent.log().contains("hook=Tracepoint"),
        "attached the classic tracepoint:\n{}",
        agent.log()
    );

    send_udp(
        &client.netns,
        vec![0],
        SocketAddr::new(lab.gateway_v4().into(), 6000),
        4,
    )?;
    let flows = wait_for_total(&agent, "the drops", lab.nft().counter("deny")?, |drop| {
        ours(&lab)(drop) && drop.dst.port == 6000
    })?;
    assert_eq!(flows[0].packets, 4);
    assert_eq!(flows[0].reason, "NETFILTER_DROP");
    agent.stop()?;
    Ok(())
}

#[test]
fn reasons_left_out_of_the_filter_never_reach_user_space() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    lab.nft()
        .drop_input("filtered", lab.gateway_v4().into(), 6100, "udp")?;
    let agent = Agent::start(&["--drop-reasons", "default,-NETFILTER_DROP"])?;

    send_udp(
        &client.netns,
        vec![0],
        SocketAddr::new(lab.gateway_v4().into(), 6100),
        3,
    )?;
    assert_eq!(lab.nft().counter("filtered")?, 3);
    // Nothing listens on 6200: the node's UDP stack drops with NO_SOCKET.
    send_udp(
        &client.netns,
        vec![0],
        SocketAddr::new(lab.gateway_v4().into(), 6200),
        1,
    )?;
    let sentinel = agent.wait_for(WAIT, "the NO_SOCKET drop", |agent| {
        agent
            .drops(|drop| ours(&lab)(drop) && drop.dst.port == 6200)
            .into_iter()
            .next()
    })?;
    assert_eq!(sentinel.reason, "NO_SOCKET");
    let filtered = agent.drops(|drop| ours(&lab)(drop) && drop.dst.port == 6100);
    assert!(
        filtered.is_empty(),
        "NETFILTER_DROP was filtered out: {filtered:#?}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn stopping_the_agent_detaches_its_program() -> Result<()> {
    let agent = Agent::start(&[])?;
    let id: u32 = agent
        .log()
        .split_whitespace()
        .find_map(|word| word.strip_prefix("program_id="))
        .and_then(|id| id.parse().ok())
        .context("the agent logs its program id")?;
    assert!(
        dropscope_e2e::lab::program_exists(id)?,
        "program {id} is loaded while running"
    );
    agent.stop()?;
    // The kernel may free a detached program after a grace period (its
    // link is released from a work queue under load): give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while dropscope_e2e::lab::program_exists(id)? {
        assert!(
            std::time::Instant::now() < deadline,
            "program {id} is still loaded 5 s after the agent stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn without_privilege_the_agent_says_what_it_needs() -> Result<()> {
    // A copy the unprivileged user can reach: the checkout may sit under a
    // directory only root may enter.
    let original = std::env::var("DROPSCOPE_BIN").context("DROPSCOPE_BIN")?;
    let dir = std::env::temp_dir().join(format!("dropscope-unprivileged-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let binary = dir.join("dropscope");
    std::fs::copy(&original, &binary)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let ran = std::process::Command::new(&binary)
        .args(["agent", "--duration", "1s"])
        .env("RUST_LOG", "error")
        .uid(65534)
        .gid(65534)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = ran?;
    assert!(
        !output.status.success(),
        "the agent must fail without privilege"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("run it as root"), "{stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    Ok(())
}

#[test]
fn stopping_right_after_a_burst_still_reports_every_drop() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    lab.nft()
        .drop_input("burst", lab.gateway_v4().into(), 6300, "udp")?;
    // Slow sampling: no update would come before the stop.
    let mut agent = Agent::start(&["--sample-interval", "5s", "--idle-timeout", "60s"])?;

    let ports: Vec<u16> = (40_000..40_200).collect();
    send_udp(
        &client.netns,
        ports,
        SocketAddr::new(lab.gateway_v4().into(), 6300),
        10,
    )?;
    let dropped = lab.nft().counter("burst")?;
    assert_eq!(dropped, 2000);
    agent.stop_keeping_events()?;

    let flows = agent_flows_after_stop(&agent, &lab);
    assert_eq!(flows.len(), 200);
    assert_eq!(
        flows.iter().map(|flow| flow.packets).sum::<u64>(),
        dropped,
        "every drop is counted"
    );
    assert!(
        flows.iter().all(|flow| flow.kind == "end"),
        "every flow ends at exit"
    );
    Ok(())
}

fn agent_flows_after_stop(agent: &Agent, lab: &Lab) -> Vec<DropView> {
    agent
        .flows(|drop| ours(lab)(drop) && drop.dst.port == 6300)
        .into_values()
        .collect()
}

#[test]
fn flows_beyond_the_slot_table_stay_aggregated_and_exactly_counted() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    lab.nft()
        .drop_input("storm", lab.gateway_v4().into(), 6600, "udp")?;
    // Four slots for the whole host: this lab's 300 flows overflow.
    let mut agent = Agent::start(&["--flow-slots", "4", "--idle-timeout", "60s"])?;

    let ports: Vec<u16> = (43_000..43_300).collect();
    send_udp(
        &client.netns,
        ports,
        SocketAddr::new(lab.gateway_v4().into(), 6600),
        3,
    )?;
    let dropped = lab.nft().counter("storm")?;
    assert_eq!(dropped, 900);
    agent.stop_keeping_events()?;

    let ours = |drop: &DropView| lab.owns(drop.src.ip) && drop.dst.port == 6600;
    let flows: Vec<DropView> = agent.flows(ours).into_values().collect();
    assert_eq!(
        flows.iter().map(|flow| flow.packets).sum::<u64>(),
        dropped,
        "every drop is in a flow or an overflow aggregate: {flows:#?}"
    );
    let events = agent.drops(ours).len();
    assert!(
        flows.len() <= 5 && events <= 20,
        "a bounded number of flows ({}) and events ({events}), not one per packet",
        flows.len()
    );
    let folded: u64 = flows
        .iter()
        .filter_map(|flow| dropscope_e2e::lab::json_u64(&flow.raw["overflow"]["foldedPackets"]))
        .sum();
    assert!(
        folded > 0,
        "the aggregate says flows were folded: {flows:#?}"
    );
    Ok(())
}

#[test]
fn a_flow_that_comes_back_after_it_ended_is_counted_again() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 6650);
    lab.nft().drop_input("comeback", target.ip(), 6650, "udp")?;
    // Flows end quickly: idle 300 ms, final counts 100 ms later.
    let mut agent = Agent::start(&["--sample-interval", "100ms", "--idle-timeout", "300ms"])?;
    let flow = |drop: &DropView| lab.owns(drop.src.ip) && drop.dst.port == 6650;
    // One CPU for the sender, so both bursts are counted on the CPU that
    // remembers the flow as its most recent one: the second burst must not
    // go into the slot the first one gave back.
    let _pinned = PinnedToOneCpu::new()?;

    send_udp(&client.netns, vec![44_000], target, 5)?;
    let first = agent.wait_for(WAIT, "the first burst's end", |agent| {
        agent
            .drops(flow)
            .into_iter()
            .find(|drop| drop.kind == "end")
    })?;
    assert_eq!(first.packets, 5, "{:#?}", first.raw);

    send_udp(&client.netns, vec![44_000], target, 7)?;
    assert_eq!(lab.nft().counter("comeback")?, 12);
    agent.wait_for(WAIT, "the second burst's end", |agent| {
        let ended = agent
            .drops(flow)
            .into_iter()
            .filter(|drop| drop.kind == "end");
        (ended.count() == 2).then_some(())
    })?;
    agent.stop_keeping_events()?;

    let flows = agent.flows(flow);
    assert_eq!(flows.len(), 2, "two lives of one flow: {flows:#?}");
    let second = flows
        .values()
        .find(|drop| drop.flow_id != first.flow_id)
        .context("the second life")?;
    assert_eq!(second.packets, 7, "{:#?}", second.raw);
    Ok(())
}

/// Pins the calling thread (and the threads it starts) to its current CPU
/// until dropped.
struct PinnedToOneCpu {
    before: libc::cpu_set_t,
}

impl PinnedToOneCpu {
    fn new() -> Result<Self> {
        // SAFETY: cpu_set_t is plain data; the calls get valid pointers
        // and the set's size.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            ensure!(
                libc::sched_getaffinity(0, size, &mut before) == 0,
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            );
            let cpu = libc::sched_getcpu();
            ensure!(
                cpu >= 0,
                "sched_getcpu: {}",
                std::io::Error::last_os_error()
            );
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            ensure!(
                libc::sched_setaffinity(0, size, &one) == 0,
                "sched_setaffinity: {}",
                std::io::Error::last_os_error()
            );
            Ok(Self { before })
        }
    }
}

impl Drop for PinnedToOneCpu {
    fn drop(&mut self) {
        // SAFETY: restores the mask read in `new`.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before);
        }
    }
}
