//! Bytes from the kernel → typed [`model`](crate::model) records: ring-buffer
//! records, flow counters, and kernel code locations. The only place that
//! reinterprets kernel bytes.

pub mod clock;
pub mod dns;
pub mod interfaces;
pub mod socket;
pub mod symbols;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dropscope_abi as abi;

pub use clock::Clock;
pub use symbols::Symbols;

use self::interfaces::InterfaceNames;
use crate::{
    kernel::DropReasonNames,
    model::{
        DropPlace, DropReason, DropRecord, Endpoint, FlowSample, KernelLocation, OverflowSample,
        Protocol, TcpFlags, Tuple, record::Conntrack,
    },
};

/// A record the agent cannot read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than its header, or than its kind needs.
    #[error("short {kind} record: {len} bytes, need {expected}")]
    TooShort {
        /// What was being read.
        kind: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// A kind this agent does not know.
    #[error("unknown record kind {kind} ({len} bytes)")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// Bytes received.
        len: usize,
    },
    /// A layout version this agent does not know.
    #[error("record kind {kind} has version {version}, this agent reads version {supported}")]
    UnsupportedVersion {
        /// The kind byte.
        kind: u8,
        /// The version byte.
        version: u8,
        /// The version this agent reads.
        supported: u8,
    },
    /// A drop record that claims no flow slot (the kernel counts drops
    /// beyond its flow table in overflow buckets, never in records).
    #[error("drop record without a flow slot")]
    NoSlot,
    /// An address family other than IPv4 or IPv6.
    #[error("unknown address family {family} in a {field} tuple")]
    BadFamily {
        /// Which tuple.
        field: &'static str,
        /// The family byte.
        family: u8,
    },
}

/// Reads a record of `kind` from ring-buffer bytes: checks the header's
/// kind and version and the length, then copies the record out.
pub fn read_record<T: aya::Pod>(bytes: &[u8], kind: u8, name: &'static str) -> Result<T, Error> {
    let header_len = std::mem::size_of::<abi::RecordHeader>();
    if bytes.len() < header_len {
        return Err(Error::TooShort {
            kind: "record header",
            len: bytes.len(),
            expected: header_len,
        });
    }
    // SAFETY: length checked above; RecordHeader is plain integers and
    // read_unaligned makes no alignment assumption.
    let header: abi::RecordHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if header.kind != kind {
        return Err(Error::UnknownKind {
            kind: header.kind,
            len: bytes.len(),
        });
    }
    if header.version != abi::RECORD_VERSION {
        return Err(Error::UnsupportedVersion {
            kind: header.kind,
            version: header.version,
            supported: abi::RECORD_VERSION,
        });
    }
    let expected = std::mem::size_of::<T>();
    if bytes.len() < expected {
        return Err(Error::TooShort {
            kind: name,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: length checked above; `T: Pod` is plain integers, valid for
    // any bytes, and read_unaligned makes no alignment assumption.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// The kind byte of a ring-buffer record, when it has a header.
pub fn record_kind(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// Turns kernel bytes into model records, naming reasons and locations
/// for the running kernel.
pub struct Decoder {
    reasons: DropReasonNames,
    symbols: Symbols,
    clock: Clock,
    /// The agent's network namespace, whose devices it can name.
    own_netns: Option<u32>,
    names: InterfaceNames,
}

/// How a drop in the agent's own network namespace is named.
pub const HOST_NETNS: &str = "host";

impl Decoder {
    /// A decoder for this kernel's reason names and symbols.
    pub fn new(reasons: DropReasonNames, symbols: Symbols, clock: Clock) -> Self {
        Self {
            reasons,
            symbols,
            clock,
            own_netns: interfaces::own_netns(),
            names: InterfaceNames::default(),
        }
    }

    /// The names of a drop's namespace and devices, when it happened in the
    /// agent's own namespace; none elsewhere.
    fn place(&mut self, netns: u32, ifindex: u32, ingress_ifindex: u32) -> DropPlace {
        if netns == 0 || self.own_netns != Some(netns) {
            return DropPlace::default();
        }
        DropPlace {
            netns_name: Some(HOST_NETNS),
            interface: self.names.interface(ifindex).name,
            ingress_interface: self.names.interface(ingress_ifindex).name,
        }
    }

    /// Decodes one ring-buffer record; also returns the kernel's key of
    /// the flow, which `capture` needs to retire it later.
    pub fn drop_record(&mut self, bytes: &[u8]) -> Result<(DropRecord, abi::FlowKey), Error> {
        let raw: abi::DropRecord = read_record(bytes, abi::KIND_DROP, "drop")?;
        // A conntrack entry whose tuples do not read is left out, never a
        // reason to lose the drop itself.
        let conntrack = if raw.ct_info & abi::CT_PRESENT != 0 {
            match (
                tuple(&raw.ct_original, "conntrack original"),
                tuple(&raw.ct_reply, "conntrack reply"),
            ) {
                (Ok(original), Ok(reply)) => Some(Conntrack { original, reply }),
                _ => None,
            }
        } else {
            None
        };
        if raw.slot == abi::SLOT_NONE {
            return Err(Error::NoSlot);
        }
        let record = DropRecord {
            slot: raw.slot,
            time: self.clock.wall(raw.time_ns),
            cpu: raw.header.cpu,
            reason: self.reason(raw.key.reason),
            location: self.location(raw.key.location),
            packet: tuple(&raw.key.tuple, "packet")?,
            conntrack,
            netns: raw.netns,
            ifindex: raw.ifindex,
            ingress_ifindex: raw.ingress_ifindex,
            place: self.place(raw.netns, raw.ifindex, raw.ingress_ifindex),
            len: raw.len,
            tcp_flags: TcpFlags(raw.tcp_flags),
        };
        Ok((record, raw.key))
    }

    /// Decodes the counters of `slot`, whose latest drop a sweep dated at
    /// monotonic `last_ns`.
    pub fn sample(
        &self,
        slot: u32,
        counters: &abi::FlowCounters,
        last_ns: u64,
        ended: bool,
    ) -> FlowSample {
        FlowSample {
            slot,
            packets: counters.packets,
            bytes: counters.bytes,
            first: self.clock.wall(counters.first_ns),
            last: self.clock.wall(last_ns),
            tcp_flags: TcpFlags(counters.tcp_flags as u8),
            ended,
        }
    }

    /// Decodes an overflow bucket's counters summed over CPUs, with the key
    /// of its first drop.
    pub fn overflow(
        &mut self,
        bucket: u32,
        summed: &abi::OverflowBucket,
        ended: bool,
    ) -> Result<OverflowSample, Error> {
        Ok(OverflowSample {
            bucket,
            reason: self.reason(summed.key.reason),
            location: self.location(summed.key.location),
            packet: tuple(&summed.key.tuple, "overflow")?,
            packets: summed.packets,
            bytes: summed.bytes,
            folded: summed.folded,
            first: self.clock.wall(summed.first_ns),
            last: self.clock.wall(summed.last_ns),
            tcp_flags: TcpFlags(summed.tcp_flags as u8),
            ended,
        })
    }

    /// The named drop reason for a kernel number.
    pub fn reason(&self, code: u32) -> DropReason {
        DropReason {
            code,
            name: self.reasons.name(code),
        }
    }

    /// The clock converting kernel times.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn location(&mut self, address: u64) -> KernelLocation {
        KernelLocation {
            address,
            symbol: self.symbols.resolve(address),
        }
    }
}

/// The counter slot and kernel key of a drop record that could not be
/// decoded otherwise, so that its slot is still retired.
pub fn claimed_slot(bytes: &[u8]) -> Option<(u32, abi::FlowKey)> {
    if bytes.len() < std::mem::size_of::<abi::DropRecord>() {
        return None;
    }
    // SAFETY: length checked above; DropRecord is plain integers.
    let raw: abi::DropRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    (raw.header.kind == abi::KIND_DROP && raw.slot != abi::SLOT_NONE).then_some((raw.slot, raw.key))
}

/// A wire tuple as a model tuple.
pub fn tuple(raw: &abi::Tuple, field: &'static str) -> Result<Tuple, Error> {
    let (src, dst) = match raw.family {
        abi::FAMILY_IPV4 => (ipv4(&raw.src_addr), ipv4(&raw.dst_addr)),
        abi::FAMILY_IPV6 => (
            IpAddr::V6(Ipv6Addr::from(raw.src_addr)),
            IpAddr::V6(Ipv6Addr::from(raw.dst_addr)),
        ),
        family => return Err(Error::BadFamily { field, family }),
    };
    Ok(Tuple {
        src: Endpoint {
            ip: src,
            port: raw.src_port,
        },
        dst: Endpoint {
            ip: dst,
            port: raw.dst_port,
        },
        protocol: Protocol::from_number(raw.protocol),
    })
}

fn ipv4(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
}

#[cfg(test)]
mod tests;
