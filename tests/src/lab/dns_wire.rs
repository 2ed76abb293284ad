//! DNS messages on the wire for traffic helpers: a standard query, and a
//! server's NOERROR answer with one A record. Names are the caller's own
//! (labels of 1 to 63 bytes).

use std::net::Ipv4Addr;

/// A standard query for `name`/A with `id`, recursion desired.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    message.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    message.extend_from_slice(&[0; 6]); // AN, NS, AR
    for label in name.trim_end_matches('.').split('.') {
        message.push(label.len().min(63) as u8);
        message.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    message.push(0);
    message.extend_from_slice(&1u16.to_be_bytes()); // A
    message.extend_from_slice(&1u16.to_be_bytes()); // IN
    message
}

/// NOERROR with one A record, `address`, for `query`; `None` when it is
/// not a query with a readable question.
pub fn answer_a(query: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let end = question_end(query)?;
    let mut answer = Vec::with_capacity(end + 16);
    answer.extend_from_slice(&query[..2]);
    answer.extend_from_slice(&0x8180u16.to_be_bytes()); // QR, RD, RA, NOERROR
    answer.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    answer.extend_from_slice(&1u16.to_be_bytes()); // ANCOUNT
    answer.extend_from_slice(&[0; 4]);
    answer.extend_from_slice(&query[12..end]);
    answer.extend_from_slice(&0xc00cu16.to_be_bytes()); // the question's name
    answer.extend_from_slice(&1u16.to_be_bytes()); // A
    answer.extend_from_slice(&1u16.to_be_bytes()); // IN
    answer.extend_from_slice(&30u32.to_be_bytes()); // TTL
    answer.extend_from_slice(&4u16.to_be_bytes());
    answer.extend_from_slice(&address.octets());
    Some(answer)
}

/// The end of the question of `message` (header + one question).
fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let length = usize::from(*message.get(at)?);
        at += 1;
        if length == 0 {
            break;
        }
        if length > 63 {
            return None;
        }
        at += length;
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}
