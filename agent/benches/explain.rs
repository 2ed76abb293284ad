//! Explain latency, metadata store memory and watch-apply cost on large
//! synthetic clusters, at two sizes with the same per-namespace density
//! (200 pods and 20 policies per namespace, 100 pods per node, 20 Services
//! with their EndpointSlices per namespace): 10,000 pods / 1,000 policies
//! in 50 namespaces on 100 nodes, and ten times that (100,000 pods /
//! 10,000 policies / 10,000 Services in 500 namespaces on 1,000 nodes).
//! Policies: default denies, same-app allows, namespace and pod selectors,
//! matchExpressions, ipBlocks with except, named ports, endPort ranges.
//!
//! Per size: the initial sync (time inside `Store::apply`, objects made
//! outside it), the bytes the store keeps per kind (a counting global
//! allocator), `explain` over many random flows (p50, p99, max in µs,
//! per flow class, and the slowest flows re-run), then watch events applied
//! to the built store (pods created, relabelled, deleted; policies changed;
//! namespaces relabelled: p50, p99, max per event), then a rollout's burst
//! of pod events applied in batches while another thread explains
//! ([`burst`]). Prints a table per size and writes
//! `target/bench/explain.json`.
//!
//! `cargo +1.98.0 bench -p dropscope --bench explain` (full), with
//! `-- --quick` (or `DROPSCOPE_BENCH_QUICK=1`) for a smoke run, and
//! `-- --size 10k` or `-- --size 100k` for one size.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use cluster::{
    Rng, SERVICES_PER_NAMESPACE, SIZES, Size, namespace_object, node_ip, node_object, pod_ip,
    pod_object, pod_version, policy_object, service_objects, service_vip,
};
use dropscope::{
    enrich::{
        store::{Kind, Object, Store, WatchEvent},
        view::View,
    },
    explain::{Flow, Target, explain},
    model::Protocol,
};

#[path = "explain/burst.rs"]
mod burst;
#[path = "explain/cluster.rs"]
mod cluster;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Applies one event; returns how long `Store::apply` took.
fn timed_apply(store: &mut Store, event: WatchEvent) -> Duration {
    let started = Instant::now();
    let result = store.apply(event);
    let elapsed = started.elapsed();
    if let Err(error) = result {
        panic!("bench object rejected: {error}");
    }
    elapsed
}

/// What building the store cost, per kind.
struct Build {
    store: Store,
    /// Time spent inside `Store::apply` (objects are made outside it).
    apply: Duration,
    /// Bytes the store holds after each kind, and how many objects.
    by_kind: Vec<(&'static str, usize, isize)>,
    bytes: isize,
}

/// Builds the store as an initial sync does: per kind, a relist of every
/// object through `Store::apply`.
fn build(size: &Size) -> Build {
    let before = LIVE.load(Ordering::Relaxed);
    let mut store = Store::new();
    let mut apply = Duration::ZERO;
    let mut by_kind = Vec::new();
    let mut phase = |store: &mut Store,
                     kind: Kind,
                     name: &'static str,
                     objects: &mut dyn Iterator<Item = Object>| {
        let start = LIVE.load(Ordering::Relaxed);
        let mut count = 0;
        apply += timed_apply(store, WatchEvent::RelistStart(kind));
        for object in objects {
            apply += timed_apply(store, WatchEvent::Apply(object));
            count += 1;
        }
        apply += timed_apply(store, WatchEvent::RelistDone(kind));
        by_kind.push((name, count, LIVE.load(Ordering::Relaxed) - start));
    };
    phase(
        &mut store,
        Kind::Namespace,
        "namespace",
        &mut (0..size.namespaces).map(|index| namespace_object(index, None)),
    );
    phase(
        &mut store,
        Kind::Node,
        "node",
        &mut (0..size.nodes).map(node_object),
    );
    phase(
        &mut store,
        Kind::Pod,
        "pod",
        &mut (0..size.pods).map(|index| pod_object(size, index, pod_version(index))),
    );
    phase(
        &mut store,
        Kind::Service,
        "service",
        &mut (0..size.namespaces).flat_map(|namespace| {
            (0..SERVICES_PER_NAMESPACE).map(move |app| {
                let [service, _] = service_objects(size, namespace, app);
                service
            })
        }),
    );
    phase(
        &mut store,
        Kind::EndpointSlice,
        "endpointslice",
        &mut (0..size.namespaces).flat_map(|namespace| {
            (0..SERVICES_PER_NAMESPACE).map(move |app| {
                let [_, slice] = service_objects(size, namespace, app);
                slice
            })
        }),
    );
    phase(
        &mut store,
        Kind::NetworkPolicy,
        "networkpolicy",
        &mut (0..size.policies).map(|index| policy_object(size, index, 0)),
    );
    Build {
        store,
        apply,
        by_kind,
        bytes: LIVE.load(Ordering::Relaxed) - before,
    }
}

/// The kinds of flow in the mix, for per-class figures.
const CLASSES: [&str; 6] = [
    "pod → pod",
    "node → pod",
    "external → pod",
    "pod → service VIP",
    "pod → external",
    "other",
];

fn random_flow(size: &Size, rng: &mut Rng) -> (Flow, usize) {
    let src = rng.below(size.pods);
    let (from, from_class) = match rng.below(20) {
        0 => (Target::Ip(IpAddr::V4(node_ip(src % size.nodes))), 1),
        1 => (
            Target::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(250) as u8))),
            2,
        ),
        _ => (Target::Ip(IpAddr::V4(pod_ip(size, src))), 0),
    };
    let (to, port, protocol, to_class) = match rng.below(10) {
        0 => (
            Target::Ip(IpAddr::V4(service_vip(
                rng.below(size.namespaces),
                rng.below(SERVICES_PER_NAMESPACE),
            ))),
            80,
            Protocol::Tcp,
            3,
        ),
        1 => (
            Target::Ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            443,
            Protocol::Tcp,
            4,
        ),
        _ => {
            let dst = rng.below(size.pods);
            let (port, protocol) = [
                (8080, Protocol::Tcp),
                (9090, Protocol::Tcp),
                (5432, Protocol::Tcp),
                (53, Protocol::Udp),
                (8443, Protocol::Tcp),
            ][rng.below(5)];
            (Target::Ip(IpAddr::V4(pod_ip(size, dst))), port, protocol, 0)
        }
    };
    let class = match (from_class, to_class) {
        (0, 0) => 0,
        (from, 0) => from,
        (0, to) => to,
        _ => 5,
    };
    let flow = Flow {
        from,
        to,
        port,
        protocol,
        original: None,
    };
    (flow, class)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn target(flow: &Target) -> String {
    match flow {
        Target::Ip(ip) => ip.to_string(),
        Target::Pod { namespace, name } | Target::Service { namespace, name } => {
            format!("{namespace}/{name}")
        }
    }
}

/// Watch events at scale: pods created, relabelled, deleted; policies
/// changed; namespaces relabelled. Each kind `count` times, interleaved.
fn watch_events(size: &Size, count: usize) -> Vec<(&'static str, WatchEvent)> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut events = Vec::with_capacity(count * 5);
    for index in 0..count {
        // Created: a new pod beyond the initial ones.
        let new = size.pods + index;
        events.push((
            "pod created",
            WatchEvent::Apply(pod_object(size, new, pod_version(new))),
        ));
        // Relabelled: an existing pod's version label changes.
        let pod = rng.below(size.pods);
        events.push((
            "pod relabelled",
            WatchEvent::Apply(pod_object(size, pod, "v3")),
        ));
        // Deleted: another existing pod.
        let gone = rng.below(size.pods);
        events.push((
            "pod deleted",
            WatchEvent::Delete(pod_object(size, gone, pod_version(gone))),
        ));
        // A policy's spec changes to another shape.
        let policy = rng.below(size.policies);
        events.push((
            "policy changed",
            WatchEvent::Apply(policy_object(size, policy, 1 + rng.below(9))),
        ));
        let namespace = rng.below(size.namespaces);
        events.push((
            "namespace relabelled",
            WatchEvent::Apply(namespace_object(namespace, Some("qa"))),
        ));
    }
    events
}

/// A rollout's burst: `count` pod events, new replicas created, running
/// ones relabelled and old ones deleted, interleaved.
fn rollout_events(size: &Size, count: usize) -> Vec<WatchEvent> {
    let mut rng = Rng(0x6a09_e667_f3bc_c908);
    (0..count)
        .map(|index| match index % 3 {
            0 => {
                let new = size.pods * 2 + index;
                WatchEvent::Apply(pod_object(size, new, "v4"))
            }
            1 => WatchEvent::Apply(pod_object(size, rng.below(size.pods), "v4")),
            _ => {
                let gone = rng.below(size.pods);
                WatchEvent::Delete(pod_object(size, gone, pod_version(gone)))
            }
        })
        .collect()
}

/// The flows explained meanwhile: the benchmark's mix.
fn burst_flows(size: &Size) -> Vec<Flow> {
    let mut rng = Rng(0xbb67_ae85_84ca_a73b);
    (0..1_000).map(|_| random_flow(size, &mut rng).0).collect()
}

/// How many of the slowest flows are explained again, and how often.
const SLOWEST_RERUN: (usize, usize) = (20, 11);

struct Report {
    json: serde_json::Value,
}

fn run(size: &Size, quick: bool) -> Report {
    let flows = if quick { 2_000 } else { 100_000 };
    let built = build(size);
    let store = built.store;
    let counts = store.counts();
    let view = View::new(&store);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Warm up.
    for _ in 0..flows / 20 {
        let (flow, _) = random_flow(size, &mut rng);
        let _ = black_box(explain(&view, black_box(&flow)));
    }
    let mut latencies = Vec::with_capacity(flows);
    let mut by_class: Vec<Vec<Duration>> = vec![Vec::new(); CLASSES.len()];
    let mut slowest: Option<(Duration, Flow, usize)> = None;
    // The slowest flows of the run, fastest first.
    let mut slow_flows: Vec<(Duration, Flow)> = Vec::new();
    let (mut allowed, mut denied, mut errors) = (0usize, 0usize, 0usize);
    for _ in 0..flows {
        let (flow, class) = random_flow(size, &mut rng);
        let started = Instant::now();
        let result = explain(&view, black_box(&flow));
        let elapsed = started.elapsed();
        latencies.push(elapsed);
        by_class[class].push(elapsed);
        if slowest.as_ref().is_none_or(|(max, _, _)| elapsed > *max) {
            slowest = Some((elapsed, flow.clone(), class));
        }
        if slow_flows.len() < SLOWEST_RERUN.0
            || slow_flows
                .first()
                .is_some_and(|(fastest, _)| elapsed > *fastest)
        {
            if slow_flows.len() == SLOWEST_RERUN.0 {
                slow_flows.remove(0);
            }
            let at = slow_flows.partition_point(|(other, _)| *other < elapsed);
            slow_flows.insert(at, (elapsed, flow.clone()));
        }
        match black_box(result) {
            Ok(explanation) if explanation.verdict.is_allow() => allowed += 1,
            Ok(_) => denied += 1,
            Err(_) => errors += 1,
        }
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().copied().map_or(0.0, us);
    let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / flows as f64 * 1e6;

    // The slowest flows, each explained again: the slowest of their
    // medians is the most work any flow of the mix needs (a single run
    // also counts preemption on a shared machine).
    let rerun_max = slow_flows
        .iter()
        .map(|(_, flow)| {
            let mut again: Vec<Duration> = (0..SLOWEST_RERUN.1)
                .map(|_| {
                    let started = Instant::now();
                    let _ = black_box(explain(&view, black_box(flow)));
                    started.elapsed()
                })
                .collect();
            again.sort_unstable();
            percentile(&again, 0.5)
        })
        .fold(0.0, f64::max);

    // The slowest flow, explained again: is it slow every time (the work
    // it needs) or was it one unlucky run (preemption on a shared machine)?
    let mut slowest_json = serde_json::Value::Null;
    let mut slowest_line = String::new();
    if let Some((elapsed, flow, class)) = &slowest {
        let mut again: Vec<Duration> = (0..51)
            .map(|_| {
                let started = Instant::now();
                let _ = black_box(explain(&view, black_box(flow)));
                started.elapsed()
            })
            .collect();
        again.sort_unstable();
        let rerun = percentile(&again, 0.5);
        let (verdict, rules, hints) = match explain(&view, flow) {
            Ok(explanation) => (
                format!("{:?}", explanation.verdict),
                explanation.egress.policies.len() + explanation.ingress.policies.len(),
                explanation
                    .hints
                    .iter()
                    .map(|hint| format!("{:?}", hint.code))
                    .collect::<Vec<_>>(),
            ),
            Err(error) => (format!("error: {error}"), 0, Vec::new()),
        };
        slowest_line = format!(
            "{:.1} µs once, {rerun:.1} µs median of 51 re-runs: {} {} → {} {}/{} ({verdict}, {rules} policies, hints {})",
            us(*elapsed),
            CLASSES[*class],
            target(&flow.from),
            target(&flow.to),
            flow.protocol,
            flow.port,
            hints.join(",")
        );
        slowest_json = serde_json::json!({
            "us": us(*elapsed),
            "rerun_median_us": rerun,
            "class": CLASSES[*class],
            "from": target(&flow.from),
            "to": target(&flow.to),
            "port": flow.port,
            "protocol": flow.protocol.to_string(),
            "verdict": verdict,
            "policies": rules,
            "hints": hints,
        });
    }

    // Watch apply at scale, on the built store.
    let mut store = store;
    let events = watch_events(size, if quick { 200 } else { 2_000 });
    let mut apply_all = Vec::with_capacity(events.len());
    let mut apply_by: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (kind, event) in events {
        let elapsed = timed_apply(&mut store, event);
        apply_all.push(elapsed);
        apply_by.entry(kind).or_default().push(elapsed);
    }
    apply_all.sort_unstable();
    for latencies in apply_by.values_mut() {
        latencies.sort_unstable();
    }
    let apply_p50 = percentile(&apply_all, 0.5);
    let apply_p99 = percentile(&apply_all, 0.99);
    let apply_max = apply_all.last().copied().map_or(0.0, us);

    // A rollout's burst while explanations go on.
    let (store, burst) = burst::run(
        store,
        rollout_events(size, if quick { 1_000 } else { 10_000 }),
        burst_flows(size),
    );

    let mib = |bytes: isize| bytes as f64 / 1048576.0;
    println!();
    println!(
        "dropscope explain benchmark, {} ({}{})",
        size.name,
        if quick { "quick, " } else { "" },
        format_args!("{flows} flows")
    );
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| pods / policies / services / namespaces / nodes | {} / {} / {} / {} / {} |",
        counts.pods, counts.policies, counts.services, counts.namespaces, counts.nodes
    );
    println!("| flows explained | {flows} ({allowed} allowed, {denied} denied, {errors} errors) |");
    println!("| explain p50 | {p50:.1} µs (target < 10) |");
    println!("| explain p99 | {p99:.1} µs (target < 50) |");
    println!("| explain max | {max:.1} µs (target < 1000) |");
    println!("| explain mean | {mean:.1} µs |");
    for (class, latencies) in CLASSES.iter().zip(by_class.iter_mut()) {
        if latencies.is_empty() {
            continue;
        }
        latencies.sort_unstable();
        println!(
            "| explain {class} | p50 {:.1} / p99 {:.1} / max {:.1} µs ({} flows) |",
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            latencies.last().copied().map_or(0.0, us),
            latencies.len()
        );
    }
    println!(
        "| explain max, slowest {} flows re-run (median of {}) | {rerun_max:.1} µs (target < 1000) |",
        SLOWEST_RERUN.0, SLOWEST_RERUN.1
    );
    println!("| slowest flow | {slowest_line} |");
    println!(
        "| store memory | {:.1} MiB ({} bytes, target < 64 MiB) |",
        mib(built.bytes),
        built.bytes
    );
    let mut by_kind_json = serde_json::Map::new();
    for (name, count, bytes) in &built.by_kind {
        let each = if *count == 0 {
            0
        } else {
            *bytes / *count as isize
        };
        println!(
            "| store: {name} | {count} × {each} bytes = {:.1} MiB |",
            mib(*bytes)
        );
        by_kind_json.insert(
            (*name).to_string(),
            serde_json::json!({"count": count, "bytes": bytes, "bytes_each": each}),
        );
    }
    println!(
        "| initial sync (time in Store::apply) | {:.0} ms (target < 5000) |",
        built.apply.as_secs_f64() * 1e3
    );
    println!(
        "| watch apply | p50 {apply_p50:.1} / p99 {apply_p99:.1} µs (target < 100) / max {apply_max:.1} µs ({} events) |",
        apply_all.len()
    );
    let hold_max = burst.holds.last().copied().map_or(0.0, us);
    let (read_p50, read_p99, read_max) = (
        percentile(&burst.reads, 0.5),
        percentile(&burst.reads, 0.99),
        burst.reads.last().copied().map_or(0.0, us),
    );
    println!(
        "| burst: {} pod events (rollout) | {:.0} ms in {} write-lock batches (p50 {:.0} / max {hold_max:.0} µs held) |",
        burst.events,
        burst.total.as_secs_f64() * 1e3,
        burst.batches,
        percentile(&burst.holds, 0.5),
    );
    println!(
        "| burst: explanations meanwhile (lock wait included) | {} explained, p50 {read_p50:.1} / p99 {read_p99:.1} / max {read_max:.1} µs |",
        burst.reads.len()
    );
    let burst_json = serde_json::json!({
        "events": burst.events,
        "total_ms": burst.total.as_secs_f64() * 1e3,
        "batches": burst.batches,
        "hold_p50_us": percentile(&burst.holds, 0.5),
        "hold_max_us": hold_max,
        "explained": burst.reads.len(),
        "explain_p50_us": read_p50,
        "explain_p99_us": read_p99,
        "explain_max_us": read_max,
    });
    let mut apply_json = serde_json::Map::new();
    for (kind, latencies) in &apply_by {
        let (p50, p99, max) = (
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            latencies.last().copied().map_or(0.0, us),
        );
        println!("| watch apply: {kind} | p50 {p50:.1} / p99 {p99:.1} / max {max:.1} µs |");
        apply_json.insert(
            (*kind).to_string(),
            serde_json::json!({"p50_us": p50, "p99_us": p99, "max_us": max}),
        );
    }

    let json = serde_json::json!({
        "size": size.name,
        "explain_p50_us": p50,
        "explain_p99_us": p99,
        "explain_max_us": max,
        "explain_mean_us": mean,
        "explain_rerun_max_us": rerun_max,
        "burst": burst_json,
        "slowest": slowest_json,
        "flows": flows,
        "allowed": allowed,
        "denied": denied,
        "errors": errors,
        "store_bytes": built.bytes,
        "store_bytes_by_kind": by_kind_json,
        "initial_sync_ms": built.apply.as_secs_f64() * 1e3,
        "watch_apply_p50_us": apply_p50,
        "watch_apply_p99_us": apply_p99,
        "watch_apply_max_us": apply_max,
        "watch_apply_by_event": apply_json,
        "pods": counts.pods,
        "policies": counts.policies,
        "services": counts.services,
        "endpoint_slices": counts.endpoint_slices,
        "namespaces": counts.namespaces,
        "nodes": counts.nodes,
        "quick": quick,
        "p50_target_met": p50 < 10.0,
        "p99_target_met": p99 < 50.0,
        "max_target_met": max < 1000.0,
        "rerun_max_target_met": rerun_max < 1000.0,
        "memory_target_met": built.bytes < 64 * 1024 * 1024,
        "sync_target_met": built.apply.as_secs_f64() < 5.0,
        "watch_apply_target_met": apply_p99 < 100.0,
    });
    drop(store);
    Report { json }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = std::env::var_os("DROPSCOPE_BENCH_QUICK").is_some()
        || args.iter().any(|arg| arg == "--quick");
    // `--size 10k|100k` runs one size; both by default.
    let only = args
        .iter()
        .position(|arg| arg == "--size")
        .and_then(|index| args.get(index + 1));
    let sizes: Vec<&Size> = SIZES
        .iter()
        .filter(|size| only.is_none_or(|only| only == size.name))
        .collect();
    if sizes.is_empty() {
        eprintln!("unknown --size (use 10k or 100k)");
        std::process::exit(2);
    }
    let reports: Vec<serde_json::Value> = sizes.iter().map(|size| run(size, quick).json).collect();
    let json = serde_json::json!({ "sizes": reports });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("explain.json"), format!("{json:#}\n")));
    match written {
        Ok(()) => println!("wrote {}", dir.join("explain.json").display()),
        Err(error) => eprintln!(
            "cannot write {}: {error}",
            dir.join("explain.json").display()
        ),
    }
}
