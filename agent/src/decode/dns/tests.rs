//! DNS reader tests: messages built byte by byte, one test per rule.
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const QTYPE_A: u16 = 1;
const QTYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// A header: id, flags, QDCOUNT, ANCOUNT, NSCOUNT 0, ARCOUNT 0.
fn header(id: u16, flags: u16, qdcount: u16, ancount: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(&flags.to_be_bytes());
    bytes.extend_from_slice(&qdcount.to_be_bytes());
    bytes.extend_from_slice(&ancount.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes
}

/// Appends a name as labels and the final zero.
fn push_name(bytes: &mut Vec<u8>, labels: &[&[u8]]) {
    for label in labels {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label);
    }
    bytes.push(0);
}

/// A message with one question and nothing after it.
fn with_question(id: u16, flags: u16, labels: &[&[u8]], qtype: u16) -> Vec<u8> {
    let mut bytes = header(id, flags, 1, 0);
    push_name(&mut bytes, labels);
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&CLASS_IN.to_be_bytes());
    bytes
}

/// Flags of a recursive query.
const QUERY: u16 = 0x0100;
/// Flags of a recursive response with `rcode`.
fn response(rcode: u16) -> u16 {
    0x8180 | rcode
}

/// The name of the first question of a message that must read.
fn question_name(message: &[u8]) -> String {
    parse(message, Transport::Udp)
        .expect("reads")
        .question
        .expect("has a question")
        .name
}

/// A response for `www.example.com` A with two answers whose names are
/// compressed: `C0 0C` (the question name) and `cdn` + `C0 10`
/// (`cdn.example.com`, pointing into the question). Returns the message
/// and the offsets of the two answer names.
fn compressed_response() -> (Vec<u8>, usize, usize) {
    let mut bytes = with_question(0xbeef, response(0), &[b"www", b"example", b"com"], QTYPE_A);
    let first = bytes.len();
    // www.example.com CNAME cdn.example.com
    bytes.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
    let second = bytes.len();
    bytes.extend_from_slice(&[3, b'c', b'd', b'n', 0xc0, 0x10]);
    // cdn.example.com A 192.0.2.1
    bytes.extend_from_slice(&[0xc0, second as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    bytes.extend_from_slice(&[192, 0, 2, 1]);
    bytes[7] = 2; // ANCOUNT
    (bytes, first, second)
}

#[test]
fn a_query_reads_header_and_question() {
    let message = with_question(0x1234, QUERY, &[b"www", b"example", b"com"], QTYPE_A);
    let read = parse(&message, Transport::Udp).expect("reads");
    assert_eq!(
        read,
        DnsMessage {
            id: 0x1234,
            response: false,
            opcode: 0,
            rcode: 0,
            truncated: false,
            question: Some(DnsQuestion {
                name: "www.example.com".into(),
                qtype: QTYPE_A,
                qclass: CLASS_IN,
            }),
        }
    );
    assert!(!read.is_error());
}

#[test]
fn aaaa_query_reads_qtype_28_and_keeps_case() {
    let message = with_question(7, QUERY, &[b"Api", b"Svc", b"cluster", b"local"], 28);
    let question = parse(&message, Transport::Udp)
        .expect("reads")
        .question
        .expect("has a question");
    assert_eq!(question.name, "Api.Svc.cluster.local");
    assert_eq!(question.qtype, QTYPE_AAAA);
}

#[test]
fn nxdomain_response_is_an_error() {
    let message = with_question(9, response(3), &[b"nope", b"example"], QTYPE_A);
    let read = parse(&message, Transport::Udp).expect("reads");
    assert!(read.response);
    assert_eq!(read.rcode, 3);
    assert!(read.is_error());
}

#[test]
fn servfail_response_is_an_error() {
    let message = with_question(9, response(2), &[b"example", b"com"], QTYPE_A);
    let read = parse(&message, Transport::Udp).expect("reads");
    assert_eq!(read.rcode, 2);
    assert!(read.is_error());
}

#[test]
fn refused_response_is_an_error() {
    let message = with_question(9, response(5), &[b"example", b"com"], QTYPE_A);
    let read = parse(&message, Transport::Udp).expect("reads");
    assert_eq!(read.rcode, 5);
    assert!(read.is_error());
}

#[test]
fn opcode_and_tc_bit_are_read() {
    // Opcode 4 (NOTIFY), TC set.
    let message = with_question(1, (4 << 11) | 0x0200, &[b"example"], 6);
    let read = parse(&message, Transport::Udp).expect("reads");
    assert_eq!(read.opcode, 4);
    assert!(read.truncated);
}

#[test]
fn compressed_names_in_a_response_point_back_to_earlier_names() {
    let (message, first, second) = compressed_response();
    assert_eq!(question_name(&message), "www.example.com");
    // The first question cannot be compressed (only the header precedes
    // it): compression is read by the same name reader for later names.
    assert_eq!(
        name(&message, first, "answer name"),
        Ok(("www.example.com".into(), first + 2))
    );
    assert_eq!(
        name(&message, second, "answer name"),
        Ok(("cdn.example.com".into(), second + 6))
    );
    // A pointer to a name that ends in a pointer.
    let third = second + 6;
    assert_eq!(message[third..third + 2], [0xc0, second as u8]);
    assert_eq!(
        name(&message, third, "answer name"),
        Ok(("cdn.example.com".into(), third + 2))
    );
}

#[test]
fn question_name_pointing_into_the_header_is_a_bad_pointer() {
    let mut message = header(1, QUERY, 1, 0);
    message.extend_from_slice(&[0xc0, 0x00, 0, 1, 0, 1]);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::BadPointer {
            offset: 12,
            target: 0
        })
    );
}

#[test]
fn tcp_length_prefix_is_skipped() {
    let message = with_question(0x4242, QUERY, &[b"example", b"org"], QTYPE_AAAA);
    let mut payload = (message.len() as u16).to_be_bytes().to_vec();
    payload.extend_from_slice(&message);
    assert_eq!(
        parse(&payload, Transport::Tcp),
        parse(&message, Transport::Udp)
    );
    assert_eq!(
        parse(&payload, Transport::Tcp)
            .expect("reads")
            .question
            .expect("has a question")
            .name,
        "example.org"
    );
}

#[test]
fn tcp_prefix_announcing_more_than_captured_reads_a_complete_question() {
    let (message, _, _) = compressed_response();
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&message);
    let read = parse(&payload, Transport::Tcp).expect("reads");
    assert_eq!(
        read.question.expect("has a question").name,
        "www.example.com"
    );
}

#[test]
fn tcp_prefix_bounds_the_message() {
    let message = with_question(1, QUERY, &[b"example", b"org"], QTYPE_A);
    // Announces two bytes less than the message: QCLASS is cut off,
    // though the next bytes were captured.
    let mut payload = (message.len() as u16 - 2).to_be_bytes().to_vec();
    payload.extend_from_slice(&message);
    payload.extend_from_slice(&[0, 0]);
    assert_eq!(
        parse(&payload, Transport::Tcp),
        Err(Error::Truncated {
            offset: message.len() - 2,
            field: "question class"
        })
    );
}

#[test]
fn question_cut_by_the_capture_is_truncated() {
    let message = with_question(1, QUERY, &[b"www", b"example", b"com"], QTYPE_A);
    let cut = |len: usize| parse(&message[..len], Transport::Udp);
    // Inside the first label: the label at 12 does not fit.
    assert_eq!(
        cut(14),
        Err(Error::Truncated {
            offset: 12,
            field: "question name"
        })
    );
    // Just before the final zero of the name.
    assert_eq!(
        cut(28),
        Err(Error::Truncated {
            offset: 28,
            field: "question name"
        })
    );
    // The name is whole, QTYPE is not.
    assert_eq!(
        cut(30),
        Err(Error::Truncated {
            offset: 29,
            field: "question type"
        })
    );
    assert_eq!(
        cut(32),
        Err(Error::Truncated {
            offset: 31,
            field: "question class"
        })
    );
    assert!(cut(33).is_ok());
    // A pointer whose second byte was not captured.
    let mut pointer = header(1, QUERY, 1, 0);
    pointer.push(0xc0);
    assert_eq!(
        parse(&pointer, Transport::Udp),
        Err(Error::Truncated {
            offset: 12,
            field: "question name"
        })
    );
}

#[test]
fn header_shorter_than_12_bytes_is_short() {
    let message = with_question(1, QUERY, &[b"example"], QTYPE_A);
    assert_eq!(
        parse(&message[..11], Transport::Udp),
        Err(Error::Short {
            what: "header",
            needed: 12,
            got: 11
        })
    );
    assert_eq!(
        parse(&[], Transport::Udp),
        Err(Error::Short {
            what: "header",
            needed: 12,
            got: 0
        })
    );
    assert_eq!(
        parse(&[0], Transport::Tcp),
        Err(Error::Short {
            what: "TCP length prefix",
            needed: 2,
            got: 1
        })
    );
    // A TCP prefix announcing fewer bytes than a header.
    let mut payload = vec![0, 5];
    payload.extend_from_slice(&message);
    assert_eq!(
        parse(&payload, Transport::Tcp),
        Err(Error::Short {
            what: "header",
            needed: 12,
            got: 5
        })
    );
}

#[test]
fn label_of_64_or_more_is_a_reserved_label_type() {
    // A 64-byte label's length byte is 0x40: type bits 01, not a length.
    let long = [b'a'; 64];
    let message = with_question(1, QUERY, &[&long, b"com"], QTYPE_A);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::ReservedLabelType {
            offset: 12,
            bits: 0b01
        })
    );
    let mut reserved = header(1, QUERY, 1, 0);
    reserved.extend_from_slice(&[3, b'w', b'w', b'w', 0x80, 0, 0, 1, 0, 1]);
    assert_eq!(
        parse(&reserved, Transport::Udp),
        Err(Error::ReservedLabelType {
            offset: 16,
            bits: 0b10
        })
    );
    // 63 is the longest label.
    let longest = [b'a'; 63];
    let message = with_question(1, QUERY, &[&longest], QTYPE_A);
    assert_eq!(question_name(&message).len(), 63);
}

#[test]
fn name_longer_than_255_bytes_is_too_long() {
    // Four 63-byte labels: 4 × 64 + 1 = 257 bytes.
    let label = [b'a'; 63];
    let message = with_question(1, QUERY, &[&label, &label, &label, &label], QTYPE_A);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::NameTooLong { offset: 12 })
    );
    // Three 63-byte labels and a 61-byte one: exactly 255 bytes.
    let last = [b'b'; 61];
    let message = with_question(1, QUERY, &[&label, &label, &label, &last], QTYPE_A);
    assert_eq!(question_name(&message).len(), 3 * 64 + 61);
    // One more byte is too long.
    let last = [b'b'; 62];
    let message = with_question(1, QUERY, &[&label, &label, &label, &last], QTYPE_A);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::NameTooLong { offset: 12 })
    );
}

#[test]
fn name_too_long_counts_labels_reached_through_pointers() {
    let (mut message, _, _) = compressed_response();
    let start = message.len();
    // 243 bytes of labels, then `www.example.com` (17 more) by pointer.
    for _ in 0..3 {
        message.push(63);
        message.extend_from_slice(&[b'a'; 63]);
    }
    message.push(50);
    message.extend_from_slice(&[b'a'; 50]);
    message.extend_from_slice(&[0xc0, 0x0c]);
    assert_eq!(
        name(&message, start, "answer name"),
        Err(Error::NameTooLong { offset: start })
    );
}

#[test]
fn forward_pointer_is_a_bad_pointer() {
    let mut message = header(1, QUERY, 1, 0);
    // Points to offset 20, past itself.
    message.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 20, 0, 1, 0, 1]);
    message.extend_from_slice(&[3, b'c', b'o', b'm', 0]);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::BadPointer {
            offset: 16,
            target: 20
        })
    );
    // Past the captured bytes.
    let mut message = header(1, QUERY, 1, 0);
    message.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::BadPointer {
            offset: 12,
            target: 0x3fff
        })
    );
}

#[test]
fn self_pointer_is_a_loop() {
    let mut message = header(1, QUERY, 1, 0);
    message.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::PointerLoop {
            offset: 12,
            target: 12
        })
    );
}

#[test]
fn pointer_back_into_its_own_name_is_a_loop() {
    let mut message = header(1, QUERY, 1, 0);
    message.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        parse(&message, Transport::Udp),
        Err(Error::PointerLoop {
            offset: 16,
            target: 12
        })
    );
    // Two names pointing at each other (a → b, b → a): one of the two
    // pointers points forwards.
    let mut message = header(1, QUERY, 1, 0);
    message.extend_from_slice(&[1, b'a', 0xc0, 16]); // 12: a, then → 16
    message.extend_from_slice(&[1, b'b', 0xc0, 12]); // 16: b, then → 12
    assert_eq!(
        name(&message, 16, "answer name"),
        Err(Error::BadPointer {
            offset: 14,
            target: 16
        })
    );
}

#[test]
fn odd_bytes_are_escaped_in_presentation_form() {
    let message = with_question(
        1,
        QUERY,
        &[
            b"a.b",
            b"_sip",
            b"*",
            b"x y\\",
            &[0, 0x7f, 0xff],
            b"Mixed-Case",
        ],
        33,
    );
    assert_eq!(
        question_name(&message),
        "a\\.b._sip.*.x\\032y\\092.\\000\\127\\255.Mixed-Case"
    );
}

#[test]
fn root_name_is_a_dot() {
    let message = with_question(1, QUERY, &[], 2);
    assert_eq!(question_name(&message), ".");
}

#[test]
fn qdcount_zero_has_no_question() {
    // Nothing after the header is read, even garbage.
    let mut message = header(0x0101, response(1), 0, 0);
    message.extend_from_slice(&[0xff, 0xff]);
    let read = parse(&message, Transport::Udp).expect("reads");
    assert_eq!(read.question, None);
    assert_eq!(read.id, 0x0101);
    assert_eq!(read.rcode, 1);
}

#[test]
fn errors_never_echo_payload_bytes() {
    let message = with_question(1, QUERY, &[b"secretname", b"example"], QTYPE_A);
    let errors = [
        parse(&message[..20], Transport::Udp),
        parse(&message[..5], Transport::Udp),
    ];
    for error in errors {
        let text = error.expect_err("fails").to_string();
        assert!(!text.contains("secret"), "{text}");
    }
}

#[test]
fn every_prefix_and_single_byte_mutation_returns_without_panicking() {
    let (message, _, _) = compressed_response();
    let mut tcp = (message.len() as u16).to_be_bytes().to_vec();
    tcp.extend_from_slice(&message);
    let started = Instant::now();
    let mut runs = 0;
    let mut check = |payload: &[u8], transport: Transport| {
        runs += 1;
        if let Ok(DnsMessage {
            question: Some(question),
            ..
        }) = parse(payload, transport)
        {
            // At most 255 wire bytes, each at most 4 characters.
            assert!(question.name.len() <= 4 * MAX_NAME_LEN);
        }
    };
    for (original, transport) in [(&message, Transport::Udp), (&tcp, Transport::Tcp)] {
        for len in 0..=original.len() {
            check(&original[..len], transport);
        }
        let mut mutated = original.clone();
        for index in 0..mutated.len() {
            for pattern in [0x01, 0x0c, 0x3f, 0x40, 0x80, 0xc0, 0xff] {
                mutated[index] ^= pattern;
                check(&mutated, transport);
                mutated[index] ^= pattern;
            }
        }
    }
    assert!(runs > 500);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// Cases per property.
const CASES: u32 = 512;

/// Labels of letters, digits, `-` and `_` (written as they read), 1 to 63
/// bytes each, at most 255 wire bytes in all.
fn plain_labels() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[A-Za-z0-9_-]{1,63}", 0..=4)
        .prop_filter("a name of at most 255 wire bytes", |labels| {
            labels.iter().map(|label| 1 + label.len()).sum::<usize>() < MAX_NAME_LEN
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A well-formed message reads back to what was written, over UDP and
    /// over TCP, whatever follows its question.
    #[test]
    fn a_written_message_reads_back(
        id in any::<u16>(),
        flags in any::<u16>(),
        labels in plain_labels(),
        qtype in any::<u16>(),
        qclass in any::<u16>(),
        trailer in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut message = header(id, flags, 1, 0);
        let wire: Vec<&[u8]> = labels.iter().map(|label| label.as_bytes()).collect();
        push_name(&mut message, &wire);
        message.extend_from_slice(&qtype.to_be_bytes());
        message.extend_from_slice(&qclass.to_be_bytes());
        let name = if labels.is_empty() { ".".to_owned() } else { labels.join(".") };
        let expected = DnsMessage {
            id,
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0x0f) as u8,
            rcode: (flags & 0x000f) as u8,
            truncated: flags & 0x0200 != 0,
            question: Some(DnsQuestion { name, qtype, qclass }),
        };
        let mut tcp = (message.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&message);
        message.extend_from_slice(&trailer);
        tcp.extend_from_slice(&trailer);
        prop_assert_eq!(parse(&message, Transport::Udp), Ok(expected.clone()));
        prop_assert_eq!(parse(&tcp, Transport::Tcp), Ok(expected));
    }

    /// Any payload reads or fails with an error naming offsets and fields,
    /// never a panic: a name read is at most 255 wire bytes, each shown in
    /// at most four characters, and a payload shorter than a header is
    /// `Short`.
    #[test]
    fn any_payload_reads_or_fails_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        tcp in any::<bool>(),
    ) {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        match parse(&payload, transport) {
            Ok(message) => {
                if let Some(question) = message.question {
                    prop_assert!(question.name.len() <= 4 * MAX_NAME_LEN);
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        if !tcp && payload.len() < HEADER_LEN {
            prop_assert_eq!(
                parse(&payload, transport),
                Err(Error::Short { what: "header", needed: HEADER_LEN, got: payload.len() })
            );
        }
    }
}
