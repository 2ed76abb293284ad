//! A pod's UID, kept in 16 bytes when it is a UUID.

use std::fmt;

/// A pod's `metadata.uid`. The API server makes UUIDs: one in canonical
/// form (lowercase, dashed) is kept as its 16 bytes instead of a 36-byte
/// string; anything else is kept as written. Either way it reads back as
/// the text it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Uid {
    /// A canonical UUID.
    Uuid([u8; 16]),
    /// Any other text (empty when the pod has none).
    Text(Box<str>),
}

impl Uid {
    /// Offsets of the dashes in a canonical UUID.
    const DASHES: [usize; 4] = [8, 13, 18, 23];

    /// The uid as it is written.
    pub fn new(text: &str) -> Self {
        Self::parse_uuid(text).map_or_else(|| Self::Text(text.into()), Self::Uuid)
    }

    fn parse_uuid(text: &str) -> Option<[u8; 16]> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 || Self::DASHES.iter().any(|&at| bytes[at] != b'-') {
            return None;
        }
        let nibble = |byte: u8| match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            _ => None,
        };
        let mut digits = bytes
            .iter()
            .enumerate()
            .filter(|(at, _)| !Self::DASHES.contains(at))
            .map(|(_, byte)| nibble(*byte));
        let mut uuid = [0u8; 16];
        for byte in &mut uuid {
            *byte = (digits.next()?? << 4) | digits.next()??;
        }
        Some(uuid)
    }

    /// True when the pod has no uid.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Text(text) if text.is_empty())
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Uuid(bytes) => {
                for (index, byte) in bytes.iter().enumerate() {
                    if matches!(index, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}
