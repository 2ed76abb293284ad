//! `docs/reference/hints.md`: every hint code with what it means (the doc
//! comment of its `HintCode` variant, read from the source) and, where the
//! explain tests hold a runbook trap that raises it, that trap as an
//! example: the policies, the flow, the hint's message and the suggested
//! fix, all computed by the engine as the page is generated. Hints the
//! cluster's metadata raises (no endpoints, an object that failed to load)
//! take their example from the explain tests' metadata cases.

use std::fmt::Write as _;

use super::{check_page, generated_from, root};
use crate::{
    explain::tests::{
        cluster::{cluster, run},
        metadata::cases,
        traps::{Trap, traps},
    },
    model::Explanation,
};

/// (variant, code, meaning) of every `HintCode`, from `model/verdict.rs`.
fn codes() -> Vec<(String, String, String)> {
    let source = std::fs::read_to_string(root().join("agent/src/model/verdict.rs"))
        .expect("reading model/verdict.rs");
    let body = source
        .split("pub enum HintCode {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("the HintCode enum");
    let mut docs = Vec::new();
    let mut comment = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            comment.push(text.trim().to_owned());
        } else if let Some(variant) = line.strip_suffix(',') {
            docs.push((variant.to_owned(), comment.join(" ")));
            comment.clear();
        }
    }
    docs.into_iter()
        .map(|(variant, meaning)| {
            let arm = format!("Self::{variant} => \"");
            let code = source
                .split(&arm)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no code for HintCode::{variant}"))
                .to_owned();
            (variant, code, meaning)
        })
        .collect()
}

fn render() -> String {
    let mut out = generated_from(
        "HintCode in agent/src/model/verdict.rs and the runbook traps of agent/src/explain/tests/traps.rs",
    );
    out.push_str(
        "# Hint codes\n\n\
         An explanation names the traps a flow fell into as hints, most specific first: a stable `code` \
         (what `observe --hint` filters on) and a `message` naming the objects involved. The examples \
         below run against the test cluster of the explain tests: namespaces `default`, `frontend` \
         (`team=web`), `backend` and `kube-system`; nodes `node-1` (10.0.0.1, pods 10.244.1.0/24) and \
         `node-2`; Service `kube-system/kube-dns` 53 → 5353.\n",
    );
    let traps = traps();
    for (_, code, meaning) in codes() {
        let _ = write!(out, "\n## `{code}`\n\n{meaning}\n");
        // The trap made for this code, else one that raises it as well.
        let explain = |trap: &Trap| {
            run(
                &cluster(trap.policies),
                trap.from,
                trap.to,
                trap.port,
                trap.protocol,
            )
        };
        let example = traps
            .iter()
            .find(|trap| trap.hints.iter().any(|hint| hint.as_str() == code))
            .or_else(|| {
                traps.iter().find(|trap| {
                    explain(trap)
                        .hints
                        .iter()
                        .any(|hint| hint.code.as_str() == code)
                })
            });
        if let Some(trap) = example {
            let _ = write!(out, "\nExample: {}.\n\n```yaml\n", trap.name);
            for (namespace, name, spec) in trap.policies {
                let _ = writeln!(out, "# NetworkPolicy {namespace}/{name}\n{spec}");
            }
            let command = explain_command(trap.from, trap.to, trap.port, trap.protocol);
            example_outcome(&mut out, &code, &command, &explain(trap));
        } else if let Some(case) = cases().into_iter().find(|case| case.hint.as_str() == code) {
            let _ = write!(
                out,
                "\nExample: {}.\n\n```yaml\n{}",
                case.name, case.objects
            );
            let command = explain_command(case.from, case.to, case.port, case.protocol);
            example_outcome(&mut out, &code, &command, &case.explain());
        } else {
            panic!(
                "hint `{code}` has no example: add a trap (explain/tests/traps.rs) or a metadata case (explain/tests/metadata.rs) that raises it"
            );
        }
    }
    out
}

/// The `dropscope explain` command line of an example's flow.
fn explain_command(from: &str, to: &str, port: u16, protocol: impl std::fmt::Display) -> String {
    format!("dropscope explain --from {from} --to {to} --port {port} --protocol {protocol}")
}

/// Closes an example's YAML block and adds the verdict, the message of the
/// hint `code` and the fix dropscope suggests.
fn example_outcome(out: &mut String, code: &str, command: &str, explanation: &Explanation) {
    let _ = writeln!(
        out,
        "```\n\n`{command}` → verdict `{}`:\n",
        explanation.verdict
    );
    for hint in explanation
        .hints
        .iter()
        .filter(|hint| hint.code.as_str() == code)
    {
        let _ = writeln!(out, "> {}\n", hint.message);
    }
    if let Some(fix) = &explanation.suggested_policy {
        let _ = writeln!(out, "The fix dropscope suggests:\n\n```yaml\n{}```", fix);
    }
}

#[test]
fn hints_page_is_current() {
    check_page("hints.md", &render());
}

#[test]
fn every_hint_code_has_its_meaning() {
    let codes = codes();
    assert!(codes.len() >= 20, "{codes:?}");
    for (variant, code, meaning) in codes {
        assert!(
            !meaning.is_empty(),
            "HintCode::{variant} has no doc comment"
        );
        assert!(
            code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{code}"
        );
    }
}
