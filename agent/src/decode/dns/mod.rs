//! DNS wire format → [`model::dns`](crate::model::dns): reads the header and
//! the first question of a DNS message captured by the tc program.
//!
//! The kernel sends at most the first bytes of each message's payload, so a
//! message may be cut anywhere after its question: only the 12-byte header
//! and the first question are read, and nothing after them is looked at.
//! Offsets in errors count from the first byte of the DNS message (after the
//! two-byte length prefix of DNS over TCP), as compression pointers do.
//! Errors name offsets, lengths and fields, never the payload's bytes.

use crate::model::dns::{DnsMessage, DnsQuestion};

/// How the message was carried, which decides where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The payload is the message.
    Udp,
    /// The payload is the two-byte big-endian length prefix of DNS over TCP,
    /// then the message. The prefix may announce more bytes than were
    /// captured.
    Tcp,
}

/// A DNS message this reader cannot read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than a fixed-size part needs.
    #[error("short DNS {what}: {got} bytes, need {needed}")]
    Short {
        /// What was being read (the TCP length prefix or the header).
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available (captured, or announced by the TCP length
        /// prefix when fewer).
        got: usize,
    },
    /// The message ends before the question does: cut by the capture, or by
    /// the TCP length prefix.
    #[error("DNS message ends inside the {field} at offset {offset}")]
    Truncated {
        /// Offset of the part that does not fit.
        offset: usize,
        /// What was being read.
        field: &'static str,
    },
    /// A name longer than 255 bytes in wire form (length bytes and the
    /// final zero included, pointers followed).
    #[error("DNS name at offset {offset} is longer than 255 bytes")]
    NameTooLong {
        /// Offset where the name starts.
        offset: usize,
    },
    /// A compression pointer that points forwards, into the header, or past
    /// the captured bytes.
    #[error(
        "DNS compression pointer at offset {offset} targets offset {target}, \
         which is not an earlier name"
    )]
    BadPointer {
        /// Offset of the pointer.
        offset: usize,
        /// Offset it points to.
        target: usize,
    },
    /// A compression pointer that points to itself, back into the labels it
    /// ends (which would read them again), or one hop too many.
    #[error("DNS compression pointer at offset {offset} to offset {target} makes a loop")]
    PointerLoop {
        /// Offset of the pointer.
        offset: usize,
        /// Offset it points to.
        target: usize,
    },
    /// A length byte whose top two bits are `01` (the retired extended
    /// label type) or `10` (reserved): read as a length, 64 to 191, longer
    /// than a label's limit of 63 bytes.
    #[error(
        "DNS label at offset {offset} has reserved type bits {bits:#04b} \
         (not a length of at most 63 nor a pointer)"
    )]
    ReservedLabelType {
        /// Offset of the length byte.
        offset: usize,
        /// Its top two bits.
        bits: u8,
    },
}

/// Bytes of the DNS header.
const HEADER_LEN: usize = 12;
/// Bytes of the DNS over TCP length prefix.
const TCP_PREFIX_LEN: usize = 2;
/// The longest name in wire form (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 255;
/// The most compression pointers followed in one name: one per label of
/// the longest name. Pointers must also point strictly before every part
/// already read, so a loop is caught before this bound; it caps chains of
/// pointers to pointers.
const MAX_HOPS: usize = MAX_NAME_LEN / 2;

/// Reads the header and the first question of a DNS message.
///
/// The question is `None` when the header announces none (QDCOUNT 0).
/// Bytes after the first question are never read, so a message cut by the
/// capture after its question reads in full.
pub fn parse(payload: &[u8], transport: Transport) -> Result<DnsMessage, Error> {
    let message = match transport {
        Transport::Udp => payload,
        Transport::Tcp => {
            let Some((prefix, rest)) = payload.split_first_chunk::<TCP_PREFIX_LEN>() else {
                return Err(Error::Short {
                    what: "TCP length prefix",
                    needed: TCP_PREFIX_LEN,
                    got: payload.len(),
                });
            };
            // The prefix bounds the message (what follows is the next one),
            // but may announce more than was captured.
            let announced = usize::from(u16::from_be_bytes(*prefix));
            rest.get(..announced).unwrap_or(rest)
        }
    };
    let Some(header) = message.first_chunk::<HEADER_LEN>() else {
        return Err(Error::Short {
            what: "header",
            needed: HEADER_LEN,
            got: message.len(),
        });
    };
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    let question = if qdcount == 0 {
        None
    } else {
        Some(question(message, HEADER_LEN)?)
    };
    Ok(DnsMessage {
        id: u16::from_be_bytes([header[0], header[1]]),
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        question,
    })
}

/// Reads the question at `start`.
fn question(message: &[u8], start: usize) -> Result<DnsQuestion, Error> {
    let (name, end) = name(message, start, "question name")?;
    let qtype = u16_at(message, end, "question type")?;
    let qclass = u16_at(message, end + 2, "question class")?;
    Ok(DnsQuestion {
        name,
        qtype,
        qclass,
    })
}

/// Reads a big-endian `u16` at `offset`.
fn u16_at(message: &[u8], offset: usize, field: &'static str) -> Result<u16, Error> {
    message
        .get(offset..offset + 2)
        .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
        .ok_or(Error::Truncated { offset, field })
}

/// Reads the name at `start`, following compression pointers; returns it in
/// presentation form with the offset just after its bytes at `start`.
///
/// Work is bounded by the name's 255 bytes plus [`MAX_HOPS`] pointers,
/// whatever the message holds.
fn name(message: &[u8], start: usize, field: &'static str) -> Result<(String, usize), Error> {
    let mut text = String::with_capacity(64);
    let mut pos = start;
    // Pointers must land before this: the start of the part being read.
    let mut part_start = start;
    // The offset after the name where it is written, once known.
    let mut end = None;
    // Wire bytes of the name read so far, pointers followed.
    let mut wire_len = 0;
    let mut hops = 0;
    loop {
        let &octet = message
            .get(pos)
            .ok_or(Error::Truncated { offset: pos, field })?;
        match octet >> 6 {
            0b00 if octet == 0 => {
                if text.is_empty() {
                    text.push('.');
                }
                return Ok((text, end.unwrap_or(pos + 1)));
            }
            0b00 => {
                let len = usize::from(octet);
                // This label, its length byte and the final zero still to come.
                wire_len += 1 + len;
                if wire_len + 1 > MAX_NAME_LEN {
                    return Err(Error::NameTooLong { offset: start });
                }
                let label = message
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(Error::Truncated { offset: pos, field })?;
                if !text.is_empty() {
                    text.push('.');
                }
                push_escaped(&mut text, label);
                pos += 1 + len;
            }
            0b11 => {
                let &low = message
                    .get(pos + 1)
                    .ok_or(Error::Truncated { offset: pos, field })?;
                let target = (usize::from(octet & 0x3f) << 8) | usize::from(low);
                if target > pos || target < HEADER_LEN {
                    return Err(Error::BadPointer {
                        offset: pos,
                        target,
                    });
                }
                hops += 1;
                if target >= part_start || hops > MAX_HOPS {
                    return Err(Error::PointerLoop {
                        offset: pos,
                        target,
                    });
                }
                end.get_or_insert(pos + 2);
                part_start = target;
                pos = target;
            }
            bits => return Err(Error::ReservedLabelType { offset: pos, bits }),
        }
    }
}

/// Appends one label in presentation form.
fn push_escaped(text: &mut String, label: &[u8]) {
    for &byte in label {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'*' => {
                text.push(char::from(byte));
            }
            b'.' => text.push_str("\\."),
            _ => {
                text.push('\\');
                text.push(char::from(b'0' + byte / 100));
                text.push(char::from(b'0' + byte / 10 % 10));
                text.push(char::from(b'0' + byte % 10));
            }
        }
    }
}

#[cfg(test)]
mod tests;
