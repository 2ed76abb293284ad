//! End-to-end: `cargo xtask demo --ci` (the `dropscope-demo` binary with
//! `--ci`, as xtask runs it) replays the four seed incidents, and its output
//! names, for each, the pods, the policy and the hint, and shows the flow
//! working after dropscope's suggested fix.

use std::process::Command;

use anyhow::{Context, Result, ensure};

/// What the summary line of each incident must say.
const EXPECTED: [(&str, &[&str]); 4] = [
    (
        "1/4",
        &[
            "shop/cart → kube-system/coredns",
            "policy shop/default-deny-egress",
            "hint dns_egress_denied",
            "shop/cart → shop/api",
            "hint default_deny",
            "after the fix: answered in",
            "HTTP/1.1 200 OK",
        ],
    ),
    (
        "2/4",
        &[
            "shop/cart → kube-system/coredns",
            "policy shop/allow-dns-egress",
            "hint service_port_not_target_port",
            "after the fix: answered in",
        ],
    ),
    (
        "3/4",
        &[
            "frontend/web → backend/api",
            "policy backend/allow-from-frontend",
            "hint namespace_label_missing",
            "after the fix: HTTP/1.1 200 OK",
        ],
    ),
    (
        "4/4",
        &[
            "node → default/web",
            "policy default/allow-from-pods",
            "hint kubelet_probe_blocked",
            "after the fix: HTTP/1.1 200 OK",
        ],
    ),
];

#[test]
fn the_demo_explains_each_seed_incident_and_its_fix_works() -> Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_dropscope-demo"))
        .arg("--ci")
        .output()
        .context("running dropscope-demo --ci")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "the demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary = stdout
        .split("\nSummary\n")
        .nth(1)
        .with_context(|| format!("no Summary in the demo's output:\n{stdout}"))?;
    for (number, phrases) in EXPECTED {
        let line = summary
            .lines()
            .find(|line| line.starts_with(&format!("✔ {number} ")))
            .with_context(|| format!("no ✔ line for incident {number} in:\n{summary}"))?;
        for phrase in phrases {
            ensure!(
                line.contains(phrase),
                "incident {number} does not say {phrase:?}: {line}"
            );
        }
    }
    // What the user would have seen, measured, and what dropscope printed.
    readme_excerpt_is_what_the_demo_prints(&stdout)?;
    for phrase in [
        "no answer after 2 tries",
        "connect timed out after",
        "dropscope observe --server unix:",
        "dropscope explain --snapshot",
        "suggested policy (smallest that allows this flow)",
        "kind: NetworkPolicy",
        "CONNECT_TIMEOUT",
        "DNS_UNANSWERED",
    ] {
        ensure!(
            stdout.contains(phrase),
            "the demo never printed {phrase:?}:\n{stdout}"
        );
    }
    Ok(())
}

/// Every line of the README's "Incident 2, as printed" excerpt, except
/// those it elides (`…`), and the incident line "Reading the output"
/// annotates, are lines the demo printed, numbers aside (addresses, times
/// and durations differ from run to run). Its drop line and JSON are held
/// to the printer and the contract by the agent's `reference::readme`.
fn readme_excerpt_is_what_the_demo_prints(stdout: &str) -> Result<()> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .context("reading README.md")?;
    let excerpt: Vec<&str> = readme
        .lines()
        .skip_while(|line| !line.contains("Incident 2, as printed:"))
        .skip(1)
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| line.trim().is_empty() || line.starts_with("    "))
        .filter(|line| !line.trim().is_empty() && !line.contains('…'))
        .map(|line| &line[4..])
        .collect();
    ensure!(
        excerpt.len() >= 20,
        "the README's demo excerpt is missing or short: {excerpt:?}"
    );
    let printed: Vec<String> = stdout.lines().map(numbers_aside).collect();
    for line in excerpt {
        let wanted = numbers_aside(line);
        ensure!(
            printed.contains(&wanted),
            "the README shows a line the demo does not print (numbers aside):\n{line}"
        );
    }
    // "Reading the output" annotates an incident line the demo prints.
    let annotated = readme
        .lines()
        .skip_while(|line| !line.starts_with("**The incident line**"))
        .find_map(|line| line.strip_prefix("    "))
        .context("the README's annotated incident line is missing")?;
    let wanted = numbers_aside(annotated);
    ensure!(
        printed.iter().any(|line| line.trim_start() == wanted),
        "the README annotates an incident line the demo does not print (numbers aside):\n{annotated}"
    );
    Ok(())
}

/// The line with every run of digits as `0` and no trailing fill.
fn numbers_aside(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('0');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out.trim_end_matches(['━', ' ']).to_owned()
}
