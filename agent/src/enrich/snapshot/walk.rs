//! The state of one walk over a snapshot document, shared by every serde
//! seed of it ([`super::document`], [`super::value`]): which pass it is,
//! the budget every node and scalar byte is charged to, the first problem
//! found (with its field path) and the innermost path a parser error passed.
//! Nothing of the file goes into a message: problems come from a fixed list.
//!
//! The same walk serves the anchor probe ([`Pass::Probe`]): it builds
//! nothing, checks no keys (the probe's text differs from the file in its
//! `&` and `*` bytes) and only tracks where the parser stopped.

use std::{
    cell::{Cell, RefCell},
    fmt,
};

use serde::de;

use super::Problem;

/// Which walk this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// The anchor probe: syntax only.
    Probe,
    /// The real read.
    Read,
}

/// A problem the walk found, with its field path.
#[derive(Debug)]
pub(super) struct Fault {
    /// Field path (`items[3].spec`), `.` for the document.
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

/// State shared by every seed of one walk.
pub(super) struct Context {
    pass: Pass,
    budget: u64,
    spent: Cell<u64>,
    fault: RefCell<Option<Fault>>,
    stopped_at: RefCell<Option<String>>,
}

impl Context {
    /// A walk over a text of `length` bytes. The budget, four units per
    /// byte, is above what any alias-free document costs: a node takes at
    /// least half a byte of text (`?` alone is a key and its value) and a
    /// scalar at most 1.5 bytes per byte of text (`\L` is 3 bytes of UTF-8).
    pub fn new(pass: Pass, length: usize) -> Self {
        Self {
            pass,
            budget: u64::try_from(length)
                .unwrap_or(u64::MAX)
                .saturating_mul(4)
                .saturating_add(64),
            spent: Cell::new(0),
            fault: RefCell::new(None),
            stopped_at: RefCell::new(None),
        }
    }

    /// Which pass this is.
    pub fn pass(&self) -> Pass {
        self.pass
    }

    /// Units charged so far.
    #[cfg(test)]
    pub fn spent(&self) -> u64 {
        self.spent.get()
    }

    /// The first problem the walk itself found.
    pub fn take_fault(&self) -> Option<Fault> {
        self.fault.borrow_mut().take()
    }

    /// The innermost field path at which a parser error passed.
    pub fn take_stopped_at(&self) -> Option<String> {
        self.stopped_at.borrow_mut().take()
    }

    /// Charges one unit, plus `units` (a scalar's bytes), at `path`;
    /// past the budget, fails with [`Problem::Expansion`].
    pub fn charge<E: de::Error>(&self, path: &Segment<'_>, units: usize) -> Result<(), E> {
        let spent = self
            .spent
            .get()
            .saturating_add(u64::try_from(units).unwrap_or(u64::MAX))
            .saturating_add(1);
        self.spent.set(spent);
        if spent > self.budget {
            return Err(self.fail(
                path,
                Problem::Expansion {
                    budget: self.budget,
                },
            ));
        }
        Ok(())
    }

    /// Records `problem` at `path` (the first one wins) and returns an
    /// error for the parser to carry out, with its position.
    pub fn fail<E: de::Error>(&self, path: &Segment<'_>, problem: Problem) -> E {
        let message = problem.to_string();
        self.fault.borrow_mut().get_or_insert_with(|| Fault {
            field: field_path(path),
            problem,
        });
        E::custom(message)
    }

    /// Notes that an error passed `path` on its way out; the innermost
    /// path, noted first, is kept.
    pub fn passed(&self, path: &Segment<'_>) {
        if self.fault.borrow().is_none() {
            self.stopped_at
                .borrow_mut()
                .get_or_insert_with(|| field_path(path));
        }
    }
}

/// A field path, built on the stack as the walk descends.
#[derive(Clone, Copy, Debug)]
pub(super) enum Segment<'a> {
    /// The document.
    Root,
    /// A mapping key under its parent.
    Key(&'a Segment<'a>, &'a str),
    /// A sequence index under its parent.
    Index(&'a Segment<'a>, usize),
}

impl Segment<'_> {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> Result<bool, fmt::Error> {
        match self {
            Segment::Root => Ok(false),
            Segment::Key(parent, key) => {
                if parent.write(f)? {
                    f.write_str(".")?;
                }
                write!(f, "{}", key.escape_debug())?;
                Ok(true)
            }
            Segment::Index(parent, index) => {
                parent.write(f)?;
                write!(f, "[{index}]")?;
                Ok(true)
            }
        }
    }
}

impl fmt::Display for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.write(f)? {
            f.write_str(".")?;
        }
        Ok(())
    }
}

/// Rejects every kind of value a visitor does not take, naming what it
/// expected and what it found: `self.unexpected(found)` decides.
macro_rules! reject_others {
    ($($method:ident($($arg:ty),*) => $found:literal;)*) => {
        $(
            fn $method<E: de::Error>(self, $(_: $arg),*) -> Result<Self::Value, E> {
                Err(self.unexpected($found))
            }
        )*
    };
}

/// Rejects sequences, mappings, tags and wrappers (the visitor methods that
/// take an access rather than a value).
macro_rules! reject_containers {
    (seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.unexpected("a sequence"))
        }
    };
    (map) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.unexpected("a mapping"))
        }
    };
    (enum) => {
        fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.unexpected("a tagged value"))
        }
    };
    (some) => {
        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    };
}

pub(super) use {reject_containers, reject_others};

/// `path` as an error names it: `.` for the document itself (a problem
/// before any field, such as an unclosed `{` at the top).
fn field_path(path: &Segment<'_>) -> String {
    let text = path.to_string();
    if text.is_empty() { ".".into() } else { text }
}
