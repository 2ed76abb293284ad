//! Any value of a snapshot document as the walk meets it: built into a
//! [`Node`] (an item) or visited and dropped (everything else), each
//! mapping's keys checked for duplicates, each node charged to the walk's
//! budget.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::{
    Problem,
    node::Node,
    walk::{Context, Pass, Segment, reject_containers, reject_others},
};

/// The keys a mapping already holds, to refuse a second copy.
#[derive(Clone, Copy)]
pub(super) enum Keys<'m> {
    /// Kept in the node being built.
    Map(&'m BTreeMap<Box<str>, Node>),
    /// Only remembered.
    Set(&'m BTreeSet<Box<str>>),
    /// Not checked (the probe).
    Unchecked,
}

impl Keys<'_> {
    fn contains(self, key: &str) -> bool {
        match self {
            Keys::Map(map) => map.contains_key(key),
            Keys::Set(set) => set.contains(key),
            Keys::Unchecked => false,
        }
    }
}

/// A mapping key: a scalar, read as its text, not already in the mapping.
pub(super) struct KeySeed<'c, 'p, 'm> {
    /// The walk.
    pub ctx: &'c Context,
    /// The mapping's path.
    pub path: &'p Segment<'p>,
    /// The keys it holds so far.
    pub keys: Keys<'m>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_, '_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        // `str`, not `any`: a key's text as written (`80`, not the number).
        deserializer.deserialize_str(self)
    }
}

impl KeySeed<'_, '_, '_> {
    fn unexpected<E: de::Error>(&self, found: &'static str) -> E {
        self.ctx.fail(
            self.path,
            Problem::Type {
                expected: "a scalar mapping key".into(),
                found,
            },
        )
    }

    fn check<E: de::Error>(&self, key: &str) -> Result<(), E> {
        self.ctx.charge(self.path, key.len())?;
        if self.keys.contains(key) {
            return Err(self
                .ctx
                .fail(&Segment::Key(self.path, key), Problem::DuplicateKey));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_, '_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        self.check(key)?;
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        self.check(key)?;
        Ok(Cow::Owned(key.to_owned()))
    }

    reject_others! {
        visit_bool(bool) => "a boolean";
        visit_i64(i64) => "an integer";
        visit_u64(u64) => "an integer";
        visit_i128(i128) => "an integer";
        visit_u128(u128) => "an integer";
        visit_f64(f64) => "a float";
        visit_bytes(&[u8]) => "bytes";
        visit_unit() => "null";
        visit_none() => "null";
    }
    reject_containers!(seq);
    reject_containers!(map);
    reject_containers!(enum);
    reject_containers!(some);
}

/// Any value: built into a [`Node`] when `keep`, else visited and dropped.
pub(super) struct NodeSeed<'c, 'p> {
    /// The walk.
    pub ctx: &'c Context,
    /// The value's path.
    pub path: &'p Segment<'p>,
    /// Whether to build the value (else it is visited and dropped).
    pub keep: bool,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl NodeSeed<'_, '_> {
    fn scalar<E: de::Error>(&self, units: usize, node: impl FnOnce() -> Node) -> Result<Node, E> {
        self.ctx.charge(self.path, units)?;
        Ok(if self.keep { node() } else { Node::Null })
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        self.scalar(0, || Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        self.scalar(0, || Node::I64(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        self.scalar(0, || Node::U64(value))
    }

    // Integers past 64 bits fit no Kubernetes field: kept as floats, which
    // every integer field then refuses by type.
    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Node, E> {
        self.scalar(0, || Node::F64(value as f64))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Node, E> {
        self.scalar(0, || Node::F64(value as f64))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        self.scalar(0, || Node::F64(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        self.scalar(value.len(), || Node::Str(value.into()))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Err(self.ctx.fail(
            self.path,
            Problem::Type {
                expected: "text".into(),
                found: "bytes",
            },
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        self.scalar(0, || Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        self.scalar(0, || Node::Null)
    }

    reject_containers!(some);

    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<Node, A::Error> {
        Err(self.ctx.fail(self.path, Problem::Tag))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let ctx = self.ctx;
        ctx.charge(self.path, 0)?;
        let mut items = Vec::new();
        let mut index = 0;
        loop {
            let path = Segment::Index(self.path, index);
            let node = seq
                .next_element_seed(NodeSeed {
                    ctx,
                    path: &path,
                    keep: self.keep,
                })
                .inspect_err(|_| ctx.passed(&path))?;
            let Some(node) = node else { break };
            if self.keep {
                items.push(node);
            }
            index += 1;
        }
        Ok(if self.keep {
            Node::Seq(items)
        } else {
            Node::Null
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let ctx = self.ctx;
        ctx.charge(self.path, 0)?;
        let mut entries = BTreeMap::new();
        let mut seen = BTreeSet::new();
        loop {
            let keys = match (self.keep, ctx.pass()) {
                (true, _) => Keys::Map(&entries),
                (false, Pass::Read) => Keys::Set(&seen),
                (false, Pass::Probe) => Keys::Unchecked,
            };
            let key = map
                .next_key_seed(KeySeed {
                    ctx,
                    path: self.path,
                    keys,
                })
                .inspect_err(|_| ctx.passed(self.path))?;
            let Some(key) = key else { break };
            let path = Segment::Key(self.path, &key);
            let value = map
                .next_value_seed(NodeSeed {
                    ctx,
                    path: &path,
                    keep: self.keep,
                })
                .inspect_err(|_| ctx.passed(&path))?;
            if self.keep {
                entries.insert(Box::<str>::from(key), value);
            } else if ctx.pass() == Pass::Read {
                seen.insert(Box::<str>::from(key));
            }
        }
        Ok(if self.keep {
            Node::Map(entries)
        } else {
            Node::Null
        })
    }
}
