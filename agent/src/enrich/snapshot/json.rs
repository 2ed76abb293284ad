//! JSON snapshots (`kubectl -o json`): read straight from the text by
//! serde_json through the walk in [`super::document`], one item at a time.

use serde::de::DeserializeSeed;

use super::{
    Error, Parsed,
    document::DocumentSeed,
    error::json_problem,
    walk::{Context, Pass},
};

/// Reads a JSON List.
pub(super) fn read(text: &str) -> Result<Parsed, Error> {
    let ctx = Context::new(Pass::Read, text.len());
    let mut deserializer = serde_json::Deserializer::from_str(text);
    DocumentSeed { ctx: &ctx }
        .deserialize(&mut deserializer)
        .and_then(|parsed| deserializer.end().map(|()| parsed))
        .map_err(|error| located(&ctx, &error))
}

/// The error at its position: the walk's own problem if it found one, else
/// serde_json's, by its constant text.
fn located(ctx: &Context, error: &serde_json::Error) -> Error {
    let line = (error.line() > 0).then_some(error.line());
    let column = line.map(|_| error.column());
    let (field, problem) = match ctx.take_fault() {
        Some(fault) => (fault.field, fault.problem),
        None => (
            ctx.take_stopped_at().unwrap_or_else(|| ".".into()),
            json_problem(&error.to_string()),
        ),
    };
    Error::Parse {
        line,
        column,
        field,
        problem,
    }
}
