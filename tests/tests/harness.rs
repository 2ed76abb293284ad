//! The lab harness on its own, without the agent: kubelet-shaped cgroups,
//! `lab-client` processes placed in a namespace and a cgroup, remote nodes
//! that drop silently, a DNS server behind a Service VIP, and the cleanup.
//! The end-to-end tests of silent timeouts stand on these pieces; here each
//! is checked against the kernel's own view (/proc, nft counters, `ss`).
//!
//! Waits run as child processes side by side, so a test costs about one
//! SYN timeout (1 + 2 + 4 s with `tcp_syn_retries=2`).

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use dropscope_e2e::{
    Lab,
    lab::{LabClient, LabProcess, cgroup_v2_root},
};
use serde_json::Value;

/// Longer than one SYN timeout with two retries (7 s).
const WAIT: Duration = Duration::from_secs(20);
/// For things that answer at once.
const QUICK: Duration = Duration::from_secs(5);

fn client() -> LabClient {
    LabClient::new(env!("CARGO_BIN_EXE_lab-client"))
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

fn local_ip(value: &Value) -> Result<IpAddr> {
    let local = text(value, "local");
    let address: SocketAddr = local
        .parse()
        .with_context(|| format!("local address {local:?} in {value}"))?;
    Ok(address.ip())
}

/// The outcome of a `connect`, checked: `expected`, from `from`.
fn expect_connect(result: &Value, expected: &str, from: IpAddr) -> Result<()> {
    ensure!(
        result["outcome"] == expected,
        "expected {expected}, got {result}"
    );
    ensure!(
        local_ip(result)? == from,
        "the connect must leave from {from}: {result}"
    );
    Ok(())
}

/// Polls `check` until it holds, failing after [`QUICK`].
fn eventually(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = std::time::Instant::now();
    while !check()? {
        ensure!(started.elapsed() < QUICK, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The network namespaces whose names start with `prefix`.
fn namespaces(prefix: &str) -> Result<Vec<String>> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// A lab's cgroup slice.
fn slice_of(lab_id: u32) -> Result<PathBuf> {
    Ok(cgroup_v2_root()?.join(format!("ds{lab_id}.slice")))
}

#[test]
fn a_pod_cgroup_client_times_out_on_a_remote_node_that_drops_silently() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(8080)?;
    let cgroup = lab.pod_cgroup(&pod)?;

    // The cgroup: kubelet-shaped, stable, with the directory's inode as id.
    let uid = cgroup.uid();
    ensure!(
        uid.len() == 36 && uid.split('-').count() == 5,
        "UUID-shaped: {uid}"
    );
    ensure!(
        cgroup.container_id().len() == 64,
        "{}",
        cgroup.container_id()
    );
    let expected = format!(
        "/ds{}.slice/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
        lab.id(),
        uid.replace('-', "_"),
        cgroup.container_id()
    );
    assert_eq!(cgroup.relative(), expected);
    assert_eq!(
        cgroup.path(),
        cgroup_v2_root()?.join(expected.trim_start_matches('/'))
    );
    assert_eq!(cgroup.id(), std::fs::metadata(cgroup.path())?.ino());
    let again = lab.pod_cgroup(&pod)?;
    assert_eq!(
        (again.uid(), again.container_id(), again.id()),
        (uid, cgroup.container_id(), cgroup.id())
    );
    ensure!(
        lab.owns(far.pod_ip().into()) && lab.owns(far.address().into()),
        "the remote node's addresses are the lab's"
    );
    ensure!(far.owns(far.pod_ip().into()) && !far.owns(pod.ipv4.into()));

    let started = std::time::Instant::now();
    let dropped = SocketAddr::new(far.pod_ip().into(), 8080);
    let mut silent = client().spawn_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &dropped.to_string()],
    )?;
    assert_eq!(silent.cgroup()?, cgroup.relative());
    // Routed both ways: a closed port on the remote node answers with a RST.
    let closed = SocketAddr::new(far.pod_ip().into(), 8081);
    let refused = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &closed.to_string()],
        QUICK,
    )?;
    expect_connect(&refused, "refused", pod.ipv4.into())?;

    let result = silent.wait(WAIT)?;
    expect_connect(&result, "timed_out", pod.ipv4.into())?;
    assert_eq!(result["errno"], libc::ETIMEDOUT, "{result}");
    assert_eq!(
        result["deadline"], false,
        "the kernel gave up, not the client: {result}"
    );
    let elapsed = result["elapsed_ms"].as_u64().unwrap_or_default();
    ensure!(
        (6500..10_000).contains(&elapsed),
        "1 + 2 + 4 s with tcp_syn_retries=2, took {elapsed} ms"
    );
    // At least the SYN and two retries; kernels with
    // tcp_syn_linear_timeouts (6.x: the first retries a second apart) send
    // more within the same 7 s. The counter is the ground truth.
    let syns = far.dropped(8080)?;
    ensure!(syns >= 3, "the SYN and its retries were dropped: {syns}");
    eprintln!(
        "silent connect: {elapsed} ms; test: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn a_connect_to_a_closed_port_of_a_lab_pod_is_refused() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let server = lab.add_pod("server")?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let to = SocketAddr::new(server.ipv4.into(), 7);
    let result = client().run_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connect", &to.to_string()],
        QUICK,
    )?;
    expect_connect(&result, "refused", pod.ipv4.into())?;
    assert_eq!(result["errno"], libc::ECONNREFUSED, "{result}");
    // The same over IPv6, without a cgroup.
    let to6 = SocketAddr::new(server.ipv6.into(), 7);
    let result = client().run_in(&pod.netns, None, &["connect", &to6.to_string()], QUICK)?;
    expect_connect(&result, "refused", pod.ipv6.into())?;
    Ok(())
}

#[test]
fn a_dns_server_pod_behind_a_service_vip_answers_nxdomain() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let dns = lab.add_pod("coredns")?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let serve = |port: u16, answer: &str| -> Result<LabProcess> {
        let server = client().spawn_in(
            &dns.netns,
            None,
            &["dns-server", &format!("0.0.0.0:{port}"), "--answer", answer],
        )?;
        let listening = server.first_line(QUICK)?;
        assert_eq!(listening["listening"], format!("0.0.0.0:{port}"));
        Ok(server)
    };
    let _nxdomain = serve(5353, "nxdomain")?;
    let _silent = serve(5354, "silent")?;
    let _address = serve(5355, "a:10.1.2.3")?;
    let vip = IpAddr::V4(lab.vip(53));
    let silent_vip = IpAddr::V4(lab.vip(54));
    lab.nft()
        .service("kube-dns", vip, 53, "udp", dns.ipv4.into(), 5353)?;
    lab.nft()
        .service("silent-dns", silent_vip, 53, "udp", dns.ipv4.into(), 5354)?;

    // All three at once: the silent one takes its two tries.
    let query = |server: String, extra: &[&str]| -> Result<LabProcess> {
        let mut args = vec!["dns", server.as_str(), "missing.example.com"];
        args.extend_from_slice(extra);
        client().spawn_in(&pod.netns, Some(cgroup.path()), &args)
    };
    let mut nxdomain = query(
        format!("{vip}:53"),
        &["--tries", "2", "--timeout-ms", "2000"],
    )?;
    let mut silent = query(
        format!("{silent_vip}:53"),
        &["--tries", "2", "--timeout-ms", "700"],
    )?;
    let mut address = query(format!("{}:5355", dns.ipv4), &["--tcp", "--tries", "1"])?;

    let answer = nxdomain.wait(QUICK)?;
    assert_eq!(answer["outcome"], "answered", "{answer}");
    assert_eq!(answer["rcode"], 3, "NXDOMAIN through the DNAT: {answer}");
    assert_eq!(answer["tries"], 1, "{answer}");
    ensure!(local_ip(&answer)? == IpAddr::V4(pod.ipv4), "{answer}");

    let answer = silent.wait(QUICK)?;
    assert_eq!(answer["outcome"], "timed_out", "{answer}");
    assert_eq!(answer["tries"], 2, "{answer}");
    assert_eq!(answer["rcode"], Value::Null, "{answer}");

    let answer = address.wait(QUICK)?;
    assert_eq!(answer["outcome"], "answered", "{answer}");
    assert_eq!(
        (&answer["rcode"], &answer["answers"]),
        (&Value::from(0), &Value::from(1)),
        "{answer}"
    );
    Ok(())
}

#[test]
fn a_client_in_the_kubelet_cgroup_runs_in_the_node_namespace() -> Result<()> {
    let mut lab = Lab::new()?;
    let target = lab.add_pod("target")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(9443)?;
    let kubelet = lab.kubelet_cgroup()?;
    assert_eq!(
        kubelet.relative(),
        format!("/ds{}.slice/kubelet.service", lab.id())
    );
    assert_eq!(kubelet.id(), std::fs::metadata(kubelet.path())?.ino());

    // The node's own SYN retries are 2 as well: a silent peer costs 7 s.
    let dropped = SocketAddr::new(far.pod_ip().into(), 9443);
    let mut silent = client().spawn_in(
        &lab.node,
        Some(kubelet.path()),
        &["connect", &dropped.to_string()],
    )?;
    assert_eq!(silent.cgroup()?, kubelet.relative());
    let probe = SocketAddr::new(target.ipv4.into(), 10250);
    let refused = client().run_in(
        &lab.node,
        Some(kubelet.path()),
        &["connect", &probe.to_string()],
        QUICK,
    )?;
    expect_connect(&refused, "refused", lab.gateway_v4().into())?;

    let result = silent.wait(WAIT)?;
    expect_connect(&result, "timed_out", far.uplink_address().into())?;
    let elapsed = result["elapsed_ms"].as_u64().unwrap_or_default();
    ensure!(
        (6500..10_000).contains(&elapsed),
        "1 + 2 + 4 s with the node's tcp_syn_retries=2, took {elapsed} ms"
    );
    let syns = far.dropped(9443)?;
    ensure!(syns >= 3, "the SYN and its retries were dropped: {syns}");
    Ok(())
}

#[test]
fn held_connects_stay_pending_until_the_client_is_killed() -> Result<()> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(7000)?;
    let cgroup = lab.pod_cgroup(&pod)?;
    let to = SocketAddr::new(far.pod_ip().into(), 7000);

    let mut hold =
        client().spawn_in(&pod.netns, Some(cgroup.path()), &["hold", &to.to_string()])?;
    let held = hold.first_line(QUICK)?;
    let local = text(&held, "local");
    ensure!(local_ip(&held)? == IpAddr::V4(pod.ipv4), "{held}");
    let pending = pod.netns.syn_sent(to)?;
    ensure!(
        pending.len() == 1 && pending[0].contains(&local),
        "one SYN-SENT socket from {local}: {pending:?}"
    );
    ensure!(hold.running()?, "hold keeps running");
    hold.kill()?;
    ensure!(!hold.running()?);
    let pending = pod.netns.syn_sent(to)?;
    ensure!(
        pending.is_empty(),
        "killing the client closes its connect: {pending:?}"
    );

    let mut many = client().spawn_in(
        &pod.netns,
        Some(cgroup.path()),
        &["connects", &to.to_string(), "--count", "200"],
    )?;
    let started = many.first_line(QUICK)?;
    assert_eq!(started["started"], 200, "{started}");
    assert_eq!(
        started["local"].as_array().map(Vec::len),
        Some(200),
        "{started}"
    );
    let pending = pod.netns.syn_sent(to)?;
    assert_eq!(pending.len(), 200, "every connect is pending at once");
    eventually("the remote node dropping every SYN", || {
        Ok(far.dropped(7000)? >= 201)
    })?;
    many.kill()?;
    ensure!(pod.netns.syn_sent(to)?.is_empty());
    Ok(())
}

/// Everything a lab can make, with a process still inside a pod cgroup.
fn busy_lab() -> Result<(Lab, LabProcess, PathBuf)> {
    let mut lab = Lab::new()?;
    let pod = lab.add_pod("client")?;
    let far = lab.add_remote_node("far")?;
    far.drop_silently(6000)?;
    let cgroup = lab.pod_cgroup(&pod)?;
    lab.kubelet_cgroup()?;
    let process = client().spawn_in(
        &pod.netns,
        Some(cgroup.path()),
        &[
            "hold",
            &SocketAddr::new(far.pod_ip().into(), 6000).to_string(),
        ],
    )?;
    process.first_line(QUICK)?;
    let path = cgroup.path().to_owned();
    Ok((lab, process, path))
}

fn ensure_gone(lab_id: u32) -> Result<()> {
    let left = namespaces(&format!("ds{lab_id}-"))?;
    ensure!(left.is_empty(), "namespaces left: {left:?}");
    let slice = slice_of(lab_id)?;
    ensure!(!slice.exists(), "cgroups left: {}", slice.display());
    Ok(())
}

#[test]
fn dropping_a_lab_removes_its_namespaces_and_cgroups_with_processes_inside() -> Result<()> {
    let (lab, mut process, cgroup) = busy_lab()?;
    let id = lab.id();
    ensure!(cgroup.exists() && slice_of(id)?.exists());
    assert_eq!(namespaces(&format!("ds{id}-"))?.len(), 3, "node, pod, far");
    drop(lab);
    ensure_gone(id)?;
    ensure!(process.running()?, "the process outlives the lab");
    assert_eq!(process.cgroup()?, "/", "moved to the root cgroup");
    process.kill()?;
    Ok(())
}

#[test]
fn a_panicking_test_still_removes_its_lab() -> Result<()> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || -> Result<()> {
        let (lab, _process, _cgroup) = busy_lab()?;
        let _ = sender.send(lab.id());
        panic!("a failing test");
    })
    .join();
    match outcome {
        Err(_panic) => {}
        Ok(Err(error)) => return Err(error.context("making the lab")),
        Ok(Ok(())) => anyhow::bail!("the thread must panic"),
    }
    let id = receiver.recv().context("the lab was made")?;
    ensure_gone(id)
}
