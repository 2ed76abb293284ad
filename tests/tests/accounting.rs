//! End-to-end: nothing the kernel selected is lost silently, even with the
//! agent starved of CPU. Every selected drop is in a flow's count, an
//! overflow aggregate or a loss message of the stream, and the totals match
//! the kernel's own statistics exactly.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Agent, Lab,
    lab::{CpuLimit, client::rss_bytes, json_u64, send_udp},
};
use serde_json::Value;

/// A `key=value` number of the agent's final kernel statistics line.
fn stat(log: &str, name: &str) -> Result<u64> {
    let line = log
        .lines()
        .find(|line| line.contains("detached; kernel statistics"))
        .context("no final kernel statistics in the log")?;
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no {name}= in {line}"))
}

/// Dropped packets the stream's loss messages stand for, by source.
fn lost_drops(agent: &Agent, source: &str) -> u64 {
    agent
        .losses()
        .iter()
        .filter(|loss| loss["source"] == source)
        .filter_map(|loss| json_u64(&loss["lostDrops"]))
        .sum()
}

#[test]
fn a_starved_agent_still_accounts_for_every_selected_drop() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    let target = SocketAddr::new(lab.gateway_v4().into(), 6700);
    lab.nft().drop_input("storm", target.ip(), 6700, "udp")?;
    // A small ring and flow table: first sights overflow the ring while the
    // agent is starved, and most flows find no slot.
    let mut agent = Agent::start(&[
        "--flow-slots",
        "256",
        "--ring-bytes",
        "65536",
        "--idle-timeout",
        "60s",
    ])?;
    let limit = CpuLimit::apply(
        agent.pid(),
        10,
        &format!("dropscope-e2e-{}-{}", std::process::id(), lab.id()),
    )?;

    let flows: u16 = 3000;
    let per_flow = 10;
    send_udp(
        &client.netns,
        (20_000..20_000 + flows).collect(),
        target,
        per_flow,
    )?;
    let dropped = lab.nft().counter("storm")?;
    ensure!(
        dropped == u64::from(flows) * per_flow as u64,
        "nft counted {dropped}"
    );
    let rss = rss_bytes(agent.pid())?;
    let log = agent.stop_keeping_events()?;
    drop(limit);

    // The kernel's view: every selected drop the program saw.
    let selected = [
        "new_flows",
        "aggregated",
        "overflow",
        "ring_full",
        "lost_ring_full",
        "not_ip",
        "read_errors",
    ]
    .iter()
    .map(|name| stat(&log, name))
    .sum::<Result<u64>>()?;
    // The stream's view: final counts of every flow and aggregate, plus
    // every loss message (a slow stdout's own losses included).
    let counted: u64 = agent
        .flows(|_| true)
        .values()
        .map(|flow| flow.packets)
        .sum();
    let lost: u64 = [
        "LOSS_SOURCE_KERNEL_RING_FULL",
        "LOSS_SOURCE_KERNEL_UNREADABLE",
        "LOSS_SOURCE_UNDECODABLE",
        "LOSS_SOURCE_SUBSCRIBER",
    ]
    .iter()
    .map(|source| lost_drops(&agent, source))
    .sum();
    assert_eq!(
        counted + lost,
        selected,
        "flows {counted} + losses {lost} must equal the kernel's selected drops"
    );
    ensure!(
        selected >= dropped,
        "the kernel saw {selected} of this lab's {dropped}"
    );
    let (overflow, ring_full) = (stat(&log, "overflow")?, stat(&log, "ring_full")?);
    eprintln!(
        "selected {selected}: flows {counted}, losses {lost}; overflow {overflow}, ring full {ring_full}"
    );
    ensure!(
        overflow > 0,
        "most of the 3,000 flows found no slot among 256"
    );
    let ours: Vec<Value> = agent
        .drops(|drop| lab.owns(drop.src.ip) && drop.dst.port == 6700)
        .into_iter()
        .map(|drop| drop.raw)
        .collect();
    assert!(
        ours.len() < usize::from(flows),
        "a bounded number of events ({}), not one per flow or packet",
        ours.len()
    );
    assert!(rss < 256 * 1024 * 1024, "RSS stayed bounded: {rss} bytes");
    Ok(())
}

#[test]
fn a_selected_drop_of_a_non_ip_packet_is_a_counted_loss() -> Result<()> {
    let mut lab = Lab::new()?;
    let client = lab.add_pod("client")?;
    // ARP from the pod is dropped by netfilter (arp family): a selected
    // reason on a packet that has no IP header.
    client.netns.run_with_input(
        &["nft", "-f", "-"],
        "table arp dropscope_arp {
           chain output { type filter hook output priority 0; counter drop; }
         }",
    )?;
    let agent = Agent::start(&[])?;
    // Nothing answers for .100: the pod asks for it by ARP.
    let silent = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from(lab.gateway_v4()) + 249)),
        9,
    );
    send_udp(&client.netns, vec![0], silent, 1)?;
    agent.wait_for(
        Duration::from_secs(20),
        "an unreadable-drop loss",
        |agent| (lost_drops(agent, "LOSS_SOURCE_KERNEL_UNREADABLE") >= 1).then_some(()),
    )?;
    Ok(())
}
