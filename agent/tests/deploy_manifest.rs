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
    client::Server,
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
/// Variables taken from a ConfigMap must be optional (the agent runs
/// without it) and take their value from `view` when it is that ConfigMap.
fn daemonset_argv_with(view: Option<&serde_norway::Value>) -> Vec<String> {
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
        let value = match variable["value"].as_str() {
            Some(value) => value,
            None => {
                let reference = &variable["valueFrom"]["configMapKeyRef"];
                assert_eq!(
                    reference["optional"].as_bool(),
                    Some(true),
                    "{name} comes from a ConfigMap the agent must run without"
                );
                let from_view = view
                    .filter(|view| view["metadata"]["name"].as_str() == reference["name"].as_str());
                let key = reference["key"].as_str().expect("a ConfigMap key");
                match from_view.and_then(|view| view["data"][key].as_str()) {
                    Some(value) => value,
                    None => continue,
                }
            }
        };
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

/// The DaemonSet's command line on a cluster without a collector.
fn daemonset_argv() -> Vec<String> {
    daemonset_argv_with(None)
}

/// The agent's arguments as the DaemonSet sets them, with `view` (the
/// cluster-view ConfigMap of a collector manifest) applied when given.
fn daemonset_agent_args_with(view: Option<&serde_norway::Value>) -> Box<Args> {
    let argv = daemonset_argv_with(view);
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Agent(args),
            ..
        }) => args,
        Ok(other) => panic!("the DaemonSet runs {:?}, not the agent", other.command),
        Err(error) => panic!("{argv:?}: {error}"),
    }
}

/// The agent's arguments as the DaemonSet sets them.
fn daemonset_agent_args() -> Box<Args> {
    daemonset_agent_args_with(None)
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
    // With the collector deployed: the agent then also reads its CA.
    let collector = documents_of(COLLECTOR_MANIFEST);
    let args = daemonset_agent_args_with(Some(document(&collector, "ConfigMap")));
    let collector_ca = args
        .collector_tls_ca
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
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
        let reads = path == btf_dir
            || path == Path::new(features::TRACEFS)
            || path == cgroup_root
            || Some(&path) == collector_ca.as_ref();
        assert!(
            writes || reads,
            "{name} at {} is neither the API socket's directory, BTF, tracefs, the cgroup root nor the collector's CA: nothing in the agent opens it",
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
const NATS_COLLECTOR_MANIFEST: &str = include_str!("../../deploy/collector-nats.yaml");

fn documents_of(manifest: &str) -> Vec<serde_norway::Value> {
    serde_norway::Deserializer::from_str(manifest)
        .map(|document| serde_norway::Value::deserialize(document).expect("valid YAML document"))
        .collect()
}

/// The one document of `kind`.
fn document<'a>(documents: &'a [serde_norway::Value], kind: &str) -> &'a serde_norway::Value {
    let mut found = documents
        .iter()
        .filter(|document| document["kind"].as_str() == Some(kind));
    let first = found.next().unwrap_or_else(|| panic!("a {kind}"));
    assert!(found.next().is_none(), "one {kind}");
    first
}

/// The value of `name` in a container's env.
fn env_value<'a>(container: &'a serde_norway::Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|variable| variable["name"].as_str() == Some(name))
        .and_then(|variable| variable["value"].as_str())
}

#[test]
fn the_collector_settings_are_flags_it_accepts_and_it_runs_unprivileged() {
    for (file, manifest) in [
        ("collector.yaml", COLLECTOR_MANIFEST),
        ("collector-nats.yaml", NATS_COLLECTOR_MANIFEST),
    ] {
        let documents = documents_of(manifest);
        let deployment = document(&documents, "Deployment");
        let service = document(&documents, "Service");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"][0].as_str(), Some("collector"), "{file}");
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
                .unwrap_or_else(|| {
                    panic!("{file}: {name} is not the env of a flag of `dropscope collector`")
                });
            let long = flag.get_long().expect("a long flag");
            if !flag.get_action().takes_values() {
                if value == "true" {
                    argv.push(format!("--{long}"));
                }
            } else {
                argv.push(format!("--{long}"));
                argv.push(value.to_owned());
            }
        }
        Cli::try_parse_from(&argv).unwrap_or_else(|error| panic!("{file}: {argv:?}: {error}"));
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{file}");
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{file}"
        );
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{file}"
        );
        assert_eq!(
            security["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{file}"
        );
        assert!(
            security["capabilities"]["add"].is_null(),
            "{file}: no capability added"
        );
        assert_eq!(
            service["spec"]["ports"][0]["port"].as_u64(),
            Some(4245),
            "{file}: the Service exposes the gRPC port"
        );
        // Held events cost about 10 KB each at full rate (BENCHMARKS.md,
        // collector_ceiling): the limit must hold the history with room.
        let history: u64 = env_value(container, "DROPSCOPE_HISTORY")
            .expect("DROPSCOPE_HISTORY is set")
            .parse()
            .expect("a count");
        let limit = container["resources"]["limits"]["memory"]
            .as_str()
            .and_then(|limit| limit.strip_suffix("Mi"))
            .and_then(|mebibytes| mebibytes.parse::<u64>().ok())
            .expect("a memory limit in Mi");
        let needed = history * 12 * 1024 / (1024 * 1024) + 256;
        assert!(
            limit >= needed,
            "{file}: {history} held events need about {needed} MiB at full rate, the limit is {limit} MiB"
        );
    }
}

#[test]
fn without_a_collector_each_agent_serves_its_node_only() {
    let args = daemonset_agent_args();
    assert!(args.collector.is_none(), "no push without the ConfigMap");
    assert!(args.nats.nats.is_none(), "no NATS without the ConfigMap");
}

#[test]
fn with_the_collector_deployed_the_agents_push_to_its_service_by_name_over_tls() {
    let documents = documents_of(COLLECTOR_MANIFEST);
    let view = document(&documents, "ConfigMap");
    let service = document(&documents, "Service");
    let namespace = service["metadata"]["namespace"]
        .as_str()
        .expect("namespace");
    assert_eq!(
        view["metadata"]["namespace"].as_str(),
        Some(namespace),
        "the ConfigMap is in the agents' and the collector's namespace"
    );
    let args = daemonset_agent_args_with(Some(view));
    let expected = Server::Tcp {
        host: format!(
            "{}.{namespace}.svc",
            service["metadata"]["name"].as_str().expect("name")
        ),
        port: u16::try_from(service["spec"]["ports"][0]["port"].as_u64().expect("port"))
            .expect("a port"),
    };
    assert_eq!(
        args.collector.as_ref(),
        Some(&expected),
        "agents push to the Service"
    );
    // The collector serves TLS only off loopback: the agents must check
    // its certificate with the CA of the Secret the file says to create.
    let ca = args
        .collector_tls_ca
        .as_deref()
        .expect("the agents push over TLS");
    let (mount, mount_path, _) = mounts()
        .into_iter()
        .find(|(_, path, _)| ca.starts_with(path))
        .unwrap_or_else(|| panic!("{} is in no mount of the DaemonSet", ca.display()));
    let volume = daemonset_pod_spec()["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"].as_str() == Some(&mount))
        .cloned()
        .expect("the mount's volume");
    assert_eq!(
        volume["secret"]["optional"].as_bool(),
        Some(true),
        "the agents start before the collector's CA exists"
    );
    let secret = volume["secret"]["secretName"].as_str().expect("a Secret");
    let file = ca.strip_prefix(&mount_path).expect("inside the mount");
    let create = format!(
        "kubectl -n {namespace} create secret generic {secret} --from-file={}=",
        file.display()
    );
    assert!(
        COLLECTOR_MANIFEST.contains(&create),
        "collector.yaml says to create the CA Secret the agents read: {create}"
    );
    let container =
        &document(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        env_value(container, "DROPSCOPE_TLS_CERT").is_some(),
        "the collector serves TLS"
    );
    assert!(
        args.nats.nats.is_none(),
        "collector.yaml is the push set-up"
    );
}

#[test]
fn with_the_nats_collectors_deployed_the_agents_publish_to_their_nats() {
    let documents = documents_of(NATS_COLLECTOR_MANIFEST);
    let args = daemonset_agent_args_with(Some(document(&documents, "ConfigMap")));
    let container =
        &document(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        args.nats.nats.as_deref(),
        env_value(container, "DROPSCOPE_NATS"),
        "agents publish to the NATS the collectors read"
    );
    assert_eq!(
        Some(args.nats.nats_stream.as_str()),
        env_value(container, "DROPSCOPE_NATS_STREAM"),
        "and to the stream they read"
    );
    assert!(args.collector.is_none(), "no push in the NATS set-up");
}
