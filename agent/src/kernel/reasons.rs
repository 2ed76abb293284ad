//! Which drop reasons are reported: the `--drop-reasons` set, resolved
//! against the running kernel's names into the kernel's filter bitmap.

use std::{fmt, str::FromStr};

use dropscope_abi::ReasonFilter;

use super::{DropReasonNames, Error};

/// The reasons reported by default: drops that break connectivity. Names
/// this kernel does not define are ignored.
///
/// Policy and firewall verdicts (`NETFILTER_DROP`, `TC_INGRESS`,
/// `TC_EGRESS`, `BPF_CGROUP_EGRESS`, `XDP`, `SECURITY_HOOK`), nothing
/// listening (`NO_SOCKET`), routing and addressing (`IP_*ROUTES`,
/// `IP_RPFILTER`, `IP_INADDRERRORS`, `IP_*_SOURCE`, `IP_INVALID_DEST`,
/// `IP_NOPROTO`, `IPV6DISABLED`, `PKT_TOO_BIG`, `UNHANDLED_PROTO`),
/// neighbours (`NEIGH_*`), full queues and buffers (`SOCKET_RCVBUFF`,
/// `SOCKET_BACKLOG`, `TCP_LISTEN_OVERFLOW`, `QDISC_*`, `CPU_BACKLOG`,
/// `FULL_RING`, `PROTO_MEM`, `NOMEM`), devices and tunnels (`DEV_READY`,
/// `TC_CHAIN_NOTFOUND`, `NO_TX_TARGET`, `VXLAN_VNI_NOT_FOUND`,
/// `TUNNEL_TXINFO`) and `XFRM_POLICY`, `SOCKET_FILTER`. Left out as noise:
/// `NOT_SPECIFIED`, `OTHERHOST`, TCP state-machine discards of established
/// connections, checksum errors; add them with `+NAME`.
pub const DEFAULT_DROP_REASONS: &[&str] = &[
    "NETFILTER_DROP",
    "TC_INGRESS",
    "TC_EGRESS",
    "BPF_CGROUP_EGRESS",
    "XDP",
    "SECURITY_HOOK",
    "NO_SOCKET",
    "IP_RPFILTER",
    "IP_INNOROUTES",
    "IP_OUTNOROUTES",
    "IP_INADDRERRORS",
    "IP_LOCAL_SOURCE",
    "IP_INVALID_SOURCE",
    "IP_INVALID_DEST",
    "IP_NOPROTO",
    "IPV6DISABLED",
    "PKT_TOO_BIG",
    "UNHANDLED_PROTO",
    "NEIGH_CREATEFAIL",
    "NEIGH_FAILED",
    "NEIGH_QUEUEFULL",
    "NEIGH_DEAD",
    "SOCKET_RCVBUFF",
    "SOCKET_BACKLOG",
    "SOCKET_FILTER",
    "TCP_LISTEN_OVERFLOW",
    "QDISC_DROP",
    "QDISC_OVERLIMIT",
    "CPU_BACKLOG",
    "FULL_RING",
    "PROTO_MEM",
    "NOMEM",
    "DEV_READY",
    "TC_CHAIN_NOTFOUND",
    "NO_TX_TARGET",
    "VXLAN_VNI_NOT_FOUND",
    "TUNNEL_TXINFO",
    "XFRM_POLICY",
];

/// One item of a `--drop-reasons` list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// `default`: [`DEFAULT_DROP_REASONS`].
    Default,
    /// `all`: every reason, subsystem reasons included.
    All,
    /// `NAME`, `+NAME` or a number: add it.
    Add(Reason),
    /// `-NAME`: remove it.
    Remove(Reason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reason {
    Name(String),
    Code(u32),
}

/// A parsed `--drop-reasons` value, e.g. `default,-NO_SOCKET,+NOT_SPECIFIED`.
/// Names are checked against the running kernel by [`DropReasonSet::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropReasonSet {
    input: String,
    items: Vec<Item>,
}

/// A `--drop-reasons` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid drop-reason list {input:?}: item {position} ({item:?}) {problem}")]
pub struct ParseDropReasonsError {
    input: String,
    position: usize,
    item: String,
    problem: &'static str,
}

impl Default for DropReasonSet {
    fn default() -> Self {
        Self {
            input: "default".to_owned(),
            items: vec![Item::Default],
        }
    }
}

impl fmt::Display for DropReasonSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.input)
    }
}

impl FromStr for DropReasonSet {
    type Err = ParseDropReasonsError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut items = Vec::new();
        for (index, raw) in input.split(',').enumerate() {
            let raw = raw.trim();
            let fail = |problem| ParseDropReasonsError {
                input: input.to_owned(),
                position: index + 1,
                item: raw.to_owned(),
                problem,
            };
            let item = match raw.to_ascii_lowercase().as_str() {
                "" => return Err(fail("is empty")),
                "default" => Item::Default,
                "all" => Item::All,
                _ => {
                    let (remove, name) = match raw.as_bytes()[0] {
                        b'-' => (true, &raw[1..]),
                        b'+' => (false, &raw[1..]),
                        _ => (false, raw),
                    };
                    let reason = parse_reason(name).ok_or_else(|| {
                        fail("is not a reason name (letters, digits, _) or number")
                    })?;
                    if remove {
                        Item::Remove(reason)
                    } else {
                        Item::Add(reason)
                    }
                }
            };
            items.push(item);
        }
        Ok(Self {
            input: input.to_owned(),
            items,
        })
    }
}

fn parse_reason(name: &str) -> Option<Reason> {
    if let Ok(code) = name.parse::<u32>() {
        return Some(Reason::Code(code));
    }
    let name = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| Reason::Name(name.to_ascii_uppercase()))
}

impl DropReasonSet {
    /// The kernel filter for this set on a kernel with these `names`.
    pub fn resolve(&self, names: &DropReasonNames) -> Result<ReasonFilter, Error> {
        let mut filter = ReasonFilter::default();
        for item in &self.items {
            match item {
                Item::Default => {
                    for name in DEFAULT_DROP_REASONS {
                        if let Some(code) = names.code(name) {
                            filter.insert(code);
                        }
                    }
                }
                Item::All => {
                    filter.core = [u64::MAX; 8];
                    filter.subsystems = 1;
                }
                Item::Add(reason) => filter.insert(self.code(reason, names)?),
                Item::Remove(reason) => remove(&mut filter, self.code(reason, names)?),
            }
        }
        // Normal frees are never drops.
        if let Some(consumed) = names.code("CONSUMED") {
            remove(&mut filter, consumed);
        }
        Ok(filter)
    }

    fn code(&self, reason: &Reason, names: &DropReasonNames) -> Result<u32, Error> {
        match reason {
            Reason::Code(code) => Ok(*code),
            Reason::Name(name) => names.code(name).ok_or_else(|| Error::UnknownDropReason {
                name: name.clone(),
                input: self.input.clone(),
                known: names
                    .iter()
                    .map(|(_, known)| known)
                    .filter(|known| *known != "MAX")
                    .take(12)
                    .collect::<Vec<_>>()
                    .join(", ")
                    + ", …",
            }),
        }
    }
}

fn remove(filter: &mut ReasonFilter, code: u32) {
    if code >= ReasonFilter::CORE_REASONS {
        filter.subsystems = 0;
    } else if let Some(bits) = filter.core.get_mut((code / 64) as usize) {
        *bits &= !(1u64 << (code % 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> DropReasonNames {
        DropReasonNames::from_pairs([
            (1, "CONSUMED".into()),
            (2, "NOT_SPECIFIED".into()),
            (3, "NO_SOCKET".into()),
            (12, "NETFILTER_DROP".into()),
            (73, "TC_INGRESS".into()),
        ])
    }

    #[test]
    fn default_selects_known_connectivity_reasons_only() {
        let filter = DropReasonSet::default()
            .resolve(&names())
            .expect("resolves");
        assert!(filter.contains(12));
        assert!(filter.contains(73));
        assert!(filter.contains(3));
        assert!(!filter.contains(2), "NOT_SPECIFIED is noise by default");
        assert!(!filter.contains(1), "CONSUMED is never a drop");
        assert!(
            !filter.contains(0x10000),
            "subsystem reasons are off by default"
        );
    }

    #[test]
    fn additions_and_removals_apply_in_order() {
        let set: DropReasonSet = "default,-no_socket,+NOT_SPECIFIED,99"
            .parse()
            .expect("parses");
        let filter = set.resolve(&names()).expect("resolves");
        assert!(!filter.contains(3));
        assert!(filter.contains(2));
        assert!(filter.contains(99));
    }

    #[test]
    fn all_never_includes_consumed() {
        let filter: ReasonFilter = "all"
            .parse::<DropReasonSet>()
            .expect("parses")
            .resolve(&names())
            .expect("resolves");
        assert!(filter.contains(2) && filter.contains(0x20001));
        assert!(!filter.contains(1));
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let set: DropReasonSet = "default,NETFILTER_DORP".parse().expect("parses");
        let error = set.resolve(&names()).expect_err("unknown name");
        let message = error.to_string();
        assert!(message.contains("NETFILTER_DORP"), "{message}");
        assert!(
            message.contains("NETFILTER_DROP"),
            "lists known names: {message}"
        );
    }

    #[test]
    fn bad_syntax_names_the_item() {
        let error = "default,,TC_INGRESS"
            .parse::<DropReasonSet>()
            .expect_err("empty item");
        assert!(error.to_string().contains("item 2"), "{error}");
        let error = "bad name!".parse::<DropReasonSet>().expect_err("bad chars");
        assert!(error.to_string().contains("bad name!"), "{error}");
    }
}
