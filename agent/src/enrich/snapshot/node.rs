//! One item as a small tree, and a serde `Deserializer` over it whose error
//! ([`Rejection`]) keeps what was expected and which kind of value was
//! found, never the value: the typed Kubernetes objects are read from the
//! tree without a message that could quote the file.

use std::{collections::BTreeMap, fmt};

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor, value::BorrowedStrDeserializer,
};

use super::Problem;

/// A value of one item, as the parser read it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// A negative integer.
    I64(i64),
    /// A non-negative integer.
    U64(u64),
    /// A float (and integers past 64 bits).
    F64(f64),
    /// A string.
    Str(Box<str>),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping; its keys are unique (the reader refuses duplicates).
    Map(BTreeMap<Box<str>, Node>),
}

impl Node {
    /// The string at `path` (keys from this node down), if there is one.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        let mut node = self;
        for key in path {
            match node {
                Node::Map(entries) => node = entries.get(*key)?,
                _ => return None,
            }
        }
        match node {
            Node::Str(text) => Some(text),
            _ => None,
        }
    }
}

/// Why a typed object could not be read from a [`Node`].
#[derive(Debug)]
pub(super) struct Rejection(pub Problem);

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Rejection {}

/// What a type expected, from its own description; cut short, since a
/// description is code, not data, and never needs to be long.
fn expected(expected: &dyn Expected) -> std::borrow::Cow<'static, str> {
    let mut text = expected.to_string();
    if let Some((cut, _)) = text.char_indices().nth(80) {
        text.truncate(cut);
        text.push('…');
    }
    text.into()
}

/// Which kind of value `unexpected` is, without the value.
fn found(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a float",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "null",
        Unexpected::Option => "an optional value",
        Unexpected::NewtypeStruct => "a newtype struct",
        Unexpected::Seq => "a sequence",
        Unexpected::Map => "a mapping",
        Unexpected::Enum => "an enum",
        Unexpected::UnitVariant
        | Unexpected::NewtypeVariant
        | Unexpected::TupleVariant
        | Unexpected::StructVariant => "an enum variant",
        Unexpected::Other(_) => "a value",
    }
}

impl de::Error for Rejection {
    /// A type's own message may quote the value (a timestamp that does not
    /// parse, base64 that does not decode): dropped.
    fn custom<T: fmt::Display>(_message: T) -> Self {
        Rejection(Problem::Rejected)
    }

    fn invalid_type(unexpected: Unexpected<'_>, expecting: &dyn Expected) -> Self {
        Rejection(Problem::Type {
            expected: expected(expecting),
            found: found(&unexpected),
        })
    }

    fn invalid_value(unexpected: Unexpected<'_>, expecting: &dyn Expected) -> Self {
        Rejection(Problem::Value {
            expected: expected(expecting),
            found: found(&unexpected),
        })
    }

    fn invalid_length(length: usize, expecting: &dyn Expected) -> Self {
        Rejection(Problem::Length {
            expected: expected(expecting),
            length,
        })
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Rejection(Problem::UnknownVariant { expected })
    }

    fn unknown_field(_field: &str, _expected: &'static [&'static str]) -> Self {
        Rejection(Problem::UnknownField)
    }

    fn missing_field(field: &'static str) -> Self {
        Rejection(Problem::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Rejection(Problem::DuplicateField(field))
    }
}

impl<'de> Deserializer<'de> for &'de Node {
    type Error = Rejection;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejection> {
        match self {
            Node::Null => visitor.visit_unit(),
            Node::Bool(value) => visitor.visit_bool(*value),
            Node::I64(value) => visitor.visit_i64(*value),
            Node::U64(value) => visitor.visit_u64(*value),
            Node::F64(value) => visitor.visit_f64(*value),
            Node::Str(value) => visitor.visit_borrowed_str(value),
            Node::Seq(items) => {
                let mut access = Items(items.iter());
                let value = visitor.visit_seq(&mut access)?;
                match access.0.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(items.len(), &"fewer elements")),
                }
            }
            Node::Map(entries) => {
                let mut access = Entries {
                    entries: entries.iter(),
                    value: None,
                };
                let value = visitor.visit_map(&mut access)?;
                match access.entries.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(entries.len(), &"fewer entries")),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejection> {
        match self {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Rejection> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Rejection> {
        match self {
            Node::Str(variant) => visitor.visit_enum(variant.as_ref().into_deserializer()),
            Node::Map(entries) if entries.len() == 1 => match entries.iter().next() {
                Some((variant, value)) => visitor.visit_enum(Variant { variant, value }),
                None => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
            },
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejection> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier
    }
}

/// The elements of a sequence node.
struct Items<'de>(std::slice::Iter<'de, Node>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Rejection;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Rejection> {
        self.0.next().map(|node| seed.deserialize(node)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// The entries of a mapping node.
struct Entries<'de> {
    entries: std::collections::btree_map::Iter<'de, Box<str>, Node>,
    value: Option<&'de Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Rejection;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Rejection> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Rejection> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(Rejection(Problem::Rejected)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum written as a one-entry mapping, `{variant: value}`.
struct Variant<'de> {
    variant: &'de str,
    value: &'de Node,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = Rejection;
    type Variant = &'de Node;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, &'de Node), Rejection> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Rejection>::new(self.variant))?;
        Ok((variant, self.value))
    }
}

impl<'de> VariantAccess<'de> for &'de Node {
    type Error = Rejection;

    fn unit_variant(self) -> Result<(), Rejection> {
        match self {
            Node::Null => Ok(()),
            other => Err(de::Error::invalid_type(kind_of(other), &"a unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Rejection> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Rejection> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Rejection> {
        self.deserialize_any(visitor)
    }
}

/// The [`Unexpected`] category of a node (only its kind matters here).
fn kind_of(node: &Node) -> Unexpected<'static> {
    match node {
        Node::Null => Unexpected::Unit,
        Node::Bool(_) => Unexpected::Bool(false),
        Node::I64(_) => Unexpected::Signed(0),
        Node::U64(_) => Unexpected::Unsigned(0),
        Node::F64(_) => Unexpected::Float(0.0),
        Node::Str(_) => Unexpected::Str(""),
        Node::Seq(_) => Unexpected::Seq,
        Node::Map(_) => Unexpected::Map,
    }
}
