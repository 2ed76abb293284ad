//! `dropscope explain` output: receives an [`Explanation`]; emits it as
//! readable text or as JSON on stdout.

use std::fmt::Write as _;

use crate::model::{DirectionReport, Explanation, Identity};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Readable text.
    Text,
    /// One JSON object: the proto3 JSON mapping of
    /// `dropscope.v1.ExplainResponse`, as the Explain RPC answers.
    Json,
}

/// Prints the explanation.
pub fn print(explanation: &Explanation, format: Format) -> Result<(), serde_json::Error> {
    match format {
        Format::Text => print!("{}", render(explanation)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&as_message(explanation))?
        ),
    }
    Ok(())
}

/// The explanation as the contract's message.
pub fn as_message(explanation: &Explanation) -> dropscope_proto::v1::ExplainResponse {
    dropscope_proto::v1::ExplainResponse {
        explanation: Some(crate::convert::explanation(explanation)),
    }
}

fn direction(out: &mut String, label: &str, report: &DirectionReport) {
    let pod = report.pod.as_deref().unwrap_or("-");
    let state = match (report.pod.is_some(), report.isolated) {
        (false, _) => "not a pod NetworkPolicy isolates".to_string(),
        (true, false) => "not isolated".to_string(),
        (true, true) => format!(
            "isolated by {}",
            report
                .policies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let verdict = if report.allowed {
        match report.allowed_by.first() {
            Some(rule) => format!("allowed by {} rule {}", rule.policy, rule.rule),
            None => "allowed".to_string(),
        }
    } else {
        "DENIED".to_string()
    };
    let _ = writeln!(out, "{label:<8} {pod}: {state}; {verdict}");
}

fn end(identity: &Identity, ip: std::net::IpAddr) -> String {
    format!("{identity} ({ip})")
}

/// The text form.
pub fn render(explanation: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "verdict: {}", explanation.verdict);
    let _ = writeln!(
        out,
        "flow:    {} -> {} {}/{}",
        end(&explanation.source.identity, explanation.source.ip),
        end(
            &explanation.destination.identity,
            explanation.destination.ip
        ),
        explanation.protocol,
        explanation.port
    );
    if let Some(Identity::Service {
        namespace,
        name,
        port_name,
        backend,
    }) = &explanation.service
    {
        let _ = write!(out, "service: {namespace}/{name}");
        if let Some(port_name) = port_name {
            let _ = write!(out, " port {port_name}");
        }
        if let Some(backend) = backend {
            let _ = write!(
                out,
                " -> backend {}:{} (policies see this, after DNAT)",
                backend.ip, backend.port
            );
        }
        out.push('\n');
    }
    direction(&mut out, "egress", &explanation.egress);
    direction(&mut out, "ingress", &explanation.ingress);
    if let Some(miss) = &explanation.closest_miss {
        let _ = writeln!(
            out,
            "closest: {} {}[{}]: {}",
            miss.policy, miss.direction, miss.rule, miss.why
        );
    }
    if !explanation.hints.is_empty() {
        out.push_str("hints:\n");
        for hint in &explanation.hints {
            let _ = writeln!(out, "  - {}: {}", hint.code, hint.message);
        }
    }
    if let Some(policy) = &explanation.suggested_policy {
        out.push_str("suggested policy (smallest that allows this flow):\n");
        for line in policy.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        enrich::view::View,
        explain::{Flow, explain},
        model::Protocol,
        testkit::*,
    };

    #[test]
    fn text_names_verdict_policies_hints_and_fix() {
        let store = store([
            mk_namespace("default", &[]),
            pod(mk_pod("default", "web", "10.244.1.11", &[("app", "web")])),
            pod(mk_pod("default", "api", "10.244.1.10", &[("app", "api")])),
            mk_policy(
                "default",
                "deny-all",
                "{podSelector: {}, policyTypes: [Ingress]}",
            ),
        ]);
        let flow = Flow {
            from: "default/web".parse().expect("from"),
            to: "default/api".parse().expect("to"),
            port: 8080,
            protocol: Protocol::Tcp,
            original: None,
        };
        let text = render(&explain(&View::new(&store), &flow).expect("explains"));
        for want in [
            "verdict: deny_ingress",
            "isolated by default/deny-all",
            "default_deny:",
            "kind: NetworkPolicy",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
    }
}
