//! Why an `EventFilter` value cannot be compiled: [`FilterError`] names the
//! proto field path (`allow[1].ip[0]`), the value and the [`Problem`], so
//! `serve` can answer `INVALID_ARGUMENT` naming the field.

use super::selector::SelectorError;

/// A filter value that cannot be compiled.
///
/// Displays as `allow[1].ip[0]: "10.0.0.300/8" is not an IP address or CIDR
/// (invalid IP address syntax)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} {problem}")]
pub struct FilterError {
    /// The proto field path of the value in the `ObserveRequest`:
    /// `allow[1].label[0]`, `deny[0].ip[2]`.
    pub field: String,
    /// The value as sent (enum and port values as their number, or the
    /// enum's name for its unset value).
    pub value: String,
    /// What is wrong with it (already part of the message, so not a
    /// `source`).
    pub problem: Problem,
}

/// What is wrong with one filter value; reads as the predicate of a
/// sentence whose subject is the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An empty string.
    #[error("is empty: a filter value must say something")]
    Empty,
    /// Not of the form the field takes.
    #[error("is not {expected}")]
    Form {
        /// The forms the field takes (`NAMESPACE/PREFIX or PREFIX`).
        expected: &'static str,
    },
    /// Neither an IP address nor a CIDR.
    #[error("is not an IP address or CIDR ({source})")]
    Cidr {
        /// What the parser said.
        #[source]
        source: ipnet::AddrParseError,
    },
    /// Not a label selector.
    #[error("is not a label selector: {source}")]
    Selector {
        /// Where and why the selector does not parse (boxed: the rest of
        /// the problems are small).
        #[source]
        source: Box<SelectorError>,
    },
    /// Greater than 65535.
    #[error("is not a port (0-65535)")]
    Port,
    /// A name that is not a TCP flag.
    #[error("names {flag:?}, which is not a TCP flag (SYN, ACK, FIN, RST, PSH, URG, ECE, CWR)")]
    TcpFlag {
        /// The name as written.
        flag: String,
    },
    /// A drop reason the running kernel does not define.
    #[error(
        "is not a drop reason of the running kernel (a name without the SKB_DROP_REASON_ \
         prefix, or UNKNOWN_<code>)"
    )]
    UnknownReason,
    /// The enum's `…_UNKNOWN = 0`, which no event carries.
    #[error("is the unset value of dropscope.v1.{enum_name}, which no event carries")]
    UnsetEnum {
        /// The proto enum (`Verdict`).
        enum_name: &'static str,
    },
    /// A number that is no value of the enum.
    #[error("is not a value of dropscope.v1.{enum_name}")]
    NotEnum {
        /// The proto enum (`Verdict`).
        enum_name: &'static str,
    },
}
