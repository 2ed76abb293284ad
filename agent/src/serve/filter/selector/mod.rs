//! Kubernetes label selector strings, the `kubectl -l` syntax of the
//! `EventFilter.label` field: comma-separated requirements `key=value`,
//! `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key`
//! (exists) and `!key` (does not exist), with whitespace between tokens.
//! Receives the string, emits a [`LabelSelector`] that answers whether a
//! label set is selected, or a [`SelectorError`] naming the position.
//!
//! Semantics are those of `k8s.io/apimachinery/pkg/labels`: every
//! requirement must hold; `!=` and `notin` hold when the key is absent. Keys
//! are qualified names (`example.com/name`), values label values (possibly
//! empty, as in `key=`). Unlike Kubernetes, an empty selector is an error (a
//! filter value must say something) and so is `key in ()`.

mod lexer;
mod name;

use std::{collections::BTreeMap, str::FromStr};

use lexer::{Lexer, Token};
use name::{validate_key, validate_value};

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    /// At least one, in the order written.
    requirements: Vec<Requirement>,
}

/// One comma-separated part of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    /// The label key.
    key: String,
    /// What the key's value must be.
    operator: Operator,
}

/// What a requirement asks of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    /// `key=value`, `key==value`: set to this value.
    Equals(String),
    /// `key!=value`: unset, or set to another value.
    NotEquals(String),
    /// `key in (a,b)`: set to one of these (sorted, deduplicated).
    In(Vec<String>),
    /// `key notin (a,b)`: unset, or set to none of these.
    NotIn(Vec<String>),
    /// `key`: set.
    Exists,
    /// `!key`: unset.
    DoesNotExist,
}

impl LabelSelector {
    /// True when every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }
}

impl Requirement {
    /// True when this requirement holds for `labels`.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(self.key.as_str()).map(String::as_str);
        match &self.operator {
            Operator::Equals(wanted) => value == Some(wanted.as_str()),
            Operator::NotEquals(unwanted) => value != Some(unwanted.as_str()),
            Operator::In(values) => value.is_some_and(|value| contains(values, value)),
            Operator::NotIn(values) => !value.is_some_and(|value| contains(values, value)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// True when the sorted `values` hold `value`.
fn contains(values: &[String], value: &str) -> bool {
    values
        .binary_search_by(|candidate| candidate.as_str().cmp(value))
        .is_ok()
}

/// A label selector string that cannot be parsed; positions are byte
/// offsets into it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Nothing but whitespace.
    #[error("empty selector: write at least one requirement (app=web, !canary, …)")]
    Empty,
    /// The string ended where something else was needed.
    #[error("expected {expected} after {after:?} at {at}")]
    UnexpectedEnd {
        /// What was needed.
        expected: &'static str,
        /// The text read so far.
        after: String,
        /// Where it ended.
        at: usize,
    },
    /// A token where something else was needed.
    #[error("expected {expected} after {after:?} at {at}, found {found}")]
    Unexpected {
        /// What was needed.
        expected: &'static str,
        /// The token found, as written (operators quoted with `'`).
        found: String,
        /// The text before it.
        after: String,
        /// Where the token starts.
        at: usize,
    },
    /// A key that is not a qualified name.
    #[error("invalid label key {key:?} at {at}: {problem}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Where it starts.
        at: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A value that is not a label value.
    #[error("invalid value {value:?} for label {key:?} at {at}: {problem}")]
    InvalidValue {
        /// The key it is for.
        key: String,
        /// The value as written.
        value: String,
        /// Where it starts.
        at: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `key in ()` or `key notin ()`.
    #[error("empty value list for label {key:?} at {at}: in and notin need at least one value")]
    EmptyList {
        /// The key it is for.
        key: String,
        /// Where the `(` is.
        at: usize,
    },
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.trim().is_empty() {
            return Err(SelectorError::Empty);
        }
        let mut parser = Parser {
            lexer: Lexer::new(input),
        };
        let mut requirements = Vec::new();
        loop {
            requirements.push(parser.requirement()?);
            match parser.lexer.next() {
                (_, Token::Comma) => {}
                (_, Token::End) => return Ok(Self { requirements }),
                (at, found) => {
                    return Err(parser.unexpected("',' or the end of the selector", at, found));
                }
            }
        }
    }
}

/// A recursive-descent parser over the lexer.
struct Parser<'s> {
    /// The token source.
    lexer: Lexer<'s>,
}

impl Parser<'_> {
    /// `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (…)`,
    /// `key notin (…)`.
    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (at, token) = self.lexer.next();
        let (key_at, key) = match token {
            Token::Not => match self.lexer.next() {
                (key_at, Token::Word(key)) => {
                    validate_key(key, key_at)?;
                    return Ok(Requirement {
                        key: key.to_owned(),
                        operator: Operator::DoesNotExist,
                    });
                }
                (at, found) => return Err(self.unexpected("a label key", at, found)),
            },
            Token::Word(key) => (at, key),
            found => return Err(self.unexpected("a label key or '!'", at, found)),
        };
        validate_key(key, key_at)?;
        let operator = match self.lexer.peek() {
            (_, Token::Comma | Token::End) => Operator::Exists,
            (_, Token::Equals | Token::DoubleEquals) => {
                self.lexer.next();
                Operator::Equals(self.exact_value(key)?)
            }
            (_, Token::NotEquals) => {
                self.lexer.next();
                Operator::NotEquals(self.exact_value(key)?)
            }
            (_, Token::Word("in")) => {
                self.lexer.next();
                Operator::In(self.value_list(key)?)
            }
            (_, Token::Word("notin")) => {
                self.lexer.next();
                Operator::NotIn(self.value_list(key)?)
            }
            (at, found) => {
                return Err(self.unexpected(
                    "an operator (=, ==, !=, in, notin), ',' or the end of the selector",
                    at,
                    found,
                ));
            }
        };
        Ok(Requirement {
            key: key.to_owned(),
            operator,
        })
    }

    /// The value after `=`, `==` or `!=`: empty when a `,` or the end
    /// follows (as in Kubernetes).
    fn exact_value(&mut self, key: &str) -> Result<String, SelectorError> {
        match self.lexer.peek() {
            (_, Token::Comma | Token::End) => Ok(String::new()),
            (at, Token::Word(value)) => {
                self.lexer.next();
                validate_value(key, value, at)?;
                Ok(value.to_owned())
            }
            (at, found) => Err(self.unexpected("a label value", at, found)),
        }
    }

    /// `(a, b, …)` after `in` or `notin`; a value may be empty (`(a,)`),
    /// the whole list may not.
    fn value_list(&mut self, key: &str) -> Result<Vec<String>, SelectorError> {
        let open_at = match self.lexer.next() {
            (at, Token::Open) => at,
            (at, found) => return Err(self.unexpected("'('", at, found)),
        };
        if let (_, Token::Close) = self.lexer.peek() {
            return Err(SelectorError::EmptyList {
                key: key.to_owned(),
                at: open_at,
            });
        }
        let mut values = Vec::new();
        loop {
            let value = match self.lexer.peek() {
                (at, Token::Word(value)) => {
                    self.lexer.next();
                    validate_value(key, value, at)?;
                    value
                }
                (_, Token::Comma | Token::Close) => "",
                (at, found) => return Err(self.unexpected("a label value", at, found)),
            };
            values.push(value.to_owned());
            match self.lexer.next() {
                (_, Token::Comma) => {}
                (_, Token::Close) => break,
                (at, Token::End) => return Err(self.unexpected("')'", at, Token::End)),
                (at, found) => return Err(self.unexpected("',' or ')'", at, found)),
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }

    /// The error for `found` at `at` where `expected` was needed.
    fn unexpected(&self, expected: &'static str, at: usize, found: Token<'_>) -> SelectorError {
        let after = self.lexer.input()[..at].trim_end().to_owned();
        match found {
            Token::End => SelectorError::UnexpectedEnd {
                expected,
                after,
                at,
            },
            found => SelectorError::Unexpected {
                expected,
                found: found.to_string(),
                after,
                at,
            },
        }
    }
}
