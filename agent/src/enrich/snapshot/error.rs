//! What can be wrong with a snapshot file, said without quoting it: every
//! message is built from constant texts, positions, field paths and counts.
//! Parser messages are kept only when they are one of the parser's own
//! constant texts ([`yaml_problem`], [`json_problem`]).

use std::{borrow::Cow, fmt, io, path::Path};

/// Why a snapshot file is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be opened or read.
    #[error(transparent)]
    Io(io::Error),
    /// The file is larger than the cap.
    #[error(
        "{}{size} bytes, over the {cap}-byte limit on snapshot files (MAX_SNAPSHOT_BYTES)",
        if *.at_least { "at least " } else { "" }
    )]
    TooLarge {
        /// Its size (from its metadata, or what was read before the cap).
        size: u64,
        /// Whether `size` is a lower bound (found while reading).
        at_least: bool,
        /// The cap.
        cap: u64,
    },
    /// The text is not a List the loader accepts.
    #[error("at {field}: {}{problem}", Position { line: *.line, column: *.column })]
    Parse {
        /// 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
        /// 1-based column: characters for YAML, bytes for JSON and for
        /// text that is not UTF-8.
        column: Option<usize>,
        /// Field path of the problem (`items[3].spec`), `.` for the document.
        field: String,
        /// What is wrong.
        problem: Problem,
    },
}

/// `line L column C: `, or nothing when the position is unknown.
struct Position {
    line: Option<usize>,
    column: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line} column {column}: "),
            (Some(line), None) => write!(f, "line {line}: "),
            _ => Ok(()),
        }
    }
}

impl Error {
    /// The error as the enrichment step reports it, naming `path`.
    pub(super) fn at(self, path: &Path) -> super::super::Error {
        match self {
            Error::Io(source) => super::super::Error::SnapshotRead {
                path: path.to_path_buf(),
                source,
            },
            too_large @ Error::TooLarge { .. } => super::super::Error::SnapshotRead {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::FileTooLarge, too_large),
            },
            Error::Parse {
                line,
                column,
                field,
                problem,
            } => super::super::Error::SnapshotParse {
                path: path.to_path_buf(),
                field,
                reason: format!("{}{problem}", Position { line, column }),
            },
        }
    }
}

/// What is wrong, from a fixed list: never a value read from the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A YAML anchor (`&name`).
    #[error(
        "a YAML anchor: kubectl never writes anchors or aliases, and snapshots may not use them"
    )]
    Anchor,
    /// A YAML alias (`*name`).
    #[error(
        "a YAML alias: kubectl never writes anchors or aliases, and snapshots may not use them"
    )]
    Alias,
    /// A mapping key written twice in one mapping.
    #[error("duplicate mapping key")]
    DuplicateKey,
    /// A YAML tag other than the core ones (`!custom`).
    #[error("a YAML tag: snapshots are plain kubectl output, without tags")]
    Tag,
    /// The YAML does not parse (libyaml's own words).
    #[error("invalid YAML: {0}")]
    Yaml(&'static str),
    /// The JSON does not parse (serde_json's own words).
    #[error("invalid JSON: {0}")]
    Json(&'static str),
    /// Mappings and sequences nested deeper than the parser allows.
    #[error("nested too deeply")]
    TooDeep,
    /// More than one YAML document.
    #[error("more than one YAML document (kubectl prints one List)")]
    MultipleDocuments,
    /// The document costs more nodes and scalar bytes than its length
    /// allows an alias-free document to.
    #[error(
        "the document expands past {budget} nodes and scalar bytes, more than a file of its length can hold"
    )]
    Expansion {
        /// The budget it exceeded.
        budget: u64,
    },
    /// The file is not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The document is empty.
    #[error("the document is empty: expected a List")]
    Empty,
    /// The document's `kind` does not end in `List`.
    #[error("kind is not a List (a snapshot is what `kubectl get ... -o yaml` prints)")]
    NotAList,
    /// An item whose kind dropscope does not read (or none).
    #[error(
        "kind is not one dropscope reads (Namespace, Pod, Service, EndpointSlice, NetworkPolicy, Node)"
    )]
    UnusedKind,
    /// A required field is missing.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field written twice.
    #[error("duplicate field `{0}`")]
    DuplicateField(&'static str),
    /// A value of the wrong type.
    #[error("invalid type: {found}, expected {expected}")]
    Type {
        /// What was expected (the type's own description).
        expected: Cow<'static, str>,
        /// Which kind of value was found (`a string`, `a sequence`, …).
        found: &'static str,
    },
    /// A value of the right type that its type rejects.
    #[error("invalid value: {found}, expected {expected}")]
    Value {
        /// What was expected (the type's own description).
        expected: Cow<'static, str>,
        /// Which kind of value was found.
        found: &'static str,
    },
    /// A sequence of the wrong length.
    #[error("invalid length {length}, expected {expected}")]
    Length {
        /// What was expected.
        expected: Cow<'static, str>,
        /// The length found.
        length: usize,
    },
    /// A string that names none of an enum's variants.
    #[error("unknown variant, expected one of {expected:?}")]
    UnknownVariant {
        /// The variants.
        expected: &'static [&'static str],
    },
    /// A field the type does not have.
    #[error("unknown field")]
    UnknownField,
    /// A value its type rejects for a reason the loader does not repeat
    /// (the type's message may quote the value).
    #[error("value rejected by its type")]
    Rejected,
}

/// libyaml's problem texts, each a constant in its C source, longest first
/// where one is a prefix of another.
const YAML_PROBLEMS: &[&str] = &[
    "block sequence entries are not allowed in this context",
    "control characters are not allowed",
    "could not find expected ':'",
    "could not find expected directive name",
    "did not find URI escaped octet",
    "did not find expected <document start>",
    "did not find expected <stream-start>",
    "did not find expected '!'",
    "did not find expected ',' or ']'",
    "did not find expected ',' or '}'",
    "did not find expected '-' indicator",
    "did not find expected alphabetic or numeric character",
    "did not find expected comment or line break",
    "did not find expected digit or '.' character",
    "did not find expected hexadecimal number",
    "did not find expected key",
    "did not find expected node content",
    "did not find expected tag URI",
    "did not find expected version number",
    "did not find expected whitespace or line break",
    "did not find expected whitespace",
    "did not find the expected '>'",
    "expected low surrogate area",
    "found a tab character that violates indentation",
    "found a tab character where an indentation space is expected",
    "found an incorrect leading UTF-8 octet",
    "found an incorrect trailing UTF-8 octet",
    "found an indentation indicator equal to 0",
    "found character that cannot start any token",
    "found duplicate %TAG directive",
    "found duplicate %YAML directive",
    "found extremely long version number",
    "found incompatible YAML document",
    "found invalid Unicode character escape code",
    "found undefined tag handle",
    "found unexpected ':'",
    "found unexpected document indicator",
    "found unexpected end of stream",
    "found unexpected non-alphabetical character",
    "found unknown directive name",
    "found unknown escape character",
    "incomplete UTF-16 character",
    "incomplete UTF-16 surrogate pair",
    "incomplete UTF-8 octet sequence",
    "input error",
    "input is too long",
    "invalid Unicode character",
    "invalid leading UTF-8 octet",
    "invalid length of a UTF-8 sequence",
    "invalid trailing UTF-8 octet",
    "mapping keys are not allowed in this context",
    "mapping values are not allowed in this context",
    "unexpected low surrogate area",
    "empty YAML tag is not allowed",
    "failed to parse YAML number",
];

/// serde_json's syntax texts (its `ErrorCode`s), longest first where one is
/// a prefix of another.
const JSON_PROBLEMS: &[&str] = &[
    "EOF while parsing a list",
    "EOF while parsing an object",
    "EOF while parsing a string",
    "EOF while parsing a value",
    "expected `:`",
    "expected `,` or `]`",
    "expected `,` or `}`",
    "expected ident",
    "expected value",
    "expected `\"`",
    "invalid escape",
    "invalid number",
    "number out of range",
    "invalid unicode code point",
    "control character (\\u0000-\\u001F) found while parsing a string",
    "key must be a string",
    "lone leading surrogate in hex escape",
    "trailing comma",
    "trailing characters",
    "unexpected end of hex escape",
];

/// libyaml's text for "this character cannot start a token": what the
/// anchor probe makes it say at every anchor and alias.
pub(super) const NO_TOKEN: &str = "found character that cannot start any token";

/// The problem a serde_norway error message names, by its constant prefix;
/// anything else is reported as an unreadable YAML value, without the
/// message (serde_norway quotes scalars in some).
pub(super) fn yaml_problem(message: &str) -> Problem {
    if message.starts_with("recursion limit exceeded") {
        return Problem::TooDeep;
    }
    if message.starts_with("deserializing from YAML containing more than one document") {
        return Problem::MultipleDocuments;
    }
    if message.starts_with("EOF while parsing a value") {
        return Problem::Empty;
    }
    Problem::Yaml(
        YAML_PROBLEMS
            .iter()
            .find(|problem| message.starts_with(**problem))
            .copied()
            .unwrap_or("a value YAML cannot read"),
    )
}

/// The problem a serde_json error message names, by its constant prefix.
pub(super) fn json_problem(message: &str) -> Problem {
    if message.starts_with("recursion limit exceeded") {
        return Problem::TooDeep;
    }
    Problem::Json(
        JSON_PROBLEMS
            .iter()
            .find(|problem| message.starts_with(**problem))
            .copied()
            .unwrap_or("a value JSON cannot read"),
    )
}
