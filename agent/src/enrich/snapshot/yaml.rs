//! YAML snapshots: the anchor probe, then the real read, both through
//! libyaml (serde_norway) and the walk in [`super::document`].

use serde::de::DeserializeSeed;

use super::{
    Error, Parsed, Problem,
    document::DocumentSeed,
    error::{NO_TOKEN, yaml_problem},
    walk::{Context, Pass},
};

/// What the probe writes in place of every `&` and `*`: a character that
/// may stand inside a scalar or a comment, as `&` and `*` may, but cannot
/// start a token, where `&` starts an anchor and `*` an alias.
const PROBE_BYTE: u8 = b'`';

/// Reads a YAML List: refused at its first anchor or alias, if any, before
/// anything is built.
pub(super) fn read(text: &str) -> Result<Parsed, Error> {
    if text.bytes().any(is_property_byte) {
        probe(text)?;
    }
    read_unprobed(text)
}

fn is_property_byte(byte: u8) -> bool {
    byte == b'&' || byte == b'*'
}

/// Parses a copy of `text` without its `&` and `*` bytes: libyaml stops,
/// with "cannot start any token", exactly where the original has an anchor
/// or an alias, and a text without either byte has nothing to expand.
fn probe(text: &str) -> Result<(), Error> {
    let probe: Vec<u8> = text
        .bytes()
        .map(|byte| {
            if is_property_byte(byte) {
                PROBE_BYTE
            } else {
                byte
            }
        })
        .collect();
    let ctx = Context::new(Pass::Probe, probe.len());
    DocumentSeed { ctx: &ctx }
        .deserialize(serde_norway::Deserializer::from_slice(&probe))
        .map(drop)
        .map_err(|error| located(&ctx, &error, Some(text.as_bytes())))
}

/// The real read. Only for a text the probe passed (or one without `&` and
/// `*`): serde_norway would expand aliases, bounded only by the walk's budget.
pub(super) fn read_unprobed(text: &str) -> Result<Parsed, Error> {
    let ctx = Context::new(Pass::Read, text.len());
    DocumentSeed { ctx: &ctx }
        .deserialize(serde_norway::Deserializer::from_str(text))
        .map_err(|error| located(&ctx, &error, None))
}

/// The error at its position: the walk's own problem if it found one, an
/// anchor or alias if the probe stopped on one (`original` is the probed
/// text), else the parser's problem, by its constant text.
fn located(ctx: &Context, error: &serde_norway::Error, original: Option<&[u8]>) -> Error {
    let location = error.location();
    let line = location.as_ref().map(serde_norway::Location::line);
    let column = location.as_ref().map(serde_norway::Location::column);
    if let Some(fault) = ctx.take_fault() {
        return Error::Parse {
            line,
            column,
            field: fault.field,
            problem: fault.problem,
        };
    }
    let message = error.to_string();
    let at = location
        .as_ref()
        .zip(original)
        .and_then(|(location, original)| original.get(location.index()));
    let problem = match at {
        Some(b'&') if message.starts_with(NO_TOKEN) => Problem::Anchor,
        Some(b'*') if message.starts_with(NO_TOKEN) => Problem::Alias,
        _ => yaml_problem(&message),
    };
    Error::Parse {
        line,
        column,
        field: ctx.take_stopped_at().unwrap_or_else(|| ".".into()),
        problem,
    }
}
