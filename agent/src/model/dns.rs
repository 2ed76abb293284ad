//! DNS messages as dropscope reads them: the header fields and the first
//! question of a query or an answer, as [`decode::dns`](crate::decode::dns)
//! reads them from captured payloads. Types and names only, no I/O.

/// The header and first question of one DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    /// The message ID that pairs a query with its answer.
    pub id: u16,
    /// True for a response (the QR bit), false for a query.
    pub response: bool,
    /// The kind of query (0 = QUERY, 4 = NOTIFY, 5 = UPDATE, …).
    pub opcode: u8,
    /// The response code of the header (4 bits; see [`rcode_name`]).
    pub rcode: u8,
    /// True when the sender truncated the message (the TC bit): the client
    /// is expected to retry over TCP.
    pub truncated: bool,
    /// The first question, when the message has one (QDCOUNT ≥ 1).
    pub question: Option<DnsQuestion>,
}

impl DnsMessage {
    /// True for a response whose response code is not NOERROR.
    pub fn is_error(&self) -> bool {
        self.response && self.rcode != RCODE_NOERROR
    }
}

/// One question: the name asked, its type and its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuestion {
    /// The name in presentation form, without the trailing dot (`"."` for
    /// the root). Case is kept; a byte outside `[A-Za-z0-9-_*]` is written
    /// `\DDD` (decimal), and a `.` inside a label is written `\.`.
    pub name: String,
    /// The query type number (1 = A, 28 = AAAA; see [`qtype_name`]).
    pub qtype: u16,
    /// The query class number (1 = IN).
    pub qclass: u16,
}

/// The response code of a successful answer.
const RCODE_NOERROR: u8 = 0;

/// The mnemonic of a query or record type number, for common types.
pub fn qtype_name(qtype: u16) -> Option<&'static str> {
    Some(match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return None,
    })
}

/// The mnemonic of a response code (RFC 1035, RFC 2136).
pub fn rcode_name(rcode: u8) -> Option<&'static str> {
    Some(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(response: bool, rcode: u8) -> DnsMessage {
        DnsMessage {
            id: 1,
            response,
            opcode: 0,
            rcode,
            truncated: false,
            question: None,
        }
    }

    #[test]
    fn only_responses_with_a_non_noerror_rcode_are_errors() {
        assert!(!message(true, 0).is_error());
        assert!(message(true, 3).is_error());
        assert!(message(true, 2).is_error());
        // A query's rcode field is not an answer.
        assert!(!message(false, 3).is_error());
    }

    #[test]
    fn common_types_and_rcodes_have_names() {
        assert_eq!(qtype_name(1), Some("A"));
        assert_eq!(qtype_name(28), Some("AAAA"));
        assert_eq!(qtype_name(65), Some("HTTPS"));
        assert_eq!(qtype_name(255), Some("ANY"));
        assert_eq!(qtype_name(0), None);
        assert_eq!(rcode_name(0), Some("NOERROR"));
        assert_eq!(rcode_name(3), Some("NXDOMAIN"));
        assert_eq!(rcode_name(10), Some("NOTZONE"));
        assert_eq!(rcode_name(11), None);
    }
}
