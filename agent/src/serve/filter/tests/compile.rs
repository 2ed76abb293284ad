//! Filters that do not compile: each error names the field path, the value
//! and why.

use dropscope_proto::v1::{
    DropEventKind, EventFilter as F, EventKind, FailurePlace, IncidentKind, Protocol, Verdict,
};

use super::{filter, known_reasons, s};
use crate::serve::filter::{Filters, Problem};

/// A rule, the allow and deny lists, the field path and the value named,
/// and a check of the problem.
type Row = (
    &'static str,
    Vec<F>,
    Vec<F>,
    &'static str,
    &'static str,
    fn(&Problem) -> bool,
);

fn rows() -> Vec<Row> {
    vec![
        (
            "bad CIDR in the second allow filter",
            vec![F::default(), filter(|f| f.ip = s(&["10.0.0.300/8"]))],
            vec![],
            "allow[1].ip[0]",
            "10.0.0.300/8",
            |p| matches!(p, Problem::Cidr { .. }),
        ),
        (
            "bad CIDR in a deny filter, third value",
            vec![],
            vec![filter(|f| {
                f.destination_ip = s(&["10.0.0.0/8", "::1", "10.0.0.0/33"])
            })],
            "deny[0].destination_ip[2]",
            "10.0.0.0/33",
            |p| matches!(p, Problem::Cidr { .. }),
        ),
        (
            "bad label selector",
            vec![F::default(), filter(|f| f.label = s(&["env in (a,b"]))],
            vec![],
            "allow[1].label[0]",
            "env in (a,b",
            |p| matches!(p, Problem::Selector { .. }),
        ),
        (
            "empty label selector",
            vec![filter(|f| f.label = s(&["app=web", ""]))],
            vec![],
            "allow[0].label[1]",
            "",
            |p| matches!(p, Problem::Selector { .. }),
        ),
        (
            "unknown drop reason",
            vec![],
            vec![
                F::default(),
                filter(|f| f.reason = s(&["NO_SOCKET", "NOT_A_REASON"])),
            ],
            "deny[1].reason[1]",
            "NOT_A_REASON",
            |p| matches!(p, Problem::UnknownReason),
        ),
        (
            "UNKNOWN_ without a code",
            vec![filter(|f| f.reason = s(&["UNKNOWN_"]))],
            vec![],
            "allow[0].reason[0]",
            "UNKNOWN_",
            |p| matches!(p, Problem::UnknownReason),
        ),
        (
            "VERDICT_UNKNOWN",
            vec![filter(|f| {
                f.verdict = vec![Verdict::Allow as i32, Verdict::Unknown as i32]
            })],
            vec![],
            "allow[0].verdict[1]",
            "VERDICT_UNKNOWN",
            |p| {
                matches!(
                    p,
                    Problem::UnsetEnum {
                        enum_name: "Verdict"
                    }
                )
            },
        ),
        (
            "a number that is no Verdict",
            vec![filter(|f| f.verdict = vec![42])],
            vec![],
            "allow[0].verdict[0]",
            "42",
            |p| {
                matches!(
                    p,
                    Problem::NotEnum {
                        enum_name: "Verdict"
                    }
                )
            },
        ),
        (
            "EVENT_KIND_UNKNOWN",
            vec![],
            vec![filter(|f| f.event_kind = vec![EventKind::Unknown as i32])],
            "deny[0].event_kind[0]",
            "EVENT_KIND_UNKNOWN",
            |p| {
                matches!(
                    p,
                    Problem::UnsetEnum {
                        enum_name: "EventKind"
                    }
                )
            },
        ),
        (
            "DROP_EVENT_KIND_UNKNOWN",
            vec![filter(|f| {
                f.drop_kind = vec![DropEventKind::Unknown as i32]
            })],
            vec![],
            "allow[0].drop_kind[0]",
            "DROP_EVENT_KIND_UNKNOWN",
            |p| {
                matches!(
                    p,
                    Problem::UnsetEnum {
                        enum_name: "DropEventKind"
                    }
                )
            },
        ),
        (
            "PROTOCOL_UNKNOWN",
            vec![filter(|f| f.protocol = vec![Protocol::Unknown as i32])],
            vec![],
            "allow[0].protocol[0]",
            "PROTOCOL_UNKNOWN",
            |p| {
                matches!(
                    p,
                    Problem::UnsetEnum {
                        enum_name: "Protocol"
                    }
                )
            },
        ),
        (
            "unknown TCP flag",
            vec![filter(|f| f.tcp_flags = s(&["SYN,FOO"]))],
            vec![],
            "allow[0].tcp_flags[0]",
            "SYN,FOO",
            |p| matches!(p, Problem::TcpFlag { flag } if flag == "FOO"),
        ),
        (
            "port above 65535",
            vec![filter(|f| f.port = vec![80, 70000])],
            vec![],
            "allow[0].port[1]",
            "70000",
            |p| matches!(p, Problem::Port),
        ),
        (
            "pod with two slashes",
            vec![filter(|f| f.pod = s(&["a/b/c"]))],
            vec![],
            "allow[0].pod[0]",
            "a/b/c",
            |p| matches!(p, Problem::Form { .. }),
        ),
        (
            "service with an empty name",
            vec![filter(|f| f.service = s(&["shop/"]))],
            vec![],
            "allow[0].service[0]",
            "shop/",
            |p| matches!(p, Problem::Form { .. }),
        ),
        (
            "INCIDENT_KIND_UNKNOWN",
            vec![filter(|f| {
                f.incident_kind = vec![
                    IncidentKind::ConnectTimeout as i32,
                    IncidentKind::Unknown as i32,
                ]
            })],
            vec![],
            "allow[0].incident_kind[1]",
            "INCIDENT_KIND_UNKNOWN",
            |p| {
                matches!(
                    p,
                    Problem::UnsetEnum {
                        enum_name: "IncidentKind"
                    }
                )
            },
        ),
        (
            "a number that is no IncidentKind",
            vec![],
            vec![filter(|f| f.incident_kind = vec![99])],
            "deny[0].incident_kind[0]",
            "99",
            |p| {
                matches!(
                    p,
                    Problem::NotEnum {
                        enum_name: "IncidentKind"
                    }
                )
            },
        ),
        (
            "FAILURE_PLACE_UNKNOWN",
            vec![
                F::default(),
                filter(|f| f.place = vec![FailurePlace::Unknown as i32]),
            ],
            vec![],
            "allow[1].place[0]",
            "FAILURE_PLACE_UNKNOWN",
            |p| {
                matches!(
                    p,
                    Problem::UnsetEnum {
                        enum_name: "FailurePlace"
                    }
                )
            },
        ),
        (
            "a number that is no FailurePlace",
            vec![filter(|f| f.place = vec![-1])],
            vec![],
            "allow[0].place[0]",
            "-1",
            |p| {
                matches!(
                    p,
                    Problem::NotEnum {
                        enum_name: "FailurePlace"
                    }
                )
            },
        ),
        (
            "empty dns_name",
            vec![filter(|f| f.dns_name = s(&["svc.cluster.local", ""]))],
            vec![],
            "allow[0].dns_name[1]",
            "",
            |p| matches!(p, Problem::Empty),
        ),
        (
            "dns_name of dots only",
            vec![],
            vec![filter(|f| f.dns_name = s(&["."]))],
            "deny[0].dns_name[0]",
            ".",
            |p| matches!(p, Problem::Form { .. }),
        ),
        (
            "dns_name with an empty label",
            vec![filter(|f| f.dns_name = s(&["svc..local"]))],
            vec![],
            "allow[0].dns_name[0]",
            "svc..local",
            |p| matches!(p, Problem::Form { .. }),
        ),
        (
            "dns_name with a wildcard",
            vec![filter(|f| f.dns_name = s(&["*.svc.cluster.local"]))],
            vec![],
            "allow[0].dns_name[0]",
            "*.svc.cluster.local",
            |p| matches!(p, Problem::Form { .. }),
        ),
        (
            "empty namespace value",
            vec![filter(|f| f.namespace = s(&[""]))],
            vec![],
            "allow[0].namespace[0]",
            "",
            |p| matches!(p, Problem::Empty),
        ),
    ]
}

/// Every row of [`rows`] fails with its field path, value and problem.
#[test]
fn compile_errors_name_the_field() {
    let mut failures = Vec::new();
    for (rule, allow, deny, field, value, problem) in rows() {
        match Filters::compile(&allow, &deny, &known_reasons) {
            Ok(_) => failures.push(format!("{rule}: compiled")),
            Err(error) => {
                if error.field != field || error.value != value || !problem(&error.problem) {
                    failures.push(format!("{rule}: got {error:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The message reads `PATH: "VALUE" why (detail)`.
#[test]
fn compile_error_messages() {
    let cases = [
        (
            filter(|f| f.ip = s(&["10.0.0.300/8"])),
            "allow[1].ip[0]: \"10.0.0.300/8\" is not an IP address or CIDR (invalid IP address syntax)",
        ),
        (
            filter(|f| f.label = s(&["env in (a,b"])),
            "allow[1].label[0]: \"env in (a,b\" is not a label selector: expected ')' after \"env in (a,b\" at 11",
        ),
        (
            filter(|f| f.reason = s(&["bogus"])),
            "allow[1].reason[0]: \"bogus\" is not a drop reason of the running kernel (a name \
             without the SKB_DROP_REASON_ prefix, or UNKNOWN_<code>)",
        ),
        (
            filter(|f| f.dns_name = s(&["svc..local"])),
            "allow[1].dns_name[0]: \"svc..local\" is not a DNS name suffix of whole labels, \
             without wildcards (svc.cluster.local)",
        ),
        (
            filter(|f| f.place = vec![0]),
            "allow[1].place[0]: \"FAILURE_PLACE_UNKNOWN\" is the unset value of \
             dropscope.v1.FailurePlace, which no event carries",
        ),
        (
            filter(|f| f.verdict = vec![0]),
            "allow[1].verdict[0]: \"VERDICT_UNKNOWN\" is the unset value of dropscope.v1.Verdict, \
             which no event carries",
        ),
    ];
    for (filter, message) in cases {
        let allow = [F::default(), filter];
        match Filters::compile(&allow, &[], &known_reasons) {
            Ok(_) => panic!("{message}: compiled"),
            Err(error) => assert_eq!(error.to_string(), message),
        }
    }
}

/// Reason names are checked uppercased; lowercase known names compile.
#[test]
fn reasons_are_checked_uppercased() {
    let allow = [filter(|f| f.reason = s(&["no_socket", "unknown_7"]))];
    assert!(Filters::compile(&allow, &[], &known_reasons).is_ok());
}
