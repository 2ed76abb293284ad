//! The wire between dropscope's kernel programs and its user space.
//!
//! Everything here is `#[repr(C)]`, `Copy` and made of fixed-width integers,
//! with explicit padding: the kernel writes these bytes into the ring buffer
//! and the agent's `decode` step reads them back. There are no names on the
//! wire: drop reasons, kernel functions and devices travel as numbers and are
//! resolved in user space against the running kernel.
//!
//! Byte order is stated per field. Times are kernel monotonic nanoseconds
//! (`bpf_ktime_get_ns`).
#![no_std]
#![deny(missing_docs)]

pub mod config;
pub mod record;
pub mod socket;
pub mod stats;

pub use config::*;
pub use record::*;
pub use socket::*;
pub use stats::*;
