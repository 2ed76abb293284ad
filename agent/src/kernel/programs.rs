//! Loading the embedded eBPF object into the running kernel, attaching the
//! `kfree_skb` hook, and handing its maps over.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, Queue, RingBuf},
    programs::{BtfTracePoint, ProgramFd, TracePoint},
};
use dropscope_abi::{FlowKey, ReasonFilter, Stat, globals, maps};

use tokio::io::{Interest, unix::AsyncFd};

use super::KernelConfig;
use super::{
    CounterArray, DropReasonNames, Error, KernelBtf, features,
    map_handles::{map_error, take, take_data},
    sockets,
};

/// The kernel object, built by `agent/build.rs` for bpfel.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dropscope"));

/// Which kind of hook carries the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    /// `tp_btf/kfree_skb`, falling back to the classic tracepoint.
    Auto,
    /// `tp_btf/kfree_skb` only.
    Btf,
    /// Classic `tracepoint/skb/kfree_skb` only.
    Tracepoint,
    /// A program that only filters, reporting nothing: the floor cost of
    /// being attached, for benchmarks.
    #[value(hide = true)]
    Floor,
}

impl Hook {
    /// The program section of an attached hook (`auto` before attaching).
    pub fn section(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Btf => "tp_btf/kfree_skb",
            Self::Tracepoint => "tracepoint/skb/kfree_skb",
            Self::Floor => "tp_btf/kfree_skb (floor: filter only)",
        }
    }
}

/// The loaded programs; dropping this detaches them.
pub struct Kernel {
    ebpf: Ebpf,
    /// Names of this kernel's drop reasons.
    pub reasons: DropReasonNames,
    /// The hook that is attached.
    pub attached: Hook,
    /// The socket and wire programs attached (empty when off).
    pub socket_programs: Vec<&'static str>,
    /// The interfaces the tc programs watch.
    interfaces: Option<sockets::Interfaces>,
}

/// The maps `capture` reads.
pub struct KernelMaps {
    /// First sight of flows, registered with the async reactor.
    pub events: AsyncFd<RingBuf<MapData>>,
    /// Flow key to counter slot.
    pub flows: HashMap<MapData, FlowKey, u32>,
    /// The counter array, memory-mapped.
    pub counters: CounterArray,
    /// Free counter slots.
    pub free_slots: Queue<MapData, u32>,
    /// Per-CPU statistics.
    pub stats: PerCpuArray<MapData, u64>,
    /// Drops beyond the flow table, per CPU, by bucket.
    pub overflow: PerCpuArray<MapData, dropscope_abi::OverflowBucket>,
    /// Number of counter slots.
    pub slots: u32,
    /// Run-time statistics of the attached program.
    pub program: ProgramStatsReader,
    /// The socket and wire hooks' maps, when they are on.
    pub sockets: Option<sockets::SocketMaps>,
}

impl Kernel {
    /// Loads the object with this kernel's offsets, sets the reason filter
    /// and attaches the hooks. The caller checks the capabilities first
    /// (`features::require_hook_privilege`; the pipeline does, before it
    /// binds anything), so a missing one is named before any work.
    pub fn load(config: &KernelConfig) -> Result<(Self, KernelMaps), Error> {
        features::raise_memlock_limit();
        let tracefs = features::ensure_tracefs()?;
        let btf_path = Path::new(super::btf::VMLINUX_BTF);
        let kernel_btf =
            KernelBtf::load(btf_path)?.with_module(Path::new(super::btf::CONNTRACK_MODULE_BTF));
        let reasons = kernel_btf.drop_reasons()?;
        let filter = config.drop_reasons.resolve(&reasons)?;
        let tracepoint_layout = features::kfree_skb_format(&tracefs)?;
        let offsets = kernel_btf.kernel_offsets(tracepoint_layout)?;
        let socket_offsets = match &config.sockets {
            Some(_) => kernel_btf.socket_offsets(features::socket_formats(&tracefs)?, &offsets),
            None => dropscope_abi::SocketOffsets::default(),
        };
        let connect_slots = config
            .sockets
            .as_ref()
            .map_or(maps::CONNECT_SLOTS, |sockets| sockets.connect_slots.max(1));
        tracing::debug!(
            ?offsets,
            reasons = reasons.len(),
            "resolved kernel layout from BTF"
        );

        let slots = config.flow_slots.max(1);
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global(globals::SOCKET_OFFSETS, &socket_offsets, true)
            .map_max_entries(maps::CONNECTS, connect_slots)
            .map_max_entries(maps::SYN_SOURCES, connect_slots)
            .map_max_entries(maps::FLOWS, slots)
            .map_max_entries(maps::COUNTERS, slots)
            .map_max_entries(maps::FREE_SLOTS, slots)
            .map_max_entries(maps::EVENTS, config.ring_bytes)
            .load(OBJECT)
            .map_err(|error| Error::Load(Box::new(error)))?;

        let mut filter_map: Array<MapData, ReasonFilter> = take(&mut ebpf, maps::REASON_FILTER)?;
        // Nothing selected while the hook proves it is live: the self-test
        // drop is only counted, never reported.
        filter_map
            .set(0, &ReasonFilter::default(), 0)
            .map_err(|source| map_error(maps::REASON_FILTER, source))?;
        let mut free_slots: Queue<MapData, u32> = take(&mut ebpf, maps::FREE_SLOTS)?;
        for slot in 0..slots {
            free_slots
                .push(&slot, 0)
                .map_err(|source| map_error(maps::FREE_SLOTS, source))?;
        }

        let (attached, program) = attach(&mut ebpf, config.hook)?;
        filter_map
            .set(0, &filter, 0)
            .map_err(|source| map_error(maps::REASON_FILTER, source))?;
        let program_id = program.read()?.id;
        tracing::info!(hook = ?attached, program_id, slots, "attached kfree_skb");
        let events: RingBuf<MapData> = take(&mut ebpf, maps::EVENTS)?;
        // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
        // owns the ring buffer, and always returns that same fd.
        let events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|error| Error::Syscall {
                call: "epoll registration of the ring buffer",
                source: error.into_parts().1,
            })?;
        let (socket_programs, socket_maps, interfaces) = match &config.sockets {
            Some(socket_config) => {
                let attached = sockets::attach(&mut ebpf, socket_config)?;
                let mut interfaces = socket_config.tc.then(sockets::Interfaces::default);
                if let Some(interfaces) = &mut interfaces {
                    log_interface_changes(&interfaces.refresh(&mut ebpf)?);
                }
                (attached, Some(sockets::maps(&mut ebpf)?), interfaces)
            }
            None => (Vec::new(), None, None),
        };
        let maps = KernelMaps {
            events,
            flows: take(&mut ebpf, maps::FLOWS)?,
            counters: CounterArray::map(take_data(&mut ebpf, maps::COUNTERS)?, slots)?,
            free_slots,
            stats: take(&mut ebpf, maps::STATS)?,
            overflow: take(&mut ebpf, maps::OVERFLOW)?,
            slots,
            program,
            sockets: socket_maps,
        };
        Ok((
            Self {
                ebpf,
                reasons,
                attached,
                socket_programs,
                interfaces,
            },
            maps,
        ))
    }

    /// Attaches the tc programs to interfaces that appeared since the last
    /// call and forgets those that went (nothing to do when tc is off).
    pub fn refresh_interfaces(&mut self) -> Result<(), Error> {
        if let Some(interfaces) = &mut self.interfaces {
            log_interface_changes(&interfaces.refresh(&mut self.ebpf)?);
        }
        Ok(())
    }

    /// The interfaces the tc programs watch.
    pub fn watched_interfaces(&self) -> Vec<String> {
        self.interfaces
            .as_ref()
            .map(sockets::Interfaces::names)
            .unwrap_or_default()
    }
}

fn log_interface_changes(changes: &sockets::InterfaceChanges) {
    if !changes.added.is_empty() {
        tracing::info!(interfaces = ?changes.added, "tc programs attached");
    }
    if !changes.removed.is_empty() {
        tracing::debug!(interfaces = ?changes.removed, "interfaces gone");
    }
    for (interface, error) in &changes.failed {
        tracing::warn!(%interface, %error, "cannot watch this interface: DNS and SYNs leaving by it are not seen");
    }
}

const BTF_PROGRAM: &str = "kfree_skb_btf";
const TRACEPOINT_PROGRAM: &str = "kfree_skb_tracepoint";
const FLOOR_PROGRAM: &str = "kfree_skb_floor";

/// Attaches the hook asked for. With `auto`, an attached `tp_btf` program
/// must also prove that it runs (a self-test drop must reach it) before it
/// is kept: a kernel that accepts the attach but never calls the program
/// then falls back to the classic tracepoint instead of staying silent.
fn attach(ebpf: &mut Ebpf, hook: Hook) -> Result<(Hook, ProgramStatsReader), Error> {
    if hook == Hook::Floor {
        return Ok((Hook::Floor, attach_btf(ebpf, FLOOR_PROGRAM)?));
    }
    if hook != Hook::Tracepoint {
        match attach_btf(ebpf, BTF_PROGRAM) {
            Ok(reader) if hook == Hook::Btf || hook_is_live(ebpf)? => {
                return Ok((Hook::Btf, reader));
            }
            Ok(_) => {
                tracing::warn!(
                    "tp_btf/kfree_skb attached but did not see a test drop; falling back to the classic tracepoint"
                );
                detach_btf(ebpf)?;
            }
            Err(error) if hook == Hook::Auto => {
                tracing::warn!(%error, "tp_btf/kfree_skb unavailable, falling back to the classic tracepoint");
            }
            Err(error) => return Err(error),
        }
    }
    let reader = attach_tracepoint(ebpf)?;
    if !hook_is_live(ebpf)? {
        tracing::warn!("the kfree_skb tracepoint did not see a test drop: events may be missing");
    }
    Ok((Hook::Tracepoint, reader))
}

/// Sends a UDP datagram to a closed loopback port (the kernel frees it with
/// a drop reason) and waits briefly for the hook to count it. The reason
/// filter selects nothing at this point, so it is counted as filtered and
/// reported nowhere else.
fn hook_is_live(ebpf: &Ebpf) -> Result<bool, Error> {
    let stats_map = ebpf.map(maps::STATS).ok_or_else(|| {
        map_error(
            maps::STATS,
            aya::maps::MapError::InvalidName {
                name: maps::STATS.into(),
            },
        )
    })?;
    let stats: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(stats_map).map_err(|source| map_error(maps::STATS, source))?;
    let filtered = || -> Result<u64, Error> {
        let values = stats
            .get(&(Stat::Filtered as u32), 0)
            .map_err(|source| map_error(maps::STATS, source))?;
        Ok(values.iter().sum())
    };
    let before = filtered()?;
    provoke_drop().map_err(|source| Error::Syscall {
        call: "sending the hook's self-test datagram to 127.0.0.1",
        source,
    })?;
    for _ in 0..50 {
        if filtered()? > before {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(false)
}

fn provoke_drop() -> std::io::Result<()> {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = closed.local_addr()?.port();
    drop(closed);
    let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sender.send_to(b"dropscope hook self-test", ("127.0.0.1", port))?;
    Ok(())
}

fn detach_btf(ebpf: &mut Ebpf) -> Result<(), Error> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(BTF_PROGRAM)
        .ok_or_else(|| missing_program(BTF_PROGRAM))?
        .try_into()
        .map_err(|source| Error::Program {
            action: "find",
            program: BTF_PROGRAM,
            source: Box::new(source),
        })?;
    program.unload().map_err(|source| Error::Program {
        action: "unload",
        program: BTF_PROGRAM,
        source: Box::new(source),
    })
}

fn attach_btf(ebpf: &mut Ebpf, name: &'static str) -> Result<ProgramStatsReader, Error> {
    let program_error = |action, source| Error::Program {
        action,
        program: name,
        source: Box::new(source),
    };
    let btf = aya::Btf::from_sys_fs().map_err(|error| Error::BtfRead {
        path: super::btf::VMLINUX_BTF.into(),
        message: error.to_string(),
    })?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| missing_program(name))?
        .try_into()
        .map_err(|source| program_error("find", source))?;
    program
        .load("kfree_skb", &btf)
        .map_err(|source| program_error("load", source))?;
    program
        .attach()
        .map_err(|source| program_error("attach", source))?;
    let fd = program
        .fd()
        .map_err(|source| program_error("inspect", source))?;
    ProgramStatsReader::new(fd)
}

fn attach_tracepoint(ebpf: &mut Ebpf) -> Result<ProgramStatsReader, Error> {
    let program_error = |action, source| Error::Program {
        action,
        program: TRACEPOINT_PROGRAM,
        source: Box::new(source),
    };
    let program: &mut TracePoint = ebpf
        .program_mut(TRACEPOINT_PROGRAM)
        .ok_or_else(|| missing_program(TRACEPOINT_PROGRAM))?
        .try_into()
        .map_err(|source| program_error("find", source))?;
    program
        .load()
        .map_err(|source| program_error("load", source))?;
    program
        .attach("skb", "kfree_skb")
        .map_err(|source| program_error("attach", source))?;
    let fd = program
        .fd()
        .map_err(|source| program_error("inspect", source))?;
    ProgramStatsReader::new(fd)
}

fn missing_program(program: &'static str) -> Error {
    Error::Program {
        action: "find",
        program,
        source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
    }
}

/// Run-time statistics of a loaded program, as the kernel keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// The kernel's id of the program (as `bpftool prog show` lists it).
    pub id: u32,
    /// Invocations counted while BPF stats were enabled.
    pub run_count: u64,
    /// Nanoseconds spent in the program while BPF stats were enabled.
    pub run_time_ns: u64,
    /// Invocations skipped because the program was already running on that CPU.
    pub recursion_misses: u64,
}

/// Reads [`ProgramStats`] with `BPF_OBJ_GET_INFO_BY_FD`.
pub struct ProgramStatsReader {
    fd: ProgramFd,
}

impl ProgramStatsReader {
    fn new(fd: &ProgramFd) -> Result<Self, Error> {
        let fd = fd.try_clone().map_err(|source| Error::Syscall {
            call: "dup(program fd)",
            source,
        })?;
        Ok(Self { fd })
    }

    /// A second reader of the same program.
    pub fn try_clone(&self) -> Result<Self, Error> {
        Self::new(&self.fd)
    }

    /// The program's statistics now.
    pub fn read(&self) -> Result<ProgramStats, Error> {
        #[repr(C)]
        struct InfoByFd {
            bpf_fd: u32,
            info_len: u32,
            info: u64,
        }
        let mut info: aya_obj::generated::bpf_prog_info =
            // SAFETY: a plain C struct of integers; all-zero is valid.
            unsafe { std::mem::zeroed() };
        let mut attr = InfoByFd {
            bpf_fd: self.fd.as_fd().as_raw_fd() as u32,
            info_len: std::mem::size_of_val(&info) as u32,
            info: &raw mut info as u64,
        };
        const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
        // SAFETY: attr points at a valid bpf_attr prefix and info buffer of
        // the stated length, both live for the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET_INFO_BY_FD,
                &raw mut attr,
                std::mem::size_of::<InfoByFd>(),
            )
        };
        if result != 0 {
            return Err(Error::Syscall {
                call: "bpf(BPF_OBJ_GET_INFO_BY_FD)",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(ProgramStats {
            id: info.id,
            run_count: info.run_cnt,
            run_time_ns: info.run_time_ns,
            recursion_misses: info.recursion_misses,
        })
    }
}
