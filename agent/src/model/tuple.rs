//! Addresses, ports and protocols.

use std::{fmt, net::IpAddr};

/// An IP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
    /// ICMP (IPv4).
    Icmp,
    /// ICMPv6.
    Icmpv6,
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Protocol {
    /// The protocol of an IP protocol number.
    pub fn from_number(number: u8) -> Self {
        match number {
            6 => Self::Tcp,
            17 => Self::Udp,
            132 => Self::Sctp,
            1 => Self::Icmp,
            58 => Self::Icmpv6,
            other => Self::Other(other),
        }
    }

    /// True for protocols whose tuple carries ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Sctp)
    }

    /// True for ICMP and ICMPv6.
    pub fn is_icmp(self) -> bool {
        matches!(self, Self::Icmp | Self::Icmpv6)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp => f.write_str("TCP"),
            Self::Udp => f.write_str("UDP"),
            Self::Sctp => f.write_str("SCTP"),
            Self::Icmp => f.write_str("ICMP"),
            Self::Icmpv6 => f.write_str("ICMPv6"),
            Self::Other(number) => write!(f, "IP-PROTO-{number}"),
        }
    }
}

/// One side of a tuple: an address and a port (0 when the protocol has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The IP address.
    pub ip: IpAddr,
    /// The port (for ICMP: the echo identifier of the source, or
    /// `type << 8 | code` of the destination; see [`Tuple::icmp`]).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// A directed 5-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Where the packet came from.
    pub src: Endpoint,
    /// Where it was going.
    pub dst: Endpoint,
    /// Its IP protocol.
    pub protocol: Protocol,
}

impl Tuple {
    /// ICMP type and code, for ICMP tuples.
    pub fn icmp(&self) -> Option<(u8, u8)> {
        let [kind, code] = self.dst.port.to_be_bytes();
        self.protocol.is_icmp().then_some((kind, code))
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((kind, code)) = self.icmp() {
            return write!(
                f,
                "{} -> {} {} type {kind} code {code}",
                self.src.ip, self.dst.ip, self.protocol
            );
        }
        if self.protocol.has_ports() {
            write!(f, "{} -> {} {}", self.src, self.dst, self.protocol)
        } else {
            write!(f, "{} -> {} {}", self.src.ip, self.dst.ip, self.protocol)
        }
    }
}
