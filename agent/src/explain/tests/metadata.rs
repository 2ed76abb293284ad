//! Hints raised by the cluster's metadata rather than by a policy's rules:
//! a Service with no backend for the port asked, and a policy the store
//! could not load. Each case is a test here and the worked example of its
//! code in `docs/reference/hints.md`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    cluster::{cluster, run},
    incomplete::{ISOLATE_API_BROKEN, broken_policy},
};
use crate::{
    enrich::store::Store,
    model::{Explanation, HintCode, Protocol, Verdict},
    testkit::mk_service,
};

/// One situation of the test cluster and the flow that shows its hint.
pub(crate) struct MetadataCase {
    pub(crate) name: &'static str,
    pub(crate) hint: HintCode,
    /// What the case adds to the test cluster, as the YAML a user would
    /// have applied (shown on the reference page).
    pub(crate) objects: &'static str,
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    verdict: Verdict,
    store: fn() -> Store,
}

impl MetadataCase {
    /// The engine's explanation of the case's flow.
    pub(crate) fn explain(&self) -> Explanation {
        run(
            &(self.store)(),
            self.from,
            self.to,
            self.port,
            self.protocol,
        )
    }
}

pub(crate) fn cases() -> Vec<MetadataCase> {
    vec![
        MetadataCase {
            name: "a Service with no endpoint for the port (none of its pods is ready, or its selector matches none)",
            hint: HintCode::ServiceWithoutEndpoints,
            objects: "# Service default/cache, and no EndpointSlice lists an endpoint for it\n\
                      {spec: {clusterIP: 10.96.0.20, ports: [{name: redis, port: 6379, protocol: TCP}]}}\n",
            from: "default/web",
            to: "default/svc/cache",
            port: 6379,
            protocol: Protocol::Tcp,
            verdict: Verdict::Allow,
            store: || {
                let mut store = cluster(&[]);
                store
                    .apply(crate::enrich::store::WatchEvent::Apply(mk_service(
                        "default",
                        "cache",
                        "10.96.0.20",
                        &[("redis", 6379, IntOrString::Int(6379), Protocol::Tcp)],
                    )))
                    .expect("the Service");
                store
            },
        },
        MetadataCase {
            name: "the policy that isolates the destination failed to load (`operator: in` instead of `In`)",
            hint: HintCode::ExplanationIncomplete,
            objects: "# NetworkPolicy default/isolate-api, rejected by the agent\n\
                      {podSelector: {matchExpressions: [{key: app, operator: in, values: [api]}]}, policyTypes: [Ingress]}\n",
            from: "default/web",
            to: "default/api",
            port: 8080,
            protocol: Protocol::Tcp,
            verdict: Verdict::Allow,
            store: || {
                let mut store = cluster(&[]);
                broken_policy(&mut store, ISOLATE_API_BROKEN);
                store
            },
        },
    ]
}

#[test]
fn each_case_raises_its_hint() {
    for case in cases() {
        let explanation = case.explain();
        assert_eq!(explanation.verdict, case.verdict, "{}", case.name);
        assert!(
            explanation.has_hint(case.hint),
            "{}: {:#?}",
            case.name,
            explanation.hints
        );
    }
}

#[test]
fn a_service_without_endpoints_names_the_service_and_port() {
    let explanation = cases()[0].explain();
    let hint = explanation
        .hints
        .iter()
        .find(|hint| hint.code == HintCode::ServiceWithoutEndpoints)
        .expect("the hint");
    assert!(
        hint.message.contains("default/cache") && hint.message.contains("6379"),
        "{}",
        hint.message
    );
}
