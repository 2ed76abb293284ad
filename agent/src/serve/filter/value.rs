//! One compiled filter value per field form: pod prefixes, namespaced
//! names, workloads, CIDRs, TCP flag sets, drop reason names, DNS name
//! suffixes and proto enum values. Receives the value as sent, emits its compiled form or the
//! [`Problem`] with it; the compiled forms answer matches without parsing
//! or allocating.

use std::net::IpAddr;

use dropscope_proto::v1::{PodIdentity, Workload};
use ipnet::IpNet;

use super::error::Problem;

/// Rejects the empty string.
fn non_empty(value: &str) -> Result<&str, Problem> {
    if value.is_empty() {
        Err(Problem::Empty)
    } else {
        Ok(value)
    }
}

/// A plain string compared whole (namespace, node, hint code).
pub(super) fn exact(value: &str) -> Result<Box<str>, Problem> {
    non_empty(value).map(Box::from)
}

/// Splits `A/B` or `B`; `None` for an empty part before the `/` or a second
/// `/`.
fn split_optional_prefix(value: &str) -> Option<(Option<&str>, &str)> {
    match value.split_once('/') {
        None => Some((None, value)),
        Some((first, rest)) if !first.is_empty() && !rest.contains('/') => {
            Some((Some(first), rest))
        }
        Some(_) => None,
    }
}

/// `NAMESPACE/PREFIX` or `PREFIX`: pods whose name starts with the prefix
/// (in the namespace). `NAMESPACE/` selects every pod of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodPrefix {
    /// The namespace, when given.
    namespace: Option<Box<str>>,
    /// The start of the pod name; empty only with a namespace.
    prefix: Box<str>,
}

impl PodPrefix {
    /// Parses `NAMESPACE/PREFIX`, `NAMESPACE/` or `PREFIX`.
    pub(super) fn parse(value: &str) -> Result<Self, Problem> {
        let form = Problem::Form {
            expected: "NAMESPACE/PREFIX or PREFIX (a pod name prefix)",
        };
        match split_optional_prefix(non_empty(value)?) {
            Some((namespace, prefix)) => Ok(Self {
                namespace: namespace.map(Box::from),
                prefix: prefix.into(),
            }),
            None => Err(form),
        }
    }

    /// True when `pod` is in the namespace (if given) and its name starts
    /// with the prefix.
    pub(super) fn matches(&self, pod: &PodIdentity) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|namespace| namespace == pod.namespace)
            && pod.name.starts_with(&*self.prefix)
    }
}

/// `NAMESPACE/NAME` or `NAME` of a namespaced object (Service,
/// NetworkPolicy), compared whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NamespacedName {
    /// The namespace, when given.
    namespace: Option<Box<str>>,
    /// The name.
    name: Box<str>,
}

impl NamespacedName {
    /// Parses `NAMESPACE/NAME` or `NAME`.
    pub(super) fn parse(value: &str) -> Result<Self, Problem> {
        match split_optional_prefix(non_empty(value)?) {
            Some((namespace, name)) if !name.is_empty() => Ok(Self {
                namespace: namespace.map(Box::from),
                name: name.into(),
            }),
            _ => Err(Problem::Form {
                expected: "NAMESPACE/NAME or NAME",
            }),
        }
    }

    /// True when the object is this one.
    pub(super) fn matches(&self, namespace: &str, name: &str) -> bool {
        *self.name == *name && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

/// `KIND/NAME` (kind compared case-insensitively) or `NAME` of a pod's
/// owning workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkloadRef {
    /// The kind, when given (`Deployment`).
    kind: Option<Box<str>>,
    /// The name.
    name: Box<str>,
}

impl WorkloadRef {
    /// Parses `KIND/NAME` or `NAME`.
    pub(super) fn parse(value: &str) -> Result<Self, Problem> {
        match split_optional_prefix(non_empty(value)?) {
            Some((kind, name)) if !name.is_empty() => Ok(Self {
                kind: kind.map(Box::from),
                name: name.into(),
            }),
            _ => Err(Problem::Form {
                expected: "KIND/NAME or NAME (e.g. Deployment/web)",
            }),
        }
    }

    /// True when `workload` is this one.
    pub(super) fn matches(&self, workload: &Workload) -> bool {
        *self.name == *workload.name
            && self
                .kind
                .as_deref()
                .is_none_or(|kind| kind.eq_ignore_ascii_case(&workload.kind))
    }
}

/// An IP address (a host prefix) or a CIDR; host bits of a CIDR are
/// ignored.
pub(super) fn cidr(value: &str) -> Result<IpNet, Problem> {
    let value = non_empty(value)?;
    match value.parse::<IpNet>() {
        Ok(net) => Ok(net.trunc()),
        Err(source) => value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| Problem::Cidr { source }),
    }
}

/// A port of a tuple (for ICMP the identifier or type and code, up to
/// 65535 as well).
pub(super) fn port(value: u32) -> Result<u32, Problem> {
    if value > u32::from(u16::MAX) {
        Err(Problem::Port)
    } else {
        Ok(value)
    }
}

/// The TCP flag names of `DropEvent.tcp_flags_seen` and their bits.
const TCP_FLAGS: [(&str, u8); 8] = [
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
    ("ECE", 0x40),
    ("CWR", 0x80),
];

/// The bit of a flag name (case-insensitive); `None` for anything else.
fn tcp_flag_bit(name: &str) -> Option<u8> {
    TCP_FLAGS
        .iter()
        .find(|(flag, _)| flag.eq_ignore_ascii_case(name))
        .map(|&(_, bit)| bit)
}

/// Comma-separated flag names (`SYN,ACK`), as a bit set; blanks around the
/// names are ignored.
pub(super) fn tcp_flags(value: &str) -> Result<u8, Problem> {
    non_empty(value.trim())?;
    value.split(',').try_fold(0, |bits, name| {
        tcp_flag_bit(name.trim())
            .map(|bit| bits | bit)
            .ok_or_else(|| Problem::TcpFlag {
                flag: name.trim().to_owned(),
            })
    })
}

/// The bit set of flag names as an event carries them; unknown names add
/// nothing.
pub(super) fn tcp_flags_of<'n>(names: impl IntoIterator<Item = &'n String>) -> u8 {
    names
        .into_iter()
        .filter_map(|name| tcp_flag_bit(name))
        .fold(0, |bits, bit| bits | bit)
}

/// A drop reason name, uppercased: one `known` accepts, or `UNKNOWN_<code>`
/// (the name events carry for codes the kernel has no name for).
pub(super) fn reason(value: &str, known: &dyn Fn(&str) -> bool) -> Result<Box<str>, Problem> {
    let name = non_empty(value.trim())?.to_ascii_uppercase();
    let unknown_code = name
        .strip_prefix("UNKNOWN_")
        .is_some_and(|code| !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()));
    if known(&name) || unknown_code {
        Ok(name.into())
    } else {
        Err(Problem::UnknownReason)
    }
}

/// A DNS name suffix of whole labels, lowercased, without a leading or
/// trailing dot: `svc.cluster.local` matches `api.shop.svc.cluster.local`
/// and `svc.cluster.local`, not `mysvc.cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DnsSuffix {
    /// The labels, joined by dots.
    suffix: Box<str>,
}

impl DnsSuffix {
    /// Parses a name suffix; one leading and one trailing dot are ignored.
    pub(super) fn parse(value: &str) -> Result<Self, Problem> {
        let value = non_empty(value)?;
        let name = value.strip_prefix('.').unwrap_or(value);
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = !name.is_empty()
            && name.split('.').all(|label| !label.is_empty())
            && !name
                .chars()
                .any(|c| c.is_whitespace() || c == '*' || c == '/');
        if valid {
            Ok(Self {
                suffix: name.to_ascii_lowercase().into(),
            })
        } else {
            Err(Problem::Form {
                expected: "a DNS name suffix of whole labels, without wildcards \
                           (svc.cluster.local)",
            })
        }
    }

    /// True when `name` (a trailing dot ignored) is the suffix or ends with
    /// a dot and the suffix, compared case-insensitively.
    pub(super) fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let suffix = self.suffix.as_bytes();
        let Some(start) = name.len().checked_sub(suffix.len()) else {
            return false;
        };
        name[start..].eq_ignore_ascii_case(suffix) && (start == 0 || name[start - 1] == b'.')
    }
}

/// A proto enum value of a filter: a defined value other than the unset
/// `…_UNKNOWN = 0`. On error, also the text to show for the value.
pub(super) fn enum_value<E>(value: i32, enum_name: &'static str) -> Result<i32, (String, Problem)>
where
    E: TryFrom<i32> + ProtoEnum,
{
    match E::try_from(value) {
        Ok(known) if known.is_unset() => {
            Err((known.name().to_owned(), Problem::UnsetEnum { enum_name }))
        }
        Ok(_) => Ok(value),
        Err(_) => Err((value.to_string(), Problem::NotEnum { enum_name })),
    }
}

/// What [`enum_value`] needs of a generated proto enum.
pub(super) trait ProtoEnum {
    /// The proto name of the value (`VERDICT_UNKNOWN`).
    fn name(&self) -> &'static str;
    /// True for the `…_UNKNOWN = 0` value.
    fn is_unset(&self) -> bool;
}

/// Implements [`ProtoEnum`] for generated enums whose unset value is
/// `Unknown`.
macro_rules! proto_enum {
    ($($enum:ty),* $(,)?) => {$(
        impl ProtoEnum for $enum {
            fn name(&self) -> &'static str {
                self.as_str_name()
            }
            fn is_unset(&self) -> bool {
                matches!(self, <$enum>::Unknown)
            }
        }
    )*};
}

proto_enum!(
    dropscope_proto::v1::Verdict,
    dropscope_proto::v1::Protocol,
    dropscope_proto::v1::EventKind,
    dropscope_proto::v1::DropEventKind,
    dropscope_proto::v1::IncidentKind,
    dropscope_proto::v1::FailurePlace,
);
