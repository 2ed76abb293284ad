//! `dropscope explain` output: receives an [`Explanation`]; emits it as
//! readable text or as JSON on stdout.

use std::fmt::Write as _;

use crate::model::{DirectionReport, Explanation, HintCode, Identity};

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
        (true, true) => {
            let mut named: Vec<String> = report.policies.iter().map(ToString::to_string).collect();
            if report.policies_unlisted > 0 {
                named.push(format!("+{} more", report.policies_unlisted));
            }
            format!("isolated by {}", named.join(", "))
        }
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

/// The `INCOMPLETE:` block: what could decide the verdict but was not
/// loaded. Printed first, so the verdict is never read without it.
fn incomplete(out: &mut String, explanation: &Explanation) {
    let count = explanation.incomplete.len() as u64 + explanation.incomplete_unlisted;
    let objects = if count == 1 { "object" } else { "objects" };
    let _ = writeln!(
        out,
        "INCOMPLETE: the verdict may be wrong: {count} {objects} that could decide it could not be loaded"
    );
    for object in &explanation.incomplete {
        let _ = writeln!(
            out,
            "  - {object}: {} ({})",
            object.reason, object.relevance
        );
    }
    if explanation.incomplete_unlisted > 0 {
        let _ = writeln!(
            out,
            "  - {} more, not listed",
            explanation.incomplete_unlisted
        );
    }
}

/// The `STALE:` line: kinds used while their watch was failing.
fn stale(out: &mut String, explanation: &Explanation) {
    let Some(first) = explanation.stale.iter().map(|stale| stale.since).min() else {
        return;
    };
    let kinds: Vec<&str> = explanation
        .stale
        .iter()
        .map(|stale| stale.kind.as_str())
        .collect();
    let _ = writeln!(
        out,
        "STALE:   the last known {} (their watch has failed since {}): they may have changed",
        kinds.join(", "),
        humantime::format_rfc3339_seconds(first)
    );
}

/// The text form.
pub fn render(explanation: &Explanation) -> String {
    let mut out = String::new();
    if explanation.is_complete() {
        let _ = writeln!(out, "verdict: {}", explanation.verdict);
    } else {
        incomplete(&mut out, explanation);
        let _ = writeln!(
            out,
            "verdict: {} (INCOMPLETE: as far as the loaded objects say)",
            explanation.verdict
        );
    }
    stale(&mut out, explanation);
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
    // The incomplete hint says what the INCOMPLETE block already says.
    let hints: Vec<_> = explanation
        .hints
        .iter()
        .filter(|hint| hint.code != HintCode::ExplanationIncomplete)
        .collect();
    if !hints.is_empty() {
        out.push_str("hints:\n");
        for hint in hints {
            let _ = writeln!(out, "  - {}: {}", hint.code, hint.message);
        }
        if explanation.hints_unlisted > 0 {
            let _ = writeln!(out, "  - +{} more", explanation.hints_unlisted);
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
        assert!(!text.contains("INCOMPLETE"), "{text}");
        let json = serde_json::to_value(as_message(
            &explain(&View::new(&store), &flow).expect("explains"),
        ))
        .expect("json");
        assert_eq!(json["explanation"]["complete"], true, "{json}");
    }

    /// An allow computed without a policy that failed to load says
    /// INCOMPLETE before anything else, and JSON lists what is missing.
    #[test]
    fn an_incomplete_explanation_says_so_first() {
        let mut store = store([
            mk_namespace("default", &[]),
            pod(mk_pod("default", "web", "10.244.1.11", &[("app", "web")])),
            pod(mk_pod("default", "api", "10.244.1.10", &[("app", "api")])),
        ]);
        store
            .apply(crate::enrich::store::WatchEvent::Apply(mk_policy(
                "default",
                "isolate-api",
                "{podSelector: {matchExpressions: [{key: app, operator: in, values: [api]}]}}",
            )))
            .expect_err("invalid operator");
        let flow = Flow {
            from: "default/web".parse().expect("from"),
            to: "default/api".parse().expect("to"),
            port: 8080,
            protocol: Protocol::Tcp,
            original: None,
        };
        let explanation = explain(&View::new(&store), &flow).expect("explains");
        let text = render(&explanation);
        assert!(text.starts_with("INCOMPLETE: "), "{text}");
        for want in [
            "  - NetworkPolicy default/isolate-api: spec.podSelector.matchExpressions[0].operator",
            "verdict: allow (INCOMPLETE",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        assert!(!text.contains("policy_allows"), "{text}");
        let json = serde_json::to_value(as_message(&explanation)).expect("json");
        let explanation = &json["explanation"];
        assert!(explanation.get("complete").is_none(), "{json}");
        assert_eq!(explanation["incomplete"][0]["kind"], "NetworkPolicy");
        assert_eq!(explanation["incomplete"][0]["name"], "isolate-api");
        assert_eq!(explanation["hints"][0]["code"], "explanation_incomplete");
    }

    /// During an API server outage the last known objects still explain a
    /// flow, and the explanation names the kinds whose watch is failing
    /// and since when: in text, on the compact line's wire form and in
    /// JSON.
    #[test]
    fn an_explanation_made_during_an_outage_names_the_stale_kinds() {
        let mut store = store([
            mk_namespace("default", &[]),
            pod(mk_pod("default", "web", "10.244.1.11", &[("app", "web")])),
            pod(mk_pod("default", "api", "10.244.1.10", &[("app", "api")])),
        ]);
        let flow = Flow {
            from: "default/web".parse().expect("from"),
            to: "default/api".parse().expect("to"),
            port: 8080,
            protocol: Protocol::Tcp,
            original: None,
        };
        let current = explain(&View::new(&store), &flow).expect("explains");
        assert!(current.stale.is_empty(), "{current:?}");
        assert!(!render(&current).contains("STALE"));

        let outage =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000);
        let freshness = store.freshness_mut();
        freshness.delivered(crate::enrich::store::Kind::Namespace, outage);
        freshness.failed(
            crate::enrich::store::Kind::Pod,
            "connection refused".into(),
            outage,
        );
        freshness.failed(
            crate::enrich::store::Kind::NetworkPolicy,
            "connection refused".into(),
            outage + std::time::Duration::from_secs(5),
        );
        let stale = explain(&View::new(&store), &flow).expect("explains");
        assert_eq!(
            stale.verdict, current.verdict,
            "the last known objects decide"
        );
        let text = render(&stale);
        assert!(
            text.contains(
                "STALE:   the last known pods, networkpolicies (their watch has failed since 2026-11-30T"
            ),
            "{text}"
        );
        let json = serde_json::to_value(as_message(&stale)).expect("json");
        let kinds: Vec<&str> = json["explanation"]["stale"]
            .as_array()
            .expect("stale")
            .iter()
            .filter_map(|kind| kind["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["pods", "networkpolicies"], "{json}");
        assert_eq!(
            json["explanation"]["stale"][0]["since"], "2026-11-30T00:53:20+00:00",
            "{json}"
        );
    }
}
