//! Decoding tests: record bytes as the kernel writes them, typed records out.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use dropscope_abi as abi;
use proptest::prelude::*;

use super::*;
use crate::model::Protocol;

fn decoder() -> Decoder {
    Decoder::new(
        DropReasonNames::from_pairs([(12, "NETFILTER_DROP".to_owned())]),
        Symbols::from_pairs([(0xffff_0000, "nf_hook_slow")]),
        Clock::with_boot(SystemTime::UNIX_EPOCH),
    )
}

fn v4_tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, protocol: u8) -> abi::Tuple {
    let mut tuple = abi::Tuple {
        src_port: sport,
        dst_port: dport,
        family: abi::FAMILY_IPV4,
        protocol,
        ..Default::default()
    };
    tuple.src_addr[..4].copy_from_slice(&src);
    tuple.dst_addr[..4].copy_from_slice(&dst);
    tuple
}

fn dnat_record() -> abi::DropRecord {
    abi::DropRecord {
        header: abi::RecordHeader {
            kind: abi::KIND_DROP,
            version: abi::RECORD_VERSION,
            len: std::mem::size_of::<abi::DropRecord>() as u16,
            cpu: 1,
        },
        slot: 5,
        len: 60,
        time_ns: 2_000_000_000,
        key: abi::FlowKey {
            tuple: v4_tuple(
                [10, 244, 0, 10],
                40000,
                [10, 244, 0, 20],
                8080,
                abi::proto::TCP,
            ),
            reason: 12,
            _pad: 0,
            location: 0xffff_0010,
            device: 0xffff_8880_0000_1000,
        },
        ifindex: 3,
        ingress_ifindex: 4,
        tcp_flags: 0x02,
        ct_info: abi::CT_PRESENT | 2,
        _pad: [0; 2],
        netns: 4026531840,
        ct_original: v4_tuple(
            [10, 244, 0, 10],
            40000,
            [10, 96, 0, 50],
            80,
            abi::proto::TCP,
        ),
        ct_reply: v4_tuple(
            [10, 244, 0, 20],
            8080,
            [10, 244, 0, 10],
            40000,
            abi::proto::TCP,
        ),
    }
}

fn bytes_of(record: &abi::DropRecord) -> Vec<u8> {
    // SAFETY: DropRecord is plain integers with explicit padding.
    unsafe {
        std::slice::from_raw_parts(
            (record as *const abi::DropRecord).cast::<u8>(),
            std::mem::size_of::<abi::DropRecord>(),
        )
    }
    .to_vec()
}

#[test]
fn a_dnat_drop_decodes_with_both_tuples_and_names() {
    let (record, key) = decoder()
        .drop_record(&bytes_of(&dnat_record()))
        .expect("decodes");
    assert_eq!(key, dnat_record().key);
    assert_eq!(record.slot, 5);
    assert_eq!(record.reason.to_string(), "NETFILTER_DROP");
    assert_eq!(record.location.symbol.as_deref(), Some("nf_hook_slow+0x10"));
    assert_eq!(record.time, SystemTime::UNIX_EPOCH + Duration::from_secs(2));
    assert_eq!(
        record.packet.to_string(),
        "10.244.0.10:40000 -> 10.244.0.20:8080 TCP"
    );
    assert!(record.tcp_flags.is_connect());
    let ct = record.conntrack.expect("conntrack present");
    assert_eq!(ct.original.dst.ip, IpAddr::V4(Ipv4Addr::new(10, 96, 0, 50)));
    assert_eq!(ct.original.dst.port, 80);
    assert!(ct.is_dnat() && !ct.is_snat());
    assert_eq!(ct.translated(), record.packet);
}

#[test]
fn unknown_reasons_keep_their_number() {
    let mut raw = dnat_record();
    raw.key.reason = 999;
    raw.ct_info = 0;
    let (record, _) = decoder().drop_record(&bytes_of(&raw)).expect("decodes");
    assert_eq!(record.reason.to_string(), "UNKNOWN_999");
    assert_eq!(record.conntrack, None);
    raw.slot = abi::SLOT_NONE;
    assert_eq!(
        decoder().drop_record(&bytes_of(&raw)).map(|_| ()),
        Err(Error::NoSlot),
        "drops beyond the flow table travel in overflow buckets, not records"
    );
}

#[test]
fn ipv6_and_icmp_tuples_decode() {
    let mut raw = dnat_record();
    raw.key.tuple = abi::Tuple {
        src_addr: Ipv6Addr::LOCALHOST.octets(),
        dst_addr: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets(),
        src_port: 7,
        dst_port: 128 << 8,
        family: abi::FAMILY_IPV6,
        protocol: abi::proto::ICMPV6,
        _pad: [0; 2],
    };
    let (record, _) = decoder().drop_record(&bytes_of(&raw)).expect("decodes");
    assert_eq!(record.packet.protocol, Protocol::Icmpv6);
    assert_eq!(record.packet.icmp(), Some((128, 0)));
    assert_eq!(
        record.packet.to_string(),
        "::1 -> fd00::2 ICMPv6 type 128 code 0"
    );
}

#[test]
fn short_and_unknown_records_are_rejected_naming_the_problem() {
    let bytes = bytes_of(&dnat_record());
    assert_eq!(
        decoder()
            .drop_record(&bytes[..4])
            .expect_err("short header"),
        Error::TooShort {
            kind: "record header",
            len: 4,
            expected: 8
        }
    );
    assert_eq!(
        decoder()
            .drop_record(&bytes[..100])
            .expect_err("short drop"),
        Error::TooShort {
            kind: "drop",
            len: 100,
            expected: bytes.len()
        }
    );
    let mut unknown = bytes.clone();
    unknown[0] = 77;
    assert_eq!(
        decoder().drop_record(&unknown).expect_err("unknown kind"),
        Error::UnknownKind {
            kind: 77,
            len: bytes.len()
        }
    );
    let mut future = bytes.clone();
    future[1] = 9;
    assert!(matches!(
        decoder().drop_record(&future),
        Err(Error::UnsupportedVersion { version: 9, .. })
    ));
    let mut bad_family = dnat_record();
    bad_family.key.tuple.family = 3;
    assert_eq!(
        decoder()
            .drop_record(&bytes_of(&bad_family))
            .expect_err("bad family"),
        Error::BadFamily {
            field: "packet",
            family: 3
        }
    );
}

#[test]
fn samples_convert_kernel_times() {
    let counters = abi::FlowCounters {
        packets: 4,
        bytes: 240,
        first_ns: 1_000,
        tcp_flags: 0x12,
    };
    let sample = decoder().sample(5, &counters, 3_000_000_000, true);
    assert_eq!(sample.packets, 4);
    assert_eq!(sample.last, SystemTime::UNIX_EPOCH + Duration::from_secs(3));
    assert!(sample.ended);
    assert_eq!(sample.tcp_flags.to_string(), "SYN|ACK");
}

#[test]
fn a_conntrack_template_without_tuples_keeps_the_drop() {
    let mut raw = dnat_record();
    raw.ct_original.family = 0;
    raw.ct_reply.family = 0;
    let (record, _) = decoder()
        .drop_record(&bytes_of(&raw))
        .expect("the drop survives");
    assert_eq!(record.conntrack, None);
    assert_eq!(record.slot, 5);
}

#[test]
fn an_undecodable_record_still_names_the_slot_it_claims() {
    let mut raw = dnat_record();
    raw.key.tuple.family = 3;
    let bytes = bytes_of(&raw);
    assert!(decoder().drop_record(&bytes).is_err());
    assert_eq!(claimed_slot(&bytes), Some((5, raw.key)));
    assert_eq!(claimed_slot(&bytes[..10]), None);
}

/// Cases per property: enough to reach every branch of the decoder, few
/// enough to keep the unit tests fast.
const CASES: u32 = 512;

/// A wire tuple with any addresses, ports and protocol, and a family that is
/// IPv4, IPv6 or anything else.
fn any_tuple() -> impl Strategy<Value = abi::Tuple> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        prop_oneof![Just(abi::FAMILY_IPV4), Just(abi::FAMILY_IPV6), any::<u8>()],
        any::<u8>(),
    )
        .prop_map(
            |(src_addr, dst_addr, src_port, dst_port, family, protocol)| abi::Tuple {
                src_addr,
                dst_addr,
                src_port,
                dst_port,
                family,
                protocol,
                _pad: [0; 2],
            },
        )
}

/// A drop record with a valid header and any fields.
fn any_drop_record() -> impl Strategy<Value = abi::DropRecord> {
    (
        (any_tuple(), any_tuple(), any_tuple()),
        prop_oneof![Just(abi::SLOT_NONE), any::<u32>()],
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u8>(),
    )
        .prop_map(
            |((packet, original, reply), slot, time_ns, reason, location, ct_info)| {
                let mut record = dnat_record();
                record.key.tuple = packet;
                record.ct_original = original;
                record.ct_reply = reply;
                record.slot = slot;
                record.time_ns = time_ns;
                record.key.reason = reason;
                record.key.location = location;
                record.ct_info = ct_info;
                record
            },
        )
}

/// True when a wire tuple's family is one the decoder reads.
fn known_family(tuple: &abi::Tuple) -> bool {
    matches!(tuple.family, abi::FAMILY_IPV4 | abi::FAMILY_IPV6)
}

/// The addresses a wire tuple decodes to: the first four bytes for IPv4,
/// all sixteen for IPv6.
fn addresses(tuple: &abi::Tuple) -> (IpAddr, IpAddr) {
    let v4 = |bytes: &[u8; 16]| IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if tuple.family == abi::FAMILY_IPV4 {
        (v4(&tuple.src_addr), v4(&tuple.dst_addr))
    } else {
        (IpAddr::from(tuple.src_addr), IpAddr::from(tuple.dst_addr))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any bytes: a record or the error that names the first check they
    /// fail (header length, kind, version, record length), never a panic.
    #[test]
    fn any_bytes_decode_or_name_the_first_check_they_fail(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..=std::mem::size_of::<abi::DropRecord>() + 8),
            any::<u8>().prop_map(|version| {
                let mut bytes = bytes_of(&dnat_record());
                bytes[1] = version;
                bytes
            }),
        ],
    ) {
        let size = std::mem::size_of::<abi::DropRecord>();
        let result = decoder().drop_record(&bytes);
        let claimed = claimed_slot(&bytes);
        match &result {
            Ok((record, key)) => prop_assert_eq!(claimed, Some((record.slot, *key))),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        let expected = if bytes.len() < 8 {
            Some(Error::TooShort { kind: "record header", len: bytes.len(), expected: 8 })
        } else if bytes[0] != abi::KIND_DROP {
            Some(Error::UnknownKind { kind: bytes[0], len: bytes.len() })
        } else if bytes[1] != abi::RECORD_VERSION {
            Some(Error::UnsupportedVersion {
                kind: bytes[0],
                version: bytes[1],
                supported: abi::RECORD_VERSION,
            })
        } else if bytes.len() < size {
            Some(Error::TooShort { kind: "drop", len: bytes.len(), expected: size })
        } else {
            None
        };
        if let Some(expected) = expected {
            prop_assert_eq!(result.map(|_| ()), Err(expected));
        }
    }

    /// A well-formed record with any field values decodes to what it holds:
    /// the drop unless it claims no slot (checked first) or its packet's
    /// family is unknown, the conntrack entry only when present and both
    /// its tuples read.
    #[test]
    fn a_record_decodes_to_the_fields_it_holds(raw in any_drop_record()) {
        let result = decoder().drop_record(&bytes_of(&raw));
        if raw.slot == abi::SLOT_NONE {
            prop_assert_eq!(result.map(|_| ()), Err(Error::NoSlot));
            return Ok(());
        }
        if !known_family(&raw.key.tuple) {
            prop_assert_eq!(
                result.map(|_| ()),
                Err(Error::BadFamily { field: "packet", family: raw.key.tuple.family })
            );
            return Ok(());
        }
        let (record, key) = result.expect("a well-formed record decodes");
        prop_assert_eq!(key, raw.key);
        prop_assert_eq!(record.slot, raw.slot);
        prop_assert_eq!(record.reason.code, raw.key.reason);
        prop_assert_eq!(record.location.address, raw.key.location);
        prop_assert_eq!(record.time, SystemTime::UNIX_EPOCH + Duration::from_nanos(raw.time_ns));
        let (src, dst) = addresses(&raw.key.tuple);
        prop_assert_eq!((record.packet.src.ip, record.packet.dst.ip), (src, dst));
        prop_assert_eq!(
            (record.packet.src.port, record.packet.dst.port),
            (raw.key.tuple.src_port, raw.key.tuple.dst_port)
        );
        let conntrack = raw.ct_info & abi::CT_PRESENT != 0
            && known_family(&raw.ct_original)
            && known_family(&raw.ct_reply);
        prop_assert_eq!(record.conntrack.is_some(), conntrack);
        if let Some(ct) = record.conntrack {
            prop_assert_eq!(ct.original.src.ip, addresses(&raw.ct_original).0);
            prop_assert_eq!(ct.reply.dst.ip, addresses(&raw.ct_reply).1);
        }
    }

    /// A record cut short or with bytes overwritten decodes or fails, never
    /// panics; one that decodes names the slot it claims. The same bytes
    /// labelled as socket records (connect, DNS) fail or decode as well.
    #[test]
    fn mutated_and_cut_records_decode_or_fail_never_panic(
        raw in any_drop_record(),
        writes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        kind in prop_oneof![Just(abi::KIND_CONNECT), Just(abi::KIND_DNS)],
    ) {
        let mut bytes = bytes_of(&raw);
        for (at, byte) in writes {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        for bytes in [&bytes[..], &bytes[..cut.index(bytes.len())]] {
            if let Ok((record, key)) = decoder().drop_record(bytes) {
                prop_assert_eq!(claimed_slot(bytes), Some((record.slot, key)));
            }
            let mut socket = super::socket::SocketDecoder::new(Clock::with_boot(SystemTime::UNIX_EPOCH));
            let _ = socket.record(bytes);
            let mut relabelled = bytes.to_vec();
            if let Some(first) = relabelled.first_mut() {
                *first = kind;
            }
            let _ = socket.record(&relabelled);
        }
    }
}
