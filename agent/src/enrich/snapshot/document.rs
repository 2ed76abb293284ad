//! The List document, walked once as the parser (YAML or JSON) reads it:
//! `kind` must end in `List`, `items` are read one at a time into a
//! [`super::node::Node`] tree ([`super::value`]) and converted
//! ([`super::item`]), every other field is visited and dropped.

use std::{collections::BTreeSet, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::{
    Parsed, Problem, item,
    value::{KeySeed, Keys, NodeSeed},
    walk::{Context, Pass, Segment, reject_containers, reject_others},
};

/// The whole document: a mapping with `kind` ending in `List` and `items`.
pub(super) struct DocumentSeed<'c> {
    /// The walk.
    pub ctx: &'c Context,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_any(DocumentVisitor { ctx: self.ctx })
    }
}

struct DocumentVisitor<'c> {
    ctx: &'c Context,
}

impl DocumentVisitor<'_> {
    fn unexpected<E: de::Error>(&self, found: &'static str) -> E {
        self.ctx.fail(
            &Segment::Root,
            Problem::Type {
                expected: "a mapping (a kubectl List)".into(),
                found,
            },
        )
    }
}

impl<'de> Visitor<'de> for DocumentVisitor<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let ctx = self.ctx;
        let root = Segment::Root;
        ctx.charge(&root, 0)?;
        let mut seen = BTreeSet::new();
        let mut kind = false;
        let mut parsed = Parsed::default();
        loop {
            let keys = match ctx.pass() {
                Pass::Read => Keys::Set(&seen),
                Pass::Probe => Keys::Unchecked,
            };
            let key = map
                .next_key_seed(KeySeed {
                    ctx,
                    path: &root,
                    keys,
                })
                .inspect_err(|_| ctx.passed(&root))?;
            let Some(key) = key else { break };
            let path = Segment::Key(&root, &key);
            match (ctx.pass(), &*key) {
                (Pass::Read, "kind") => {
                    map.next_value_seed(KindSeed { ctx, path: &path })
                        .inspect_err(|_| ctx.passed(&path))?;
                    kind = true;
                }
                (_, "items") => {
                    parsed = map
                        .next_value_seed(ItemsSeed { ctx, path: &path })
                        .inspect_err(|_| ctx.passed(&path))?;
                }
                _ => {
                    map.next_value_seed(NodeSeed {
                        ctx,
                        path: &path,
                        keep: false,
                    })
                    .inspect_err(|_| ctx.passed(&path))?;
                }
            }
            if ctx.pass() == Pass::Read {
                seen.insert(Box::<str>::from(key));
            }
        }
        if ctx.pass() == Pass::Read && !kind {
            return Err(ctx.fail(&root, Problem::MissingField("kind")));
        }
        Ok(parsed)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parsed, E> {
        Err(self.ctx.fail(&Segment::Root, Problem::Empty))
    }

    fn visit_none<E: de::Error>(self) -> Result<Parsed, E> {
        Err(self.ctx.fail(&Segment::Root, Problem::Empty))
    }

    reject_others! {
        visit_bool(bool) => "a boolean";
        visit_i64(i64) => "an integer";
        visit_u64(u64) => "an integer";
        visit_i128(i128) => "an integer";
        visit_u128(u128) => "an integer";
        visit_f64(f64) => "a float";
        visit_str(&str) => "a string";
        visit_bytes(&[u8]) => "bytes";
    }
    reject_containers!(seq);
    reject_containers!(enum);
    reject_containers!(some);
}

/// The document's `kind`: a string ending in `List`.
struct KindSeed<'c, 'p> {
    ctx: &'c Context,
    path: &'p Segment<'p>,
}

impl<'de> DeserializeSeed<'de> for KindSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl KindSeed<'_, '_> {
    fn unexpected<E: de::Error>(&self, found: &'static str) -> E {
        self.ctx.fail(
            self.path,
            Problem::Type {
                expected: "a string".into(),
                found,
            },
        )
    }
}

impl<'de> Visitor<'de> for KindSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a List kind")
    }

    fn visit_str<E: de::Error>(self, kind: &str) -> Result<(), E> {
        self.ctx.charge(self.path, kind.len())?;
        if kind.ends_with("List") {
            Ok(())
        } else {
            Err(self.ctx.fail(self.path, Problem::NotAList))
        }
    }

    reject_others! {
        visit_bool(bool) => "a boolean";
        visit_i64(i64) => "an integer";
        visit_u64(u64) => "an integer";
        visit_i128(i128) => "an integer";
        visit_u128(u128) => "an integer";
        visit_f64(f64) => "a float";
        visit_bytes(&[u8]) => "bytes";
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.unexpected("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(self.unexpected("null"))
    }

    reject_containers!(seq);
    reject_containers!(map);
    reject_containers!(enum);
    reject_containers!(some);
}

/// The document's `items`: a sequence (or null, for none), read one item at
/// a time.
struct ItemsSeed<'c, 'p> {
    ctx: &'c Context,
    path: &'p Segment<'p>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_, '_> {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ItemsSeed<'_, '_> {
    fn unexpected<E: de::Error>(&self, found: &'static str) -> E {
        self.ctx.fail(
            self.path,
            Problem::Type {
                expected: "a sequence".into(),
                found,
            },
        )
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_, '_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of Kubernetes objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let ctx = self.ctx;
        ctx.charge(self.path, 0)?;
        let keep = ctx.pass() == Pass::Read;
        let mut parsed = Parsed::default();
        let mut index = 0;
        loop {
            let path = Segment::Index(self.path, index);
            let node = seq
                .next_element_seed(NodeSeed {
                    ctx,
                    path: &path,
                    keep,
                })
                .inspect_err(|_| ctx.passed(&path))?;
            let Some(node) = node else { break };
            if keep {
                item::read(node, index, &mut parsed);
            }
            index += 1;
        }
        Ok(parsed)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parsed, E> {
        Ok(Parsed::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Parsed, E> {
        Ok(Parsed::default())
    }

    reject_others! {
        visit_bool(bool) => "a boolean";
        visit_i64(i64) => "an integer";
        visit_u64(u64) => "an integer";
        visit_i128(i128) => "an integer";
        visit_u128(u128) => "an integer";
        visit_f64(f64) => "a float";
        visit_str(&str) => "a string";
        visit_bytes(&[u8]) => "bytes";
    }
    reject_containers!(map);
    reject_containers!(enum);
    reject_containers!(some);
}
