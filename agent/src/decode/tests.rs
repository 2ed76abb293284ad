//! Decoding tests: record bytes as the kernel writes them, typed records out.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use dropscope_abi as abi;

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

/// A small deterministic generator (xorshift), so the mutation tests below
/// are reproducible without a property-testing crate.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `bytes` with a few bytes overwritten at random places.
    fn mutate(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut mutated = bytes.to_vec();
        let flips = 1 + self.next() % 8;
        for _ in 0..flips {
            let at = (self.next() % mutated.len() as u64) as usize;
            mutated[at] = self.next() as u8;
        }
        mutated
    }
}

#[test]
fn mutated_and_cut_records_decode_or_fail_never_panic() {
    let drop = bytes_of(&dnat_record());
    let mut generator = Mutator(0x9e37_79b9_7f4a_7c15);
    for length in 0..=drop.len() {
        let _ = decoder().drop_record(&drop[..length]);
        let _ = claimed_slot(&drop[..length]);
    }
    let mut decoded = 0;
    for _ in 0..20_000 {
        let mutated = generator.mutate(&drop);
        if decoder().drop_record(&mutated).is_ok() {
            decoded += 1;
        }
        let mut socket =
            super::socket::SocketDecoder::new(Clock::with_boot(std::time::SystemTime::UNIX_EPOCH));
        // Any bytes may arrive as a socket-ring record, whatever their kind.
        let _ = socket.record(&mutated);
        let mut relabelled = mutated.clone();
        relabelled[0] = if generator.next().is_multiple_of(2) {
            abi::KIND_CONNECT
        } else {
            abi::KIND_DNS
        };
        let _ = socket.record(&relabelled);
    }
    assert!(decoded > 0, "most mutations leave a decodable record");
}
