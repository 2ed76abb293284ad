//! Connect and DNS records from the socket ring buffer → typed
//! [`ConnectSeen`] / [`DnsSeen`]: times on the wall clock, interfaces named,
//! DNS payloads read (see [`super::dns`]).

use std::net::IpAddr;

use dropscope_abi as abi;

use super::{Clock, Error, dns, interfaces::InterfaceNames, ipv4, read_record, tuple};
use crate::model::{ConnectOutcome, ConnectSeen, DnsSeen, Endpoint, Interface, Process, Protocol};

/// What a socket-ring record decodes to.
#[derive(Debug)]
pub enum SocketRecord {
    /// A connect the kernel decided.
    Connect(ConnectSeen),
    /// A DNS message.
    Dns(DnsSeen),
}

/// Why a socket-ring record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The record itself is malformed.
    #[error(transparent)]
    Record(#[from] Error),
    /// The DNS payload is not a readable DNS message.
    #[error("DNS message on ifindex {ifindex}: {source}")]
    Dns {
        /// The interface it was seen on.
        ifindex: u32,
        /// Why.
        source: dns::Error,
        /// True when it came over UDP (a TCP segment in the middle of a
        /// stream is no message of its own).
        udp: bool,
    },
}

/// Decodes socket-ring records.
pub struct SocketDecoder {
    clock: Clock,
    names: InterfaceNames,
}

impl SocketDecoder {
    /// A decoder with this clock.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            names: InterfaceNames::default(),
        }
    }

    /// Decodes one record by its kind.
    pub fn record(&mut self, bytes: &[u8]) -> Result<SocketRecord, SocketError> {
        match super::record_kind(bytes) {
            Some(abi::KIND_CONNECT) => Ok(SocketRecord::Connect(self.connect(bytes)?)),
            Some(abi::KIND_DNS) => Ok(SocketRecord::Dns(self.dns(bytes)?)),
            Some(kind) => Err(Error::UnknownKind {
                kind,
                len: bytes.len(),
            }
            .into()),
            None => Err(Error::TooShort {
                kind: "record header",
                len: 0,
                expected: std::mem::size_of::<abi::RecordHeader>(),
            }
            .into()),
        }
    }

    /// A connect record.
    pub fn connect(&mut self, bytes: &[u8]) -> Result<ConnectSeen, Error> {
        let raw: abi::ConnectRecord = read_record(bytes, abi::KIND_CONNECT, "connect")?;
        let pending = &raw.pending;
        let socket_error = raw.sk_err as i32;
        let outcome = match (raw.outcome, socket_error) {
            (abi::CONNECT_ESTABLISHED, _) => Some(ConnectOutcome::Established),
            (_, 0) => None,
            (_, libc::ETIMEDOUT) => Some(ConnectOutcome::TimedOut),
            (_, libc::ECONNREFUSED) => Some(ConnectOutcome::Refused),
            _ => Some(ConnectOutcome::Unreachable),
        };
        let asked = match pending.asked.family {
            abi::FAMILY_IPV4 => Some(Endpoint {
                ip: ipv4(&pending.asked.addr),
                port: pending.asked.port,
            }),
            abi::FAMILY_IPV6 => Some(Endpoint {
                ip: IpAddr::from(pending.asked.addr),
                port: pending.asked.port,
            }),
            _ => None,
        };
        let comm_len = pending
            .comm
            .iter()
            .position(|byte| *byte == 0)
            .unwrap_or(pending.comm.len());
        Ok(ConnectSeen {
            outcome,
            socket_error,
            started: self.clock.wall(pending.start_ns),
            ended: self.clock.wall(raw.end_ns),
            flow: tuple(&pending.tuple, "connect")?,
            asked,
            process: Process {
                pid: pending.pid,
                comm: String::from_utf8_lossy(&pending.comm[..comm_len]).into_owned(),
                cgroup_id: pending.cgroup_id,
                cgroup_path: None,
                owner: None,
            },
            netns: pending.netns,
            retransmits: pending.retransmits,
            left: (pending.left_ifindex != 0).then(|| self.interface(pending.left_ifindex)),
            syns_left: pending.syns_left,
        })
    }

    /// A DNS record, its payload read.
    pub fn dns(&mut self, bytes: &[u8]) -> Result<DnsSeen, SocketError> {
        let raw: abi::DnsRecord = read_record(bytes, abi::KIND_DNS, "dns")?;
        let tuple = tuple(&raw.tuple, "dns")?;
        let captured = usize::from(raw.captured).min(raw.payload.len());
        let udp = tuple.protocol == Protocol::Udp;
        let transport = if udp {
            dns::Transport::Udp
        } else {
            dns::Transport::Tcp
        };
        let message =
            dns::parse(&raw.payload[..captured], transport).map_err(|source| SocketError::Dns {
                ifindex: raw.ifindex,
                source,
                udp,
            })?;
        Ok(DnsSeen {
            time: self.clock.wall(raw.time_ns),
            interface: self.interface(raw.ifindex),
            egress: raw.direction == abi::DIRECTION_EGRESS,
            tuple,
            message,
        })
    }

    /// An interface of this network namespace by index, named (cached).
    fn interface(&mut self, ifindex: u32) -> Interface {
        self.names.interface(ifindex)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bytes<T: aya::Pod>(record: &T) -> Vec<u8> {
        // SAFETY: `T: Pod` is plain integers with explicit padding.
        unsafe {
            std::slice::from_raw_parts((record as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn header(kind: u8, len: usize) -> abi::RecordHeader {
        abi::RecordHeader {
            kind,
            version: abi::RECORD_VERSION,
            len: len as u16,
            cpu: 0,
        }
    }

    fn connect_record(outcome: u8, sk_err: u32) -> abi::ConnectRecord {
        let mut record = abi::ConnectRecord {
            header: header(abi::KIND_CONNECT, std::mem::size_of::<abi::ConnectRecord>()),
            outcome,
            sk_err,
            end_ns: 7_000_000_000,
            ..Default::default()
        };
        let pending = &mut record.pending;
        pending.start_ns = 1_000_000_000;
        pending.tuple.family = abi::FAMILY_IPV4;
        pending.tuple.protocol = abi::proto::TCP;
        pending.tuple.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        pending.tuple.dst_addr[..4].copy_from_slice(&[10, 96, 0, 10]);
        pending.tuple.src_port = 40000;
        pending.tuple.dst_port = 80;
        pending.asked.family = abi::FAMILY_IPV4;
        pending.asked.addr[..4].copy_from_slice(&[10, 96, 0, 10]);
        pending.asked.port = 80;
        pending.comm[..4].copy_from_slice(b"curl");
        pending.pid = 42;
        pending.cgroup_id = 9;
        pending.retransmits = 2;
        record
    }

    fn decoder() -> SocketDecoder {
        SocketDecoder::new(Clock::with_boot(std::time::SystemTime::UNIX_EPOCH))
    }

    #[test]
    fn a_closed_connect_says_why_by_its_socket_error() {
        let cases = [
            (abi::CONNECT_CLOSED, 110, Some(ConnectOutcome::TimedOut)),
            (abi::CONNECT_CLOSED, 111, Some(ConnectOutcome::Refused)),
            (abi::CONNECT_CLOSED, 113, Some(ConnectOutcome::Unreachable)),
            (abi::CONNECT_CLOSED, 0, None),
            (
                abi::CONNECT_ESTABLISHED,
                0,
                Some(ConnectOutcome::Established),
            ),
        ];
        for (outcome, sk_err, expected) in cases {
            let seen = decoder()
                .connect(&bytes(&connect_record(outcome, sk_err)))
                .expect("decodes");
            assert_eq!(seen.outcome, expected, "sk_err {sk_err}");
        }
    }

    #[test]
    fn a_connect_record_carries_its_flow_process_and_times() {
        let seen = decoder()
            .connect(&bytes(&connect_record(abi::CONNECT_CLOSED, 110)))
            .expect("decodes");
        assert_eq!(seen.flow.to_string(), "10.0.0.1:40000 -> 10.96.0.10:80 TCP");
        assert_eq!(
            seen.asked.map(|asked| asked.to_string()).as_deref(),
            Some("10.96.0.10:80")
        );
        assert_eq!((seen.process.pid, seen.process.comm.as_str()), (42, "curl"));
        assert_eq!(seen.process.cgroup_id, 9);
        assert_eq!(seen.retransmits, 2);
        assert_eq!(
            seen.ended.duration_since(seen.started).ok(),
            Some(std::time::Duration::from_secs(6))
        );
        assert!(seen.left.is_none());
    }

    #[test]
    fn short_and_unknown_records_are_named() {
        let record = bytes(&connect_record(abi::CONNECT_CLOSED, 110));
        assert!(matches!(
            decoder().record(&record[..20]),
            Err(SocketError::Record(Error::TooShort {
                kind: "connect",
                ..
            }))
        ));
        let mut unknown = record.clone();
        unknown[0] = 99;
        assert!(matches!(
            decoder().record(&unknown),
            Err(SocketError::Record(Error::UnknownKind { kind: 99, .. }))
        ));
    }

    fn dns_record(payload: &[u8]) -> abi::DnsRecord {
        let mut record = abi::DnsRecord {
            header: header(abi::KIND_DNS, std::mem::size_of::<abi::DnsRecord>()),
            time_ns: 1,
            ifindex: 1,
            direction: abi::DIRECTION_INGRESS,
            payload_len: payload.len() as u16,
            captured: payload.len() as u16,
            ..Default::default()
        };
        record.tuple.family = abi::FAMILY_IPV4;
        record.tuple.protocol = abi::proto::UDP;
        record.tuple.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        record.tuple.dst_addr[..4].copy_from_slice(&[10, 96, 0, 10]);
        record.tuple.src_port = 53000;
        record.tuple.dst_port = 53;
        record.payload[..payload.len()].copy_from_slice(payload);
        record
    }

    #[test]
    fn a_dns_record_reads_its_question() {
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(b"\x03api\x04shop\x00\x00\x1c\x00\x01");
        let seen = decoder().dns(&bytes(&dns_record(&query))).expect("decodes");
        assert!(!seen.egress);
        assert_eq!(seen.message.id, 0x1234);
        let question = seen.message.question.expect("a question");
        assert_eq!((question.name.as_str(), question.qtype), ("api.shop", 28));
        assert_eq!(seen.interface.ifindex, 1);
        assert_eq!(
            seen.interface.name.as_deref(),
            Some("lo"),
            "ifindex 1 is loopback"
        );
    }

    #[test]
    fn an_unreadable_udp_dns_payload_is_an_error_to_count() {
        let seen = decoder().dns(&bytes(&dns_record(&[1, 2, 3])));
        assert!(matches!(seen, Err(SocketError::Dns { udp: true, .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A connect record with any outcome, socket error, process name
        /// and tuple family decodes to them (the outcome by the socket
        /// error, the name up to its first NUL) or names the bad family.
        #[test]
        fn a_connect_record_decodes_to_the_fields_it_holds(
            outcome in any::<u8>(),
            sk_err in prop_oneof![Just(0), Just(110), Just(111), any::<u32>()],
            comm in any::<[u8; 16]>(),
            family in prop_oneof![Just(abi::FAMILY_IPV4), Just(abi::FAMILY_IPV6), any::<u8>()],
            asked_family in any::<u8>(),
        ) {
            let mut raw = connect_record(outcome, sk_err);
            raw.pending.comm = comm;
            raw.pending.tuple.family = family;
            raw.pending.asked.family = asked_family;
            let seen = decoder().connect(&bytes(&raw));
            if !matches!(family, abi::FAMILY_IPV4 | abi::FAMILY_IPV6) {
                prop_assert_eq!(
                    seen.map(|_| ()),
                    Err(Error::BadFamily { field: "connect", family })
                );
                return Ok(());
            }
            let seen = seen.expect("a well-formed connect record decodes");
            let expected = match (outcome, sk_err as i32) {
                (abi::CONNECT_ESTABLISHED, _) => Some(ConnectOutcome::Established),
                (_, 0) => None,
                (_, libc::ETIMEDOUT) => Some(ConnectOutcome::TimedOut),
                (_, libc::ECONNREFUSED) => Some(ConnectOutcome::Refused),
                _ => Some(ConnectOutcome::Unreachable),
            };
            prop_assert_eq!(seen.outcome, expected);
            let name = comm.split(|byte| *byte == 0).next().unwrap_or_default();
            prop_assert_eq!(seen.process.comm, String::from_utf8_lossy(name));
            prop_assert_eq!(
                seen.asked.is_some(),
                matches!(asked_family, abi::FAMILY_IPV4 | abi::FAMILY_IPV6)
            );
        }

        /// A DNS record whose captured length claims anything, over UDP or
        /// TCP, reads its payload (at most the capture buffer) or fails
        /// naming the interface, never a panic.
        #[test]
        fn a_dns_record_with_any_payload_and_length_reads_or_fails(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            captured in any::<u16>(),
            protocol in prop_oneof![Just(abi::proto::UDP), Just(abi::proto::TCP)],
        ) {
            let mut raw = dns_record(&payload);
            raw.captured = captured;
            raw.tuple.protocol = protocol;
            match decoder().dns(&bytes(&raw)) {
                Ok(seen) => prop_assert_eq!(seen.interface.ifindex, 1),
                Err(SocketError::Dns { ifindex, udp, .. }) => {
                    prop_assert_eq!(ifindex, 1);
                    prop_assert_eq!(udp, protocol == abi::proto::UDP);
                }
                Err(other) => {
                    return Err(TestCaseError::fail(format!("not a DNS error: {other}")));
                }
            }
        }
    }
}
