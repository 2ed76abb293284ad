//! Facts about the running kernel from its BTF: struct member offsets for
//! the kernel programs, and the names of `enum skb_drop_reason`.
//!
//! Nothing here is compiled for one kernel: offsets and names move between
//! versions (an nftables drop is reason 7 on 6.1 and 12 on 6.18), so every
//! one of them is looked up when the agent starts.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use btf_rs::{Btf, Type};
use dropscope_abi::{
    ConntrackTupleOffsets, KernelOffsets, OFFSET_MISSING, SKB_WINDOW_MAX, SocketOffsets,
    TracepointOffsets,
};

use super::Error;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// BTF of the conntrack module, where `struct nf_conn` lives when conntrack
/// is a module (Debian's and most distributions' kernels) rather than built in.
pub const CONNTRACK_MODULE_BTF: &str = "/sys/kernel/btf/nf_conntrack";

/// The running kernel's BTF.
pub struct KernelBtf {
    btf: Btf,
}

/// Names of the running kernel's drop reasons, by number.
#[derive(Clone, Debug, Default)]
pub struct DropReasonNames {
    by_code: BTreeMap<u32, Arc<str>>,
}

impl DropReasonNames {
    /// Builds the table from `(code, name)` pairs (names without prefix).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, String)>) -> Self {
        Self {
            by_code: pairs
                .into_iter()
                .map(|(code, name)| (code, Arc::from(name)))
                .collect(),
        }
    }

    /// The name of `code`, when the kernel defines one.
    pub fn name(&self, code: u32) -> Option<Arc<str>> {
        self.by_code.get(&code).cloned()
    }

    /// The number of `name` (without the `SKB_DROP_REASON_` prefix).
    pub fn code(&self, name: &str) -> Option<u32> {
        self.by_code
            .iter()
            .find(|(_, known)| known.eq_ignore_ascii_case(name))
            .map(|(code, _)| *code)
    }

    /// Every `(code, name)`, by code.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_code.iter().map(|(code, name)| (*code, &**name))
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// True when the kernel defines no names.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

impl KernelBtf {
    /// Reads BTF from `path` (normally [`VMLINUX_BTF`]).
    pub fn load(path: &Path) -> Result<Self, Error> {
        if !path.exists() {
            return Err(Error::NoBtf {
                path: path.to_path_buf(),
            });
        }
        let btf = Btf::from_file(path).map_err(|source| Error::BtfRead {
            path: path.to_path_buf(),
            message: source.to_string(),
        })?;
        Ok(Self { btf })
    }

    /// Adds the BTF of a kernel module (split BTF on top of vmlinux), so
    /// that its structs resolve too; a module that is not loaded is skipped.
    pub fn with_module(self, module: &Path) -> Self {
        if !module.exists() {
            tracing::debug!(module = %module.display(), "module BTF not present");
            return self;
        }
        match Btf::from_split_file(module, &self.btf) {
            Ok(btf) => Self { btf },
            Err(error) => {
                tracing::warn!(module = %module.display(), %error, "cannot read module BTF");
                self
            }
        }
    }

    /// The offsets the kernel programs need. Socket-buffer and device fields
    /// are required; conntrack and socket fields are optional (a kernel
    /// without conntrack simply yields no conntrack tuples).
    pub fn kernel_offsets(&self, tracepoint: TracepointOffsets) -> Result<KernelOffsets, Error> {
        let required = |path: &str| {
            self.offset(path).ok_or_else(|| Error::MissingKernelField {
                field: path.to_owned(),
            })
        };
        let optional = |path: &str| self.offset(path).unwrap_or(OFFSET_MISSING);

        let tuplehash = self.offset("nf_conn.tuplehash");
        let tuple_in_hash = self.offset("nf_conntrack_tuple_hash.tuple");
        let hash_size = self.size_of("nf_conntrack_tuple_hash");
        let (ct_tuple_original, ct_tuple_reply) = match (tuplehash, tuple_in_hash, hash_size) {
            (Some(base), Some(tuple), Some(size)) => (base + tuple, base + size + tuple),
            _ => (OFFSET_MISSING, OFFSET_MISSING),
        };
        let nd_net =
            required("net_device.nd_net")? + optional_zero(self.offset("possible_net_t.net"));
        let sk_net = self
            .offset("sock.__sk_common.skc_net")
            .map(|offset| offset + optional_zero(self.offset("possible_net_t.net")))
            .unwrap_or(OFFSET_MISSING);
        let mut offsets = KernelOffsets {
            skb_window_start: 0,
            skb_window_len: 0,
            skb_head: required("sk_buff.head")?,
            skb_network_header: required("sk_buff.network_header")?,
            skb_len: required("sk_buff.len")?,
            skb_dev: required("sk_buff.dev")?,
            skb_iif: optional("sk_buff.skb_iif"),
            skb_nfct: optional("sk_buff._nfct"),
            skb_sk: optional("sk_buff.sk"),
            dev_ifindex: required("net_device.ifindex")?,
            dev_nd_net: nd_net,
            sk_net,
            net_ns_inum: required("net.ns.inum")?,
            ct_tuple_original,
            ct_tuple_reply,
            tuple: ConntrackTupleOffsets {
                src_addr: optional("nf_conntrack_tuple.src.u3"),
                src_port: optional("nf_conntrack_tuple.src.u"),
                src_l3num: optional("nf_conntrack_tuple.src.l3num"),
                dst_addr: optional("nf_conntrack_tuple.dst.u3"),
                dst_port: optional("nf_conntrack_tuple.dst.u"),
                dst_protonum: optional("nf_conntrack_tuple.dst.protonum"),
            },
            tracepoint,
        };
        (offsets.skb_window_start, offsets.skb_window_len) = skb_window(&offsets);
        Ok(offsets)
    }

    /// The socket fields the connect tracepoints read, added to the
    /// tracepoints' own layout (`sk_err` is optional: without it a closed
    /// connect carries no socket error and is taken as closed by its owner).
    pub fn socket_offsets(
        &self,
        tracepoints: SocketOffsets,
        kernel: &KernelOffsets,
    ) -> SocketOffsets {
        SocketOffsets {
            sk_err: self.offset("sock.sk_err").unwrap_or(OFFSET_MISSING),
            sk_num: self
                .offset("sock.__sk_common.skc_num")
                .unwrap_or(OFFSET_MISSING),
            sk_net: kernel.sk_net,
            net_ns_inum: kernel.net_ns_inum,
            ..tracepoints
        }
    }

    /// Every name of `enum skb_drop_reason`, without its prefix.
    pub fn drop_reasons(&self) -> Result<DropReasonNames, Error> {
        let types = self
            .btf
            .resolve_types_by_name("skb_drop_reason")
            .map_err(|_| Error::MissingKernelField {
                field: "enum skb_drop_reason".to_owned(),
            })?;
        let mut pairs = Vec::new();
        for found in types {
            let Type::Enum(reasons) = found else { continue };
            for member in &reasons.members {
                let Ok(name) = self.btf.resolve_name(member) else {
                    continue;
                };
                let name = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(&name);
                pairs.push((member.val(), name.to_owned()));
            }
        }
        if pairs.is_empty() {
            return Err(Error::MissingKernelField {
                field: "enum skb_drop_reason".to_owned(),
            });
        }
        Ok(DropReasonNames::from_pairs(pairs))
    }

    /// Byte offset of `struct.member.member…`, descending through anonymous
    /// unions and structs; `None` when the kernel has no such field.
    pub fn offset(&self, path: &str) -> Option<u32> {
        let mut parts = path.split('.');
        let mut current = self.named_struct(parts.next()?)?;
        let mut total_bits = 0u32;
        let mut rest = parts.peekable();
        while let Some(field) = rest.next() {
            let (bits, member_type) = self.find_member(&current, field)?;
            total_bits += bits;
            if rest.peek().is_some() {
                current = self.as_struct(member_type)?;
            }
        }
        total_bits.is_multiple_of(8).then_some(total_bits / 8)
    }

    /// `sizeof(struct name)`.
    pub fn size_of(&self, name: &str) -> Option<u32> {
        self.named_struct(name).map(|found| found.size() as u32)
    }

    fn named_struct(&self, name: &str) -> Option<btf_rs::Struct> {
        self.btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|found| match found {
                Type::Struct(found) | Type::Union(found) if !found.members.is_empty() => {
                    Some(found)
                }
                _ => None,
            })
    }

    /// Finds `field` in `within` (or in its anonymous members): its bit
    /// offset and type.
    fn find_member(&self, within: &btf_rs::Struct, field: &str) -> Option<(u32, Type)> {
        for member in &within.members {
            let name = self.btf.resolve_name(member).unwrap_or_default();
            let member_type = self.btf.resolve_chained_type(member).ok()?;
            if name == field {
                return Some((member.bit_offset(), member_type));
            }
            if name.is_empty()
                && let Some(inner) = self.as_struct(member_type)
                && let Some((bits, found)) = self.find_member(&inner, field)
            {
                return Some((member.bit_offset() + bits, found));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to a struct or union.
    fn as_struct(&self, mut found: Type) -> Option<btf_rs::Struct> {
        for _ in 0..16 {
            match found {
                Type::Struct(inner) | Type::Union(inner) => return Some(inner),
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                    let next = found.as_btf_type()?;
                    found = self.btf.resolve_chained_type(next).ok()?;
                }
                _ => return None,
            }
        }
        None
    }
}

/// The smallest stretch of `sk_buff` holding the fields the program reads
/// for every packet (and, if it still fits, the conntrack and socket
/// pointers), so that one read copies them all; `(0, 0)` when even the
/// per-packet fields span more than [`SKB_WINDOW_MAX`].
pub fn skb_window(offsets: &KernelOffsets) -> (u32, u32) {
    let per_packet = [
        (offsets.skb_head, 8),
        (offsets.skb_network_header, 2),
        (offsets.skb_len, 4),
        (offsets.skb_dev, 8),
        (offsets.skb_iif, 4),
    ];
    let optional = [(offsets.skb_nfct, 8), (offsets.skb_sk, 8)];
    let span = |fields: &[(u32, u32)]| {
        let present = fields
            .iter()
            .filter(|(offset, _)| *offset != OFFSET_MISSING);
        let start = present.clone().map(|(offset, _)| *offset).min()?;
        let end = present.map(|(offset, size)| offset + size).max()?;
        Some((start, end - start))
    };
    let all: Vec<(u32, u32)> = per_packet.iter().chain(&optional).copied().collect();
    [span(&all), span(&per_packet)]
        .into_iter()
        .flatten()
        .find(|(_, len)| *len <= SKB_WINDOW_MAX)
        .unwrap_or((0, 0))
}

fn optional_zero(offset: Option<u32>) -> u32 {
    offset.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets_with(head: u32, dev: u32, nfct: u32) -> KernelOffsets {
        KernelOffsets {
            skb_head: head,
            skb_network_header: head - 12,
            skb_len: 112,
            skb_dev: dev,
            skb_iif: 144,
            skb_nfct: nfct,
            skb_sk: 24,
            ..KernelOffsets::default()
        }
    }

    #[test]
    fn the_skb_window_covers_every_field_when_it_can() {
        // The layout of 6.18: dev 16, sk 24, _nfct 104, len 112, head 192.
        assert_eq!(skb_window(&offsets_with(192, 16, 104)), (16, 184));
        // A far-away optional field is left to its own read.
        assert_eq!(skb_window(&offsets_with(192, 16, 900)), (16, 184));
        // Per-packet fields too far apart: no window, one read per field.
        assert_eq!(skb_window(&offsets_with(600, 16, 104)), (0, 0));
    }

    #[test]
    fn a_kernel_without_btf_is_named_with_the_fix() {
        let error = KernelBtf::load(Path::new("/nonexistent/vmlinux"))
            .err()
            .expect("no BTF there");
        let message = error.to_string();
        assert!(message.contains("/nonexistent/vmlinux"), "{message}");
        assert!(message.contains("CONFIG_DEBUG_INFO_BTF"), "{message}");
    }

    #[test]
    fn names_resolve_both_ways() {
        let names =
            DropReasonNames::from_pairs([(12, "NETFILTER_DROP".into()), (3, "NO_SOCKET".into())]);
        assert_eq!(names.name(12).as_deref(), Some("NETFILTER_DROP"));
        assert_eq!(names.code("no_socket"), Some(3));
        assert_eq!(names.name(99), None);
        assert_eq!(names.len(), 2);
    }
}
