//! Tests of the snapshot loader: well-formed Lists (`list`), hostile files
//! (`hostile`: bombs, duplicate keys, secrets, size), mutated snapshots
//! (`mutation`) and properties over generated input (`properties`).

mod hostile;
mod list;
mod mutation;
mod properties;

use std::path::{Path, PathBuf};

use super::{Error, Parsed, Problem, read_document};

/// `agent/testdata/` joined with `name`.
fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// A fixture's text.
fn fixture(name: &str) -> String {
    std::fs::read_to_string(testdata(name)).expect("fixture")
}

/// The typed parse error of `text`, with `what` naming the case.
fn parse_error(text: &str, what: &str) -> (Option<usize>, String, Problem) {
    match read_document(text) {
        Err(Error::Parse {
            line,
            field,
            problem,
            ..
        }) => (line, field, problem),
        Err(other) => panic!("{what}: unexpected {other}"),
        Ok(parsed) => panic!("{what}: parsed {} items", parsed.0.len()),
    }
}

/// The parse of `text`, which must succeed.
fn parsed(text: &str, what: &str) -> Parsed {
    read_document(text).unwrap_or_else(|error| panic!("{what}: {error}"))
}
