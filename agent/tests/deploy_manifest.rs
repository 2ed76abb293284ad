//! The Kubernetes manifests in `deploy/` against the binary they run and
//! the README that justifies them: every `DROPSCOPE_*` variable the
//! DaemonSet sets is a flag of the command it runs, and every value
//! parses; every capability, host path, host namespace and RBAC verb is a
//! row of the README's Security table, and is what the agent's code needs
//! for the configuration the DaemonSet gives it, no more; every mount that
//! can be read-only is; the container cannot gain privilege; the image is
//! a static binary on a base that needs no digest or is pinned by one.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use clap::{CommandFactory as _, Parser as _};
use dropscope::{
    cli::{Cli, Command, agent::Args},
    enrich::store::Kind,
    kernel::{btf, features},
    serve::Listen,
};
use serde::Deserialize as _;

const MANIFEST: &str = include_str!("../../deploy/dropscope.yaml");
const README: &str = include_str!("../../README.md");
const CONTAINERFILE: &str = include_str!("../../deploy/Containerfile");

fn documents() -> Vec<serde_norway::Value> {
    serde_norway::Deserializer::from_str(MANIFEST)
        .map(|document| serde_norway::Value::deserialize(document).expect("valid YAML document"))
        .collect()
}

fn daemonset_container() -> serde_norway::Value {
    let daemonset = documents()
        .into_iter()
        .find(|document| document["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    daemonset["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn every_document_has_kind_and_name() {
    let documents = documents();
    assert!(
        documents.len() >= 5,
        "namespace, account, role, binding, daemonset"
    );
    for document in &documents {
        assert!(document["kind"].as_str().is_some(), "{document:?}");
        assert!(
            document["metadata"]["name"].as_str().is_some(),
            "{document:?}"
        );
    }
}

/// The command line the DaemonSet's args and `DROPSCOPE_*` variables amount
/// to, checking that each variable is the env of a flag of that command.
fn daemonset_argv() -> Vec<String> {
    let container = daemonset_container();
    let args: Vec<String> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("string arg").to_owned())
        .collect();
    let command = Cli::command();
    let agent = command
        .find_subcommand(&args[0])
        .expect("the DaemonSet runs a dropscope subcommand");
    let mut argv = vec!["dropscope".to_owned()];
    argv.extend(args.iter().cloned());
    for variable in container["env"].as_sequence().expect("env") {
        let name = variable["name"].as_str().expect("env name");
        if name == "NODE_NAME" {
            assert_eq!(
                variable["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                Some("spec.nodeName"),
                "NODE_NAME comes from the downward API"
            );
            continue;
        }
        let value = variable["value"].as_str().expect("env value");
        let flag = command
            .get_arguments()
            .chain(agent.get_arguments())
            .find(|arg| arg.get_env().and_then(|env| env.to_str()) == Some(name))
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not the env of any flag of `dropscope {}`",
                    args[0]
                )
            });
        let long = flag.get_long().expect("a long flag");
        // Boolean switches take no value on the command line.
        if !flag.get_action().takes_values() {
            if value == "true" {
                argv.push(format!("--{long}"));
            }
        } else {
            argv.push(format!("--{long}"));
            argv.push(value.to_owned());
        }
    }
    argv
}

/// The agent's arguments as the DaemonSet sets them.
fn daemonset_agent_args() -> Box<Args> {
    let argv = daemonset_argv();
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Agent(args),
            ..
        }) => args,
        Ok(other) => panic!("the DaemonSet runs {:?}, not the agent", other.command),
        Err(error) => panic!("{argv:?}: {error}"),
    }
}

#[test]
fn the_daemonset_settings_are_flags_the_agent_accepts() {
    let argv = daemonset_argv();
    Cli::try_parse_from(&argv).unwrap_or_else(|error| panic!("{argv:?}: {error}"));
}

#[test]
fn the_probes_use_the_metrics_port_the_agent_listens_on() {
    let container = daemonset_container();
    let listen = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find(|variable| variable["name"].as_str() == Some("DROPSCOPE_METRICS_LISTEN"))
        .and_then(|variable| variable["value"].as_str())
        .expect("DROPSCOPE_METRICS_LISTEN");
    let port = container["ports"][0]["containerPort"]
        .as_u64()
        .expect("a metrics port");
    assert!(listen.ends_with(&format!(":{port}")), "{listen} vs {port}");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
}

#[test]
fn the_agent_stops_within_the_pods_grace_period() {
    let daemonset = documents()
        .into_iter()
        .find(|document| document["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    let grace = daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    let container = daemonset_container();
    let timeout = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find(|variable| variable["name"].as_str() == Some("DROPSCOPE_SHUTDOWN_TIMEOUT"))
        .and_then(|variable| variable["value"].as_str())
        .expect("DROPSCOPE_SHUTDOWN_TIMEOUT is set");
    let timeout = humantime::parse_duration(timeout).expect("a duration");
    assert!(
        timeout.as_secs() + 5 <= grace,
        "the shutdown deadline ({timeout:?}) leaves the kubelet's {grace} s grace period no margin"
    );
}

/// One row of the README's Security table: the grant (the first code span
/// of its first cell) and its kind (`capability`, `host path, read-only`,
/// `host namespace`, `RBAC: list, watch`).
#[derive(Debug)]
struct Grant {
    item: String,
    kind: String,
}

/// The rows of the table in the README's `## Security` section.
fn security_table() -> Vec<Grant> {
    let start = README
        .find("\n## Security\n")
        .expect("the README has a Security section");
    let section = &README[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    let rows: Vec<Grant> = section
        .lines()
        .filter(|line| line.starts_with('|'))
        // The header row, then the separator.
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(
                cells.len(),
                4,
                "grant | kind | what needs it | without it: {line}"
            );
            let item = cells[0]
                .split('`')
                .nth(1)
                .unwrap_or_else(|| panic!("the grant is a code span: {line}"));
            assert!(!cells[2].is_empty(), "what needs {item}? {line}");
            assert!(!cells[3].is_empty(), "what breaks without {item}? {line}");
            Grant {
                item: item.to_owned(),
                kind: cells[1].to_owned(),
            }
        })
        .collect();
    assert!(!rows.is_empty(), "the Security section has a table");
    rows
}

fn granted(kind: impl Fn(&str) -> bool) -> BTreeSet<String> {
    security_table()
        .into_iter()
        .filter(|grant| kind(&grant.kind))
        .map(|grant| grant.item)
        .collect()
}

fn daemonset_pod_spec() -> serde_norway::Value {
    documents()
        .into_iter()
        .find(|document| document["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet")["spec"]["template"]["spec"]
        .clone()
}

fn added_capabilities() -> BTreeSet<String> {
    let container = daemonset_container();
    let capabilities = &container["securityContext"]["capabilities"];
    let drop: Vec<&str> = capabilities["drop"]
        .as_sequence()
        .expect("capabilities.drop")
        .iter()
        .filter_map(|cap| cap.as_str())
        .collect();
    assert_eq!(
        drop,
        ["ALL"],
        "every capability is dropped, then added back one by one"
    );
    capabilities["add"]
        .as_sequence()
        .expect("capabilities.add")
        .iter()
        .map(|cap| cap.as_str().expect("a capability name").to_owned())
        .collect()
}

#[test]
fn every_capability_is_in_the_security_table_and_back() {
    let added = added_capabilities();
    let documented = granted(|kind| kind == "capability");
    assert_eq!(
        added, documented,
        "the DaemonSet's capabilities and the README's Security table differ"
    );
}

#[test]
fn the_capabilities_are_what_the_code_needs_for_the_daemonsets_hooks() {
    let args = daemonset_agent_args();
    let tc = !args.no_tc;
    let cgroup_hooks = !args.no_connects && !args.no_cgroup_hooks;
    let required: BTreeSet<String> = features::required_capabilities(tc, cgroup_hooks)
        .iter()
        .map(|capability| capability.name.to_owned())
        .collect();
    let optional: BTreeSet<String> = features::OPTIONAL_CAPABILITIES
        .iter()
        .map(|capability| capability.name.to_owned())
        .collect();
    let added = added_capabilities();
    let missing: Vec<_> = required.difference(&added).collect();
    assert!(
        missing.is_empty(),
        "the agent (tc {tc}, cgroup hooks {cgroup_hooks}) refuses to start without {missing:?}"
    );
    let unneeded: Vec<_> = added
        .iter()
        .filter(|name| !required.contains(*name) && !optional.contains(*name))
        .collect();
    assert!(
        unneeded.is_empty(),
        "nothing in the agent needs {unneeded:?} with this configuration (features::required_capabilities, OPTIONAL_CAPABILITIES)"
    );
    assert!(
        !args.bpf_stats,
        "--bpf-stats needs CAP_SYS_ADMIN (bpf(BPF_ENABLE_STATS)), which the DaemonSet does not grant"
    );
    assert!(
        args.cgroup_root.is_some(),
        "without DROPSCOPE_CGROUP_ROOT the agent may mount cgroup2, which needs CAP_SYS_ADMIN"
    );
}

/// Where each volume is mounted, and whether read-only.
fn mounts() -> Vec<(String, PathBuf, bool)> {
    daemonset_container()["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|mount| {
            (
                mount["name"].as_str().expect("name").to_owned(),
                PathBuf::from(mount["mountPath"].as_str().expect("mountPath")),
                mount["readOnly"].as_bool() == Some(true),
            )
        })
        .collect()
}

#[test]
fn every_host_path_is_in_the_security_table_with_its_mode() {
    let mounts = mounts();
    let mut in_manifest = BTreeSet::new();
    for volume in daemonset_pod_spec()["volumes"]
        .as_sequence()
        .expect("volumes")
    {
        let name = volume["name"].as_str().expect("volume name");
        let Some(path) = volume["hostPath"]["path"].as_str() else {
            continue;
        };
        let (_, _, read_only) = mounts
            .iter()
            .find(|(mount, _, _)| mount == name)
            .unwrap_or_else(|| panic!("volume {name} is not mounted"));
        let mode = if *read_only {
            "read-only"
        } else {
            "read-write"
        };
        in_manifest.insert(format!("{path} {mode}"));
    }
    let documented: BTreeSet<String> = security_table()
        .into_iter()
        .filter_map(|grant| {
            let mode = grant.kind.strip_prefix("host path, ")?;
            Some(format!("{} {mode}", grant.item))
        })
        .collect();
    assert_eq!(
        in_manifest, documented,
        "host paths (and their modes) of the DaemonSet and of the README's Security table differ"
    );
}

#[test]
fn every_mount_is_something_the_agent_opens_and_read_only_unless_it_writes_there() {
    let args = daemonset_agent_args();
    let socket_dir = match &args.listen.0 {
        Some(Listen::Unix(path)) => path.parent().map(Path::to_path_buf),
        _ => None,
    };
    let btf_dir = Path::new(btf::VMLINUX_BTF).parent().expect("a directory");
    assert_eq!(
        Path::new(btf::CONNTRACK_MODULE_BTF).parent(),
        Some(btf_dir),
        "both BTF files come from one mount"
    );
    let cgroup_root = args.cgroup_root.clone().expect("DROPSCOPE_CGROUP_ROOT");
    for (name, path, read_only) in mounts() {
        let writes = Some(&path) == socket_dir.as_ref();
        let reads = path == btf_dir || path == Path::new(features::TRACEFS) || path == cgroup_root;
        assert!(
            writes || reads,
            "{name} at {} is neither the API socket's directory, BTF, tracefs nor the cgroup root: nothing in the agent opens it",
            path.display()
        );
        assert_eq!(
            read_only,
            !writes,
            "{name} at {}: only the API socket's directory is written; every other mount is read-only",
            path.display()
        );
    }
}

#[test]
fn the_container_cannot_gain_privilege() {
    let pod = daemonset_pod_spec();
    let container = daemonset_container();
    let security = &container["securityContext"];
    assert_eq!(security["privileged"].as_bool(), Some(false));
    assert_eq!(
        security["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "no_new_privs"
    );
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    let seccomp = security["seccompProfile"]["type"]
        .as_str()
        .or_else(|| pod["securityContext"]["seccompProfile"]["type"].as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"));
    // Kubernetes grants added capabilities to uid 0 only (no ambient set):
    // the choice is explicit, and the README says why.
    assert_eq!(security["runAsUser"].as_u64(), Some(0));
    assert!(
        README.contains("Why uid 0 and not a non-root user"),
        "the README justifies uid 0"
    );
    for namespace in ["hostPID", "hostIPC"] {
        assert_ne!(pod[namespace].as_bool(), Some(true), "{namespace}");
    }
    let shared: BTreeSet<String> = ["hostNetwork", "hostPID", "hostIPC", "hostUsers"]
        .into_iter()
        .filter(|namespace| match *namespace {
            // hostUsers defaults to true: false means a user namespace.
            "hostUsers" => false,
            other => pod[other].as_bool() == Some(true),
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(
        shared,
        granted(|kind| kind == "host namespace"),
        "the host namespaces of the DaemonSet and of the README's Security table differ"
    );
}

/// The API group and resource the agent watches for each kind.
fn resource_of(kind: Kind) -> (&'static str, &'static str) {
    use k8s_openapi::{
        Resource,
        api::{
            core::v1::{Namespace, Node, Pod, Service},
            discovery::v1::EndpointSlice,
            networking::v1::NetworkPolicy,
        },
    };
    fn of<R: Resource>(kind: Kind) -> (&'static str, &'static str) {
        assert_eq!(R::KIND, kind.as_str());
        (R::GROUP, R::URL_PATH_SEGMENT)
    }
    // A new kind fails to compile here until its RBAC is decided.
    match kind {
        Kind::Namespace => of::<Namespace>(kind),
        Kind::Pod => of::<Pod>(kind),
        Kind::Service => of::<Service>(kind),
        Kind::EndpointSlice => of::<EndpointSlice>(kind),
        Kind::NetworkPolicy => of::<NetworkPolicy>(kind),
        Kind::Node => of::<Node>(kind),
    }
}

#[test]
fn rbac_is_list_and_watch_on_exactly_the_kinds_the_agent_watches() {
    let role = documents()
        .into_iter()
        .find(|document| document["kind"].as_str() == Some("ClusterRole"))
        .expect("a ClusterRole");
    let mut in_role = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let verbs: BTreeSet<&str> = rule["verbs"]
            .as_sequence()
            .expect("verbs")
            .iter()
            .filter_map(|verb| verb.as_str())
            .collect();
        assert_eq!(
            verbs,
            BTreeSet::from(["list", "watch"]),
            "the watchers list and watch, nothing else: {rule:?}"
        );
        assert!(rule["resourceNames"].is_null(), "{rule:?}");
        for group in rule["apiGroups"].as_sequence().expect("apiGroups") {
            for resource in rule["resources"].as_sequence().expect("resources") {
                in_role.insert((
                    group.as_str().expect("group").to_owned(),
                    resource.as_str().expect("resource").to_owned(),
                ));
            }
        }
    }
    let watched: BTreeSet<(String, String)> = Kind::ALL
        .into_iter()
        .map(resource_of)
        .map(|(group, resource)| (group.to_owned(), resource.to_owned()))
        .collect();
    assert_eq!(
        in_role, watched,
        "the ClusterRole and the kinds the agent watches (enrich::store::Kind::ALL) differ"
    );
    let documented = granted(|kind| kind == "RBAC: list, watch");
    let resources: BTreeSet<String> = watched.into_iter().map(|(_, resource)| resource).collect();
    assert_eq!(
        resources, documented,
        "the watched kinds and the README's Security table differ"
    );
}

#[test]
fn the_image_is_the_static_binary_on_a_base_pinned_or_empty() {
    let mut bases = 0;
    for line in CONTAINERFILE.lines().map(str::trim) {
        let Some(base) = line.strip_prefix("FROM ") else {
            continue;
        };
        bases += 1;
        let image = base.split_whitespace().next().expect("an image");
        let pinned = image.split_once("@sha256:").is_some_and(|(_, digest)| {
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit())
        });
        assert!(
            image == "scratch" || pinned,
            "{line}: a base image is pinned by digest"
        );
    }
    assert!(bases > 0, "the Containerfile has a FROM");
    assert!(
        CONTAINERFILE.lines().any(
            |line| line.starts_with("COPY target/x86_64-unknown-linux-musl/release/dropscope ")
        ),
        "the image holds the static (musl) binary, as `cargo xtask vm` builds it"
    );
    assert!(
        !CONTAINERFILE.lines().any(|line| line.starts_with("RUN ")),
        "nothing runs in the image at build time: there is no shell"
    );
    assert!(
        CONTAINERFILE.lines().any(|line| line.starts_with("USER 0")),
        "the image's user is the DaemonSet's (uid 0)"
    );
}

const COLLECTOR_MANIFEST: &str = include_str!("../../deploy/collector.yaml");

#[test]
fn the_collector_settings_are_flags_it_accepts_and_it_runs_unprivileged() {
    let documents: Vec<serde_norway::Value> =
        serde_norway::Deserializer::from_str(COLLECTOR_MANIFEST)
            .map(|document| {
                serde_norway::Value::deserialize(document).expect("valid YAML document")
            })
            .collect();
    let deployment = documents
        .iter()
        .find(|document| document["kind"].as_str() == Some("Deployment"))
        .expect("a Deployment");
    let service = documents
        .iter()
        .find(|document| document["kind"].as_str() == Some("Service"))
        .expect("a Service");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][0].as_str(), Some("collector"));
    let command = Cli::command();
    let collector = command
        .find_subcommand("collector")
        .expect("dropscope collector");
    let mut argv = vec!["dropscope".to_owned(), "collector".to_owned()];
    for variable in container["env"].as_sequence().expect("env") {
        let name = variable["name"].as_str().expect("env name");
        let value = variable["value"].as_str().expect("env value");
        let flag = command
            .get_arguments()
            .chain(collector.get_arguments())
            .find(|arg| arg.get_env().and_then(|env| env.to_str()) == Some(name))
            .unwrap_or_else(|| panic!("{name} is not the env of a flag of `dropscope collector`"));
        argv.push(format!("--{}", flag.get_long().expect("a long flag")));
        argv.push(value.to_owned());
    }
    Cli::try_parse_from(&argv).unwrap_or_else(|error| panic!("{argv:?}: {error}"));
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert!(
        security["capabilities"]["add"].is_null(),
        "no capability added"
    );
    assert_eq!(
        service["spec"]["ports"][0]["port"].as_u64(),
        Some(4245),
        "the Service exposes the gRPC port"
    );
}
