//! The reference pages in `docs/reference/`, generated from their sources
//! of truth so they cannot drift: the event schema from the `.proto` files,
//! the hint codes from their definitions and the runbook traps the explain
//! tests hold, the metrics from the registry the agent serves, and the flags
//! and environment variables from the command line parser.
//!
//! Each page has a test that renders it and compares it with the file in
//! the repository: CI fails when a proto comment, a hint, a metric or a
//! flag changed and the page was not regenerated. `cargo xtask docs`
//! rewrites the pages (the same tests with `DROPSCOPE_WRITE_DOCS=1`).
//! The README's output examples are held to the same sources: its JSON to
//! the contract, its drop line to the printer ([`readme`]).

mod cli;
mod hints;
mod metrics;
mod proto;
mod readme;

use std::path::PathBuf;

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The line every page starts with.
fn generated_from(source: &str) -> String {
    format!(
        "<!-- Generated from {source} by `cargo xtask docs`; CI fails when this page is not current. -->\n\n"
    )
}

/// Compares `docs/reference/<name>` with `rendered`, or writes it when
/// `DROPSCOPE_WRITE_DOCS` is set.
fn check_page(name: &str, rendered: &str) {
    let path = root().join("docs/reference").join(name);
    if std::env::var_os("DROPSCOPE_WRITE_DOCS").is_some() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating docs/reference");
        }
        std::fs::write(&path, rendered).expect("writing a reference page");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(old, new)| old != new)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()))
            + 1;
        panic!(
            "docs/reference/{name} is not current (first difference at line {line}): run `cargo xtask docs` and commit it"
        );
    }
}

/// A markdown table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
