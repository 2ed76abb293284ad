//! The tokens of a label selector string: words (keys, values, `in`,
//! `notin`), `!`, `!=`, `=`, `==`, `(`, `)` and `,`, with their byte
//! offsets; whitespace between tokens is skipped.

use std::fmt;

/// A token of the selector syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'s> {
    /// A key, a value, `in` or `notin`: a run of characters other than
    /// whitespace and `!=(),`.
    Word(&'s str),
    /// `!`
    Not,
    /// `!=`
    NotEquals,
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `(`
    Open,
    /// `)`
    Close,
    /// `,`
    Comma,
    /// The end of the input.
    End,
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(word) => write!(f, "{word:?}"),
            Token::Not => f.write_str("'!'"),
            Token::NotEquals => f.write_str("'!='"),
            Token::Equals => f.write_str("'='"),
            Token::DoubleEquals => f.write_str("'=='"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
            Token::End => f.write_str("the end of the selector"),
        }
    }
}

/// Splits the input into tokens, skipping whitespace.
pub(super) struct Lexer<'s> {
    /// The whole selector.
    input: &'s str,
    /// Byte offset of the next unread character.
    pos: usize,
}

impl<'s> Lexer<'s> {
    /// A lexer at the start of `input`.
    pub(super) fn new(input: &'s str) -> Self {
        Self { input, pos: 0 }
    }

    /// The whole input.
    pub(super) fn input(&self) -> &'s str {
        self.input
    }

    /// The next token and where it starts, without consuming it.
    pub(super) fn peek(&self) -> (usize, Token<'s>) {
        self.scan().0
    }

    /// The next token and where it starts.
    pub(super) fn next(&mut self) -> (usize, Token<'s>) {
        let (token, end) = self.scan();
        self.pos = end;
        token
    }

    /// The next token, where it starts, and where it ends.
    fn scan(&self) -> ((usize, Token<'s>), usize) {
        let rest = &self.input[self.pos..];
        let start = self.pos + (rest.len() - rest.trim_start().len());
        let rest = &self.input[start..];
        let (token, len) = match rest.as_bytes() {
            [] => (Token::End, 0),
            [b'!', b'=', ..] => (Token::NotEquals, 2),
            [b'!', ..] => (Token::Not, 1),
            [b'=', b'=', ..] => (Token::DoubleEquals, 2),
            [b'=', ..] => (Token::Equals, 1),
            [b'(', ..] => (Token::Open, 1),
            [b')', ..] => (Token::Close, 1),
            [b',', ..] => (Token::Comma, 1),
            _ => {
                let len = rest
                    .find(|c: char| c.is_whitespace() || "!=(),".contains(c))
                    .unwrap_or(rest.len());
                (Token::Word(&rest[..len]), len)
            }
        };
        ((start, token), start + len)
    }
}
