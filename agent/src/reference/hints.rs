//! `docs/reference/hints.md`: every hint code with what it means (the doc
//! comment of its `HintCode` variant, read from the source) and, where the
//! explain tests hold a runbook trap that raises it, that trap as an
//! example: the policies, the flow, the hint's message and the suggested
//! fix, all computed by the engine as the page is generated.

use std::fmt::Write as _;

use super::{check_page, generated_from, root};
use crate::explain::tests::{
    cluster::{cluster, run},
    traps::{Trap, traps},
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
        let Some(trap) = example else {
            out.push_str(
                "\nNo runbook trap of the explain tests raises it; its cases are in `agent/src/explain/tests/`.\n",
            );
            continue;
        };
        let explanation = explain(trap);
        let _ = write!(out, "\nExample: {}.\n\n```yaml\n", trap.name);
        for (namespace, name, spec) in trap.policies {
            let _ = writeln!(out, "# NetworkPolicy {namespace}/{name}\n{spec}");
        }
        let _ = writeln!(
            out,
            "```\n\n`dropscope explain --from {} --to {} --port {} --protocol {}` → verdict `{}`:\n",
            trap.from, trap.to, trap.port, trap.protocol, explanation.verdict
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
    out
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
