//! The store through its one entry point, `apply`: the live watch path
//! (watch events), indexes, relists, deletes, invalid objects.

use std::net::IpAddr;

use crate::enrich::store::*;
use crate::{
    enrich::{cgroup, view::View},
    model::Identity,
    testkit::*,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// The live watch path: watcher events through the same `apply`.
#[test]
fn watch_events_update_every_index() {
    let mut store = Store::new();
    let events = [
        WatchEvent::RelistStart(Kind::Pod),
        WatchEvent::Apply(pod(mk_pod(
            "default",
            "web",
            "10.244.1.11",
            &[("app", "web")],
        ))),
        WatchEvent::Apply(pod(mk_pod("default", "old", "10.244.1.99", &[]))),
        WatchEvent::RelistDone(Kind::Pod),
        WatchEvent::Apply(mk_node("node-1", "10.0.0.1", "10.244.1.0/24")),
        WatchEvent::Apply(mk_policy(
            "default",
            "p",
            "{podSelector: {matchLabels: {app: web}}}",
        )),
    ];
    for event in events {
        store.apply(event).expect("valid");
    }
    let view = View::new(&store);
    assert_eq!(
        view.pod_by_ip(ip("10.244.1.11"))
            .map(|pod| pod.name.as_ref()),
        Some("web")
    );
    assert!(view.pod_by_uid("uid-default-web").is_some());
    assert_eq!(view.pods_in_with_label("default", "app", "web").count(), 1);
    assert_eq!(view.policies_in("default").count(), 1);
    assert_eq!(
        view.policies_maybe_selecting("default", &labels(&[("app", "web")]))
            .len(),
        1
    );
    assert!(
        view.policies_maybe_selecting("default", &labels(&[("app", "api")]))
            .is_empty(),
        "a policy is found through its podSelector's equality"
    );

    // The pod moves to another IP: the old address is forgotten.
    store
        .apply(WatchEvent::Apply(pod(mk_pod(
            "default",
            "web",
            "10.244.1.12",
            &[("app", "web")],
        ))))
        .expect("valid");
    let view = View::new(&store);
    assert!(view.pod_by_ip(ip("10.244.1.11")).is_none());
    assert!(view.pod_by_ip(ip("10.244.1.12")).is_some());
    assert!(matches!(
        view.identify(ip("10.244.1.11"), None),
        Identity::Unknown { .. }
    ));
    assert!(matches!(
        view.identify(ip("10.0.0.1"), Some("node-1")),
        Identity::Node {
            is_kubelet_of_destination: true,
            ..
        }
    ));
    assert!(matches!(
        view.identify(ip("8.8.8.8"), None),
        Identity::External { .. }
    ));

    // A relist that no longer has `old` removes it.
    for event in [
        WatchEvent::RelistStart(Kind::Pod),
        WatchEvent::Apply(pod(mk_pod(
            "default",
            "web",
            "10.244.1.12",
            &[("app", "web")],
        ))),
        WatchEvent::RelistDone(Kind::Pod),
    ] {
        store.apply(event).expect("valid");
    }
    assert_eq!(store.counts().pods, 1);
    assert!(View::new(&store).pod_by_ip(ip("10.244.1.99")).is_none());

    // Deletes remove from every index.
    store
        .apply(WatchEvent::Delete(pod(mk_pod(
            "default",
            "web",
            "10.244.1.12",
            &[],
        ))))
        .expect("delete");
    store
        .apply(WatchEvent::Delete(mk_policy(
            "default",
            "p",
            "{podSelector: {}}",
        )))
        .expect("delete");
    let web_labels = labels(&[("app", "web")]);
    let view = View::new(&store);
    assert_eq!(view.counts().pods, 0);
    assert_eq!(view.pods_in_with_label("default", "app", "web").count(), 0);
    assert_eq!(view.policies_in("default").count(), 0);
    assert!(
        view.policies_maybe_selecting("default", &web_labels)
            .is_empty()
    );
    assert!(view.pod_by_uid("uid-default-web").is_none());
}

#[test]
fn a_service_vip_resolves_with_its_port_name_and_backend() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let store = store([
        pod(mk_pod(
            "kube-system",
            "coredns",
            "10.244.1.53",
            &[("k8s-app", "kube-dns")],
        )),
        mk_service(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            &[(
                "dns",
                53,
                IntOrString::Int(5353),
                crate::model::Protocol::Udp,
            )],
        ),
    ]);
    let view = View::new(&store);
    let identity = view.identify_service(
        ip("10.96.0.10"),
        53,
        crate::model::Protocol::Udp,
        Some((ip("10.244.1.53"), 5353)),
    );
    let Some(Identity::Service {
        name,
        port_name,
        backend: Some(backend),
        ..
    }) = identity
    else {
        panic!("not resolved: {identity:?}");
    };
    assert_eq!(
        (name.as_str(), port_name.as_deref()),
        ("kube-dns", Some("dns"))
    );
    assert_eq!(
        (backend.port, backend.pod.as_deref()),
        (5353, Some("kube-system/coredns"))
    );
    assert!(matches!(
        view.identify(ip("10.96.0.10"), None),
        Identity::Service { .. }
    ));
    assert!(
        view.identify_service(ip("10.96.0.11"), 53, crate::model::Protocol::Udp, None)
            .is_none()
    );
}

#[test]
fn orphan_policies_follow_pod_changes() {
    let mut store = store([mk_policy(
        "default",
        "api",
        "{podSelector: {matchLabels: {app: api}}}",
    )]);
    assert!(
        View::new(&store)
            .orphan_policies()
            .any(|policy| policy.name.as_ref() == "api")
    );
    store
        .apply(WatchEvent::Apply(pod(mk_pod(
            "default",
            "api-1",
            "10.244.1.10",
            &[("app", "api")],
        ))))
        .expect("valid");
    assert_eq!(View::new(&store).orphan_policies().count(), 0);
    assert_eq!(View::new(&store).orphans_in("default").count(), 0);
    // A second selected pod, then a host-network one (selectors never
    // match it): the policy stays selected until the last selectable pod
    // goes.
    store
        .apply(WatchEvent::Apply(pod(mk_pod(
            "default",
            "api-2",
            "10.244.1.11",
            &[("app", "api")],
        ))))
        .expect("valid");
    store
        .apply(WatchEvent::Apply(pod(host_network(mk_pod(
            "default",
            "api-host",
            "10.0.0.1",
            &[("app", "api")],
        )))))
        .expect("valid");
    for name in ["api-1", "api-2"] {
        assert_eq!(View::new(&store).orphan_policies().count(), 0, "{name}");
        store
            .apply(WatchEvent::Delete(pod(mk_pod(
                "default",
                name,
                "10.244.1.10",
                &[],
            ))))
            .expect("delete");
    }
    assert_eq!(View::new(&store).orphan_policies().count(), 1);
    assert_eq!(
        View::new(&store)
            .orphans_in("default")
            .map(|policy| policy.name.as_ref())
            .collect::<Vec<_>>(),
        ["api"]
    );
    assert_eq!(View::new(&store).orphans_in("other").count(), 0);
    store
        .apply(WatchEvent::Delete(mk_policy(
            "default",
            "api",
            "{podSelector: {}}",
        )))
        .expect("delete");
    assert_eq!(View::new(&store).orphan_policies().count(), 0);
}

#[test]
fn an_invalid_update_removes_the_previous_version() {
    let mut store = Store::new();
    store
        .apply(WatchEvent::Apply(mk_policy(
            "default",
            "p",
            "{podSelector: {}}",
        )))
        .expect("valid");
    let error = store
        .apply(WatchEvent::Apply(mk_policy(
            "default",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}",
        )))
        .expect_err("named port with endPort is invalid");
    assert!(
        error
            .to_string()
            .contains("spec.ingress[0].ports[0].endPort"),
        "{error}"
    );
    assert_eq!(store.counts().policies, 0);
}

/// Validation rules of the reference the API server enforces; the
/// store rejects them the same way, naming the field.
#[test]
fn invalid_policies_are_rejected_naming_the_field() {
    let rows = [
        (
            "endPort requires port",
            "{podSelector: {}, egress: [{ports: [{endPort: 90}]}]}",
            "spec.egress[0].ports[0].endPort",
        ),
        (
            "endPort not below port",
            "{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "a named port cannot have endPort",
            "{podSelector: {}, ingress: [{ports: [{port: web, endPort: 80}]}]}",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "ipBlock excludes selectors in the same peer",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "spec.ingress[0].from[0]",
        ),
        (
            "a peer must set something",
            "{podSelector: {}, ingress: [{from: [{}]}]}",
            "spec.ingress[0].from[0]",
        ),
        (
            "ipBlock cidr must parse",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
            "spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            "protocol is TCP, UDP or SCTP",
            "{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}",
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            "In needs values",
            "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
            "spec.podSelector.matchExpressions[0].values",
        ),
        (
            "Exists takes no values",
            "{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}",
            "spec.podSelector.matchExpressions[0].values",
        ),
        (
            "policyTypes are Ingress or Egress",
            "{podSelector: {}, policyTypes: [Sideways]}",
            "spec.policyTypes[0]",
        ),
    ];
    for (rule, spec, field) in rows {
        let error = Store::new()
            .apply(WatchEvent::Apply(mk_policy("default", "p", spec)))
            .expect_err(rule);
        assert!(error.to_string().contains(field), "{rule}: {error}");
    }
}

#[test]
fn cgroup_path_resolves_to_the_pod() {
    let mut pod_object = mk_pod("default", "web", "10.244.1.11", &[]);
    pod_object.metadata.uid = Some("0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e".into());
    let store = store([pod(pod_object)]);
    let view = View::new(&store);
    let found = cgroup::pod_for_cgroup(
        &view,
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b9a3c4e_5f61_4d2a_9c8e_7f1a2b3c4d5e.slice/cri-containerd-1.scope",
    );
    assert_eq!(found.map(|pod| pod.name.as_ref()), Some("web"));
}

/// A UID is kept as 16 bytes when it is a canonical UUID, as text
/// otherwise; either way it reads back as written and finds its pod.
#[test]
fn uids_read_back_as_written() {
    let uids = [
        "0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5e",
        "0B9A3C4E-5F61-4D2A-9C8E-7F1A2B3C4D5E",
        "0b9a3c4e-5f61-4d2a-9c8e-7f1a2b3c4d5g",
        "0b9a3c4e_5f61-4d2a-9c8e-7f1a2b3c4d5e",
        "uid-default-web",
        "",
    ];
    for uid in uids {
        assert_eq!(crate::enrich::object::Uid::new(uid).to_string(), uid);
    }
    assert!(matches!(
        crate::enrich::object::Uid::new(uids[0]),
        crate::enrich::object::Uid::Uuid(_)
    ));
    assert!(matches!(
        crate::enrich::object::Uid::new(uids[1]),
        crate::enrich::object::Uid::Text(_)
    ));
    let pods = uids[..5].iter().enumerate().map(|(index, uid)| {
        let mut object = mk_pod(
            "default",
            &format!("pod-{index}"),
            &format!("10.244.1.{}", index + 1),
            &[],
        );
        object.metadata.uid = Some((*uid).into());
        pod(object)
    });
    let store = store(pods);
    let view = View::new(&store);
    for (index, uid) in uids[..5].iter().enumerate() {
        let found = view.pod_by_uid(uid).expect("found by uid");
        assert_eq!(found.name.as_ref(), format!("pod-{index}"));
        match found.identity() {
            Identity::Pod { uid: read, .. } => assert_eq!(read, *uid),
            other => panic!("not a pod: {other:?}"),
        }
    }
}

#[test]
fn workloads_are_walked_up_from_owner_references() {
    let mut web = mk_pod(
        "default",
        "web-5d8f7c9b6-abcde",
        "10.244.1.11",
        &[("pod-template-hash", "5d8f7c9b6")],
    );
    web.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-5d8f7c9b6".into(),
            uid: "x".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    let store = store([pod(web)]);
    let identity = View::new(&store).identify(ip("10.244.1.11"), None);
    let Identity::Pod {
        workload: Some(workload),
        ..
    } = identity
    else {
        panic!("no workload: {identity:?}");
    };
    assert_eq!(
        (workload.kind.as_str(), workload.name.as_str()),
        ("Deployment", "web")
    );
}

#[test]
fn interned_values_of_deleted_objects_go_without_a_relist() {
    let mut store = Store::new();
    // Pods come and go, each with labels no other pod has: a watch that
    // never relists must not keep every label it ever saw.
    let churn = 3 * PRUNE_AFTER;
    for index in 0..churn {
        let name = format!("job-{index}");
        let labels = [("run", name.as_str())];
        let object = pod(mk_pod("batch", &name, "10.244.9.9", &labels));
        store
            .apply(WatchEvent::Apply(object.clone()))
            .expect("a valid pod");
        store.apply(WatchEvent::Delete(object)).expect("a delete");
    }
    assert_eq!(store.counts().pods, 0);
    assert!(
        store.interned() < 2 * PRUNE_AFTER,
        "{} values interned after {churn} pods came and went",
        store.interned()
    );
}
