//! The BPF programs and maps a process holds, and what the kernel says
//! about them: which ones come from the process's file descriptors
//! (`/proc/PID/fdinfo` names the `prog_id` of program and link fds and the
//! `map_id` of map fds), their figures from `bpftool prog|map show --json`
//! (run time and run count while BPF statistics are on, memory).
//!
//! bpftool can list the holders of each object itself (`pids`) only when it
//! was built with BPF skeletons, which Debian's is not; the fdinfo is the
//! same ground truth, and tells apart two agents with the same programs.

use std::{collections::BTreeSet, process::Command};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// One program, as `bpftool prog show` lists it.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    /// Its id.
    pub id: u64,
    /// Its name (bpftool gives the full name when the program has BTF,
    /// else the kernel's 15-character one).
    pub name: String,
    /// Its type (`sched_cls`, `tracepoint`, …).
    pub kind: String,
    /// Nanoseconds spent running it while statistics were on.
    pub run_time_ns: u64,
    /// Runs while statistics were on.
    pub run_cnt: u64,
}

/// One map, as `bpftool map show` lists it.
#[derive(Clone, Debug)]
pub struct MapInfo {
    /// Its id.
    pub id: u64,
    /// Its name (at most 15 characters).
    pub name: String,
    /// Its type (`hash`, `lru_hash`, `ringbuf`, …).
    pub kind: String,
    /// Its capacity.
    pub max_entries: u64,
    /// What the kernel charges for it, in bytes.
    pub bytes_memlock: u64,
}

/// Ids of the programs and of the maps process `pid` holds a file
/// descriptor of (programs also through links).
pub fn held_ids(pid: u32) -> Result<(BTreeSet<u64>, BTreeSet<u64>)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut programs = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // An fd closed since the listing is no error.
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        for line in info.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Ok(id) = value.trim().parse::<u64>() else {
                continue;
            };
            match key {
                "prog_id" => {
                    programs.insert(id);
                }
                "map_id" => {
                    maps.insert(id);
                }
                _ => {}
            }
        }
    }
    Ok((programs, maps))
}

/// The programs process `pid` holds, with their run-time statistics.
pub fn programs_of(pid: u32) -> Result<Vec<ProgramStats>> {
    let (held, _) = held_ids(pid)?;
    Ok(bpftool(&["prog", "show", "--json"])?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|program| {
            let id = program["id"].as_u64()?;
            held.contains(&id).then(|| ProgramStats {
                id,
                name: text(&program["name"]),
                kind: text(&program["type"]),
                // Listed only once non-zero.
                run_time_ns: program["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: program["run_cnt"].as_u64().unwrap_or(0),
            })
        })
        .collect())
}

/// The maps process `pid` holds.
pub fn maps_of(pid: u32) -> Result<Vec<MapInfo>> {
    let (_, held) = held_ids(pid)?;
    Ok(bpftool(&["map", "show", "--json"])?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|map| {
            let id = map["id"].as_u64()?;
            held.contains(&id).then(|| MapInfo {
                id,
                name: text(&map["name"]),
                kind: text(&map["type"]),
                max_entries: map["max_entries"].as_u64().unwrap_or(0),
                bytes_memlock: map["bytes_memlock"].as_u64().unwrap_or(0),
            })
        })
        .collect())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn bpftool(args: &[&str]) -> Result<Value> {
    let output = Command::new("bpftool")
        .args(args)
        .output()
        .context("running bpftool (run `cargo xtask bootstrap`)")?;
    ensure!(
        output.status.success(),
        "bpftool {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("bpftool {} printed no JSON", args.join(" ")))
}
