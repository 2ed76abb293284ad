//! Load and attach: the kernel programs, their maps and links, and what the
//! running kernel is (BTF offsets, drop-reason names, features). Also the
//! agent's direct views of kernel memory: the memory-mapped flow counters
//! and the ring buffer registered with the async reactor.
//!
//! Receives its [`KernelConfig`]; hands
//! [`KernelMaps`] to `capture` and keeps the links alive until dropped
//! (dropping [`Kernel`] detaches everything).

pub mod btf;
pub mod counters;
pub mod features;
mod map_handles;
pub mod programs;
pub mod reasons;
pub mod sockets;

use std::path::PathBuf;

pub use btf::{DropReasonNames, KernelBtf};
pub use counters::CounterArray;
pub use programs::{Hook, Kernel, KernelMaps, ProgramStats};
pub use reasons::{DEFAULT_DROP_REASONS, DropReasonSet};
pub use sockets::{InterfaceChanges, SocketConfig, SocketMaps};

/// How the kernel programs are loaded.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Which hook to attach.
    pub hook: Hook,
    /// Which drop reasons to report.
    pub drop_reasons: DropReasonSet,
    /// Flows aggregated in the kernel at once.
    pub flow_slots: u32,
    /// Size of the ring buffer in bytes (a power of two).
    pub ring_bytes: u32,
    /// The socket and wire hooks, when on.
    pub sockets: Option<SocketConfig>,
}

/// What can go wrong while loading and attaching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No BTF for the running kernel.
    #[error(
        "the kernel has no BTF at {path}: dropscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf {
        /// Where BTF was looked for.
        path: PathBuf,
    },
    /// BTF present but unreadable.
    #[error("cannot read kernel BTF {path}: {message}")]
    BtfRead {
        /// The BTF file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A kernel struct field the programs cannot work without.
    #[error("the running kernel's BTF has no {field}")]
    MissingKernelField {
        /// `struct.member` path.
        field: String,
    },
    /// Capabilities the hooks need are missing from the effective set.
    #[error(
        "dropscope lacks {missing}; run it as root (sudo), or grant these capabilities as deploy/dropscope.yaml does"
    )]
    NotPrivileged {
        /// Each missing capability, with what needs it.
        missing: String,
    },
    /// tracefs is not mounted and mounting it failed.
    #[error(
        "tracefs is not mounted at {path} and mounting it failed ({source}); run: mount -t tracefs nodev {path}"
    )]
    Tracefs {
        /// Where tracefs belongs.
        path: PathBuf,
        /// Why mounting failed.
        source: std::io::Error,
    },
    /// A file of the kernel's could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tracepoint format file does not have a field we need.
    #[error("{path} has no field {field}")]
    TracepointFormat {
        /// The format file.
        path: PathBuf,
        /// The missing field.
        field: String,
    },
    /// A drop-reason name the running kernel does not define.
    #[error("unknown drop reason {name:?} in {input:?}: this kernel defines {known}")]
    UnknownDropReason {
        /// The name asked for.
        name: String,
        /// The whole list it came from.
        input: String,
        /// A few of the names this kernel has.
        known: String,
    },
    /// The eBPF object could not be loaded.
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    /// A program could not be loaded or attached.
    #[error("{action} program {program} failed: {source}")]
    Program {
        /// load or attach.
        action: &'static str,
        /// The program's name.
        program: &'static str,
        /// aya's error.
        source: Box<aya::programs::ProgramError>,
    },
    /// A map is missing or has the wrong type.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// aya's error.
        source: Box<aya::maps::MapError>,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Syscall {
        /// Which call.
        call: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
