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
