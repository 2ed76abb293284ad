//! Library target so that the agent can name this crate as a build
//! dependency (cargo then rebuilds the agent when the kernel code changes).
//! The programs themselves are the `dropscope` binary target, built for
//! `bpfel-unknown-none` only.
#![no_std]
