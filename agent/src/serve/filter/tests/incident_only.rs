//! The incident-only fields (incident_kind, place, dns_name), the kind
//! fields on incidents, and allow and deny lists mixing drops, incidents
//! and losses.

use dropscope_proto::v1::{
    DropEventKind, EventFilter as F, EventKind, FailurePlace, IncidentKind, Verdict,
};

use super::{
    Row, allow, both, check,
    events::{bare_incident, dns_incident, explained, incident, loss, plain, with_incident},
    filter, s,
};

/// A filter on incident kinds.
fn kind(values: &[IncidentKind]) -> F {
    filter(|f| f.incident_kind = values.iter().map(|&k| k as i32).collect())
}

/// A filter on failure places.
fn place(values: &[FailurePlace]) -> F {
    filter(|f| f.place = values.iter().map(|&p| p as i32).collect())
}

/// A filter on DNS name suffixes.
fn dns(values: &[&str]) -> F {
    filter(|f| f.dns_name = s(values))
}

/// A filter on event kinds.
fn event_kind(value: EventKind) -> F {
    filter(|f| f.event_kind = vec![value as i32])
}

/// Rows of the kind fields and the incident-only fields.
fn kind_rows() -> Vec<Row> {
    vec![
        allow(
            "event_kind INCIDENT: an incident",
            vec![event_kind(EventKind::Incident)],
            incident(),
            true,
        ),
        allow(
            "event_kind DROP: not an incident",
            vec![event_kind(EventKind::Drop)],
            incident(),
            false,
        ),
        allow(
            "event_kind INCIDENT: not a drop",
            vec![event_kind(EventKind::Incident)],
            plain(),
            false,
        ),
        allow(
            "drop_kind: an incident is no drop event",
            vec![filter(|f| f.drop_kind = vec![DropEventKind::New as i32])],
            incident(),
            false,
        ),
        allow(
            "incident_kind: the incident's kind",
            vec![kind(&[
                IncidentKind::DnsError,
                IncidentKind::ConnectTimeout,
            ])],
            incident(),
            true,
        ),
        allow(
            "incident_kind: another kind",
            vec![kind(&[IncidentKind::ConnectRefused])],
            incident(),
            false,
        ),
        allow(
            "incident_kind: a drop is no incident",
            vec![kind(&[IncidentKind::ConnectTimeout])],
            plain(),
            false,
        ),
        allow(
            "place: where the incident died",
            vec![place(&[FailurePlace::ThisNode])],
            incident(),
            true,
        ),
        allow(
            "place: another place",
            vec![place(&[FailurePlace::ThisNode])],
            bare_incident(),
            false,
        ),
        allow(
            "place: one of several",
            vec![place(&[FailurePlace::ThisNode, FailurePlace::BeyondNode])],
            bare_incident(),
            true,
        ),
        allow(
            "place: a drop is no incident",
            vec![place(&[FailurePlace::ThisNode])],
            explained(),
            false,
        ),
        allow(
            "dns_name: a suffix of whole labels",
            vec![dns(&["svc.cluster.local"])],
            dns_incident(),
            true,
        ),
        allow(
            "dns_name: the whole name",
            vec![dns(&["api.shop.svc.cluster.local"])],
            dns_incident(),
            true,
        ),
        allow(
            "dns_name: case-insensitive",
            vec![dns(&["Shop.SVC.cluster.local"])],
            dns_incident(),
            true,
        ),
        allow(
            "dns_name: leading and trailing dots are ignored",
            vec![dns(&[".cluster.local."])],
            dns_incident(),
            true,
        ),
        allow(
            "dns_name: the question's trailing dot is ignored",
            vec![dns(&["cluster.local"])],
            with_incident(dns_incident(), |i| {
                if let Some(dns) = i.dns.as_mut() {
                    dns.name = "api.shop.svc.cluster.local.".into();
                }
            }),
            true,
        ),
        allow(
            "dns_name: part of a label is not a suffix",
            vec![dns(&["c.cluster.local"])],
            dns_incident(),
            false,
        ),
        allow(
            "dns_name: longer than the name",
            vec![dns(&["x.api.shop.svc.cluster.local"])],
            dns_incident(),
            false,
        ),
        allow(
            "dns_name: another domain",
            vec![dns(&["example.com"])],
            dns_incident(),
            false,
        ),
        allow(
            "dns_name: a connect has no DNS exchange",
            vec![dns(&["cluster.local"])],
            incident(),
            false,
        ),
        allow(
            "dns_name: a drop has no DNS exchange",
            vec![dns(&["cluster.local"])],
            plain(),
            false,
        ),
    ]
}

/// Rows of allow and deny lists mixing drops, incidents and losses.
fn list_rows() -> Vec<Row> {
    let from_frontend_denied = || {
        filter(|f| {
            f.source_pod = s(&["shop/frontend"]);
            f.verdict = vec![Verdict::DenyIngress as i32];
        })
    };
    vec![
        allow(
            "the same filter finds the drop of a flow",
            vec![from_frontend_denied()],
            explained(),
            true,
        ),
        allow(
            "...and the incident it caused",
            vec![from_frontend_denied()],
            incident(),
            true,
        ),
        allow(
            "and across fields: incident_kind and place both match",
            vec![filter(|f| {
                f.incident_kind = vec![IncidentKind::ConnectTimeout as i32];
                f.place = vec![FailurePlace::ThisNode as i32];
            })],
            incident(),
            true,
        ),
        allow(
            "and across fields: the place fails the filter",
            vec![filter(|f| {
                f.incident_kind = vec![IncidentKind::ConnectTimeout as i32];
                f.place = vec![FailurePlace::BeyondNode as i32];
            })],
            incident(),
            false,
        ),
        allow(
            "or across filters: an incident filter or a drop filter (the drop)",
            vec![
                kind(&[IncidentKind::DnsUnanswered]),
                filter(|f| f.drop_kind = vec![DropEventKind::New as i32]),
            ],
            plain(),
            true,
        ),
        allow(
            "or across filters: an incident filter or a drop filter (the DNS incident)",
            vec![
                kind(&[IncidentKind::DnsUnanswered]),
                filter(|f| f.drop_kind = vec![DropEventKind::New as i32]),
            ],
            dns_incident(),
            true,
        ),
        allow(
            "or across filters: an incident filter or a drop filter (the connect)",
            vec![
                kind(&[IncidentKind::DnsUnanswered]),
                filter(|f| f.drop_kind = vec![DropEventKind::New as i32]),
            ],
            incident(),
            false,
        ),
        both(
            "allow minus deny: a joined drop's reason denies the incident",
            vec![kind(&[IncidentKind::ConnectTimeout])],
            vec![filter(|f| f.reason = s(&["NETFILTER_DROP"]))],
            incident(),
            false,
        ),
        both(
            "allow minus deny: a denied place removes the incident",
            vec![event_kind(EventKind::Incident)],
            vec![place(&[FailurePlace::BeyondNode])],
            bare_incident(),
            false,
        ),
        both(
            "allow minus deny: another place keeps it",
            vec![event_kind(EventKind::Incident)],
            vec![place(&[FailurePlace::BeyondNode])],
            incident(),
            true,
        ),
        both(
            "deny incident_kind: a drop is kept",
            vec![],
            vec![kind(&[IncidentKind::ConnectTimeout])],
            plain(),
            true,
        ),
        both(
            "deny incident_kind: the incident is removed",
            vec![],
            vec![kind(&[IncidentKind::ConnectTimeout])],
            incident(),
            false,
        ),
        both(
            "deny place: a drop is kept",
            vec![],
            vec![place(&[FailurePlace::ThisNode])],
            explained(),
            true,
        ),
        both(
            "deny dns_name: a drop is kept",
            vec![],
            vec![dns(&["cluster.local"])],
            plain(),
            true,
        ),
        both(
            "deny dns_name: a connect incident is kept",
            vec![],
            vec![dns(&["cluster.local"])],
            incident(),
            true,
        ),
        both(
            "deny dns_name: the DNS incident is removed",
            vec![],
            vec![dns(&["cluster.local"])],
            dns_incident(),
            false,
        ),
        both(
            "deny event_kind INCIDENT (--not --incidents): drops are kept",
            vec![filter(|f| f.source_pod = s(&["frontend"]))],
            vec![event_kind(EventKind::Incident)],
            explained(),
            true,
        ),
        both(
            "deny event_kind INCIDENT (--not --incidents): incidents are removed",
            vec![filter(|f| f.source_pod = s(&["frontend"]))],
            vec![event_kind(EventKind::Incident)],
            incident(),
            false,
        ),
        both(
            "deny a metadata field: an incident without identities is kept",
            vec![],
            vec![filter(|f| f.namespace = s(&["shop"]))],
            bare_incident(),
            true,
        ),
        // Losses.
        allow(
            "a loss passes incident_kind",
            vec![kind(&[IncidentKind::ConnectTimeout])],
            loss(),
            true,
        ),
        allow(
            "a loss passes place",
            vec![place(&[FailurePlace::ThisNode])],
            loss(),
            true,
        ),
        allow(
            "a loss passes dns_name",
            vec![dns(&["local"])],
            loss(),
            true,
        ),
        allow(
            "a loss passes event_kind INCIDENT",
            vec![event_kind(EventKind::Incident)],
            loss(),
            true,
        ),
        both(
            "a loss passes a deny list of incident fields",
            vec![],
            vec![
                kind(&[IncidentKind::ConnectTimeout]),
                place(&[FailurePlace::Unseen]),
                dns(&["local"]),
            ],
            loss(),
            true,
        ),
    ]
}

/// Every row of [`kind_rows`].
#[test]
fn incident_kind_rules() {
    check(kind_rows());
}

/// Every row of [`list_rows`].
#[test]
fn incident_list_rules() {
    check(list_rows());
}
