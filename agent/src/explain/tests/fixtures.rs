//! The seed scenarios as snapshot files (`agent/testdata/`), loaded by the
//! snapshot loader and explained: the right verdict and hint for each; and
//! the same objects fed as watch events give the same answer.

use std::path::{Path, PathBuf};

use crate::{
    enrich::{
        snapshot,
        store::{Kind, Store, WatchEvent},
        view::View,
    },
    explain::{Flow, explain},
    model::{HintCode, Protocol, Verdict},
};

struct Scenario {
    file: &'static str,
    from: &'static str,
    to: &'static str,
    port: u16,
    protocol: Protocol,
    verdict: Verdict,
    hint: HintCode,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        file: "dns-default-deny-egress.yaml",
        from: "default/network-connectivity-issue-pod",
        to: "kube-system/svc/kube-dns",
        port: 53,
        protocol: Protocol::Udp,
        verdict: Verdict::DenyEgress,
        hint: HintCode::DnsEgressDenied,
    },
    Scenario {
        file: "dns-dnat-5353.yaml",
        from: "shop/cart-6d9c8b7f5-2xkqp",
        to: "openshift-dns/svc/dns-default",
        port: 53,
        protocol: Protocol::Udp,
        verdict: Verdict::DenyEgress,
        hint: HintCode::ServicePortNotTargetPort,
    },
    Scenario {
        file: "cross-namespace-missing-label.yaml",
        from: "frontend/pod-a",
        to: "backend/pod-b",
        port: 8080,
        protocol: Protocol::Tcp,
        verdict: Verdict::DenyIngress,
        hint: HintCode::NamespaceLabelMissing,
    },
    Scenario {
        file: "kubelet-probe-blocked.yaml",
        from: "172.18.0.3",
        to: "payments/api-7f6d5c4b3-q8wzt",
        port: 8080,
        protocol: Protocol::Tcp,
        verdict: Verdict::DenyIngress,
        hint: HintCode::KubeletProbeBlocked,
    },
];

fn path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file)
}

fn flow(scenario: &Scenario) -> Flow {
    Flow {
        from: scenario.from.parse().expect("from"),
        to: scenario.to.parse().expect("to"),
        port: scenario.port,
        protocol: scenario.protocol,
        original: None,
    }
}

#[test]
fn seed_scenarios_give_the_right_verdict_and_hint() {
    for scenario in &SCENARIOS {
        let mut store = Store::new();
        let loaded = snapshot::load(&path(scenario.file), &mut store).expect("fixture loads");
        assert!(
            loaded.skipped.is_empty(),
            "{}: {:#?}",
            scenario.file,
            loaded.skipped
        );
        let explanation = explain(&View::new(&store), &flow(scenario)).expect("explainable");
        assert_eq!(
            explanation.verdict, scenario.verdict,
            "{}: {explanation:#?}",
            scenario.file
        );
        assert!(
            explanation.has_hint(scenario.hint),
            "{}: no {} in {:#?}",
            scenario.file,
            scenario.hint,
            explanation.hints
        );
        let json =
            serde_json::to_value(crate::print::explain::as_message(&explanation)).expect("json");
        assert!(
            json["explanation"]["verdict"]
                .as_str()
                .is_some_and(|verdict| verdict.contains("DENY")),
            "{}",
            scenario.file
        );
    }
}

/// The snapshot and the live watch feed the same store through the same
/// `apply`: replaying a fixture as watch events gives the same answers.
#[test]
fn watch_events_and_snapshot_build_the_same_store() {
    for scenario in &SCENARIOS {
        let text = std::fs::read_to_string(path(scenario.file)).expect("fixture");
        let (events, skipped) = snapshot::parse(&text, Path::new(scenario.file)).expect("parses");
        assert!(skipped.is_empty());
        let mut watched = Store::new();
        for kind in Kind::ALL {
            watched
                .apply(WatchEvent::RelistStart(kind))
                .expect("relist");
        }
        for (_, event) in events {
            watched.apply(event).expect("valid object");
        }
        for kind in Kind::ALL {
            watched.apply(WatchEvent::RelistDone(kind)).expect("relist");
        }
        let mut loaded = Store::new();
        snapshot::load(&path(scenario.file), &mut loaded).expect("loads");
        assert_eq!(watched.counts(), loaded.counts(), "{}", scenario.file);
        let a = explain(&View::new(&watched), &flow(scenario)).expect("explainable");
        let b = explain(&View::new(&loaded), &flow(scenario)).expect("explainable");
        assert_eq!(a, b, "{}", scenario.file);
    }
}
