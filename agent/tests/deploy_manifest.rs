//! The Kubernetes manifests in `deploy/` against the binary they run: every
//! `DROPSCOPE_*` variable the DaemonSet sets is a flag of the command it
//! runs, and every value parses, so a manifest cannot ship a setting the
//! agent would reject at start.

use clap::{CommandFactory as _, Parser as _};
use dropscope::cli::Cli;
use serde::Deserialize as _;

const MANIFEST: &str = include_str!("../../deploy/dropscope.yaml");

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

#[test]
fn the_daemonset_settings_are_flags_the_agent_accepts() {
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
fn the_agent_runs_with_capabilities_not_privileged() {
    let container = daemonset_container();
    let security = &container["securityContext"];
    assert_eq!(security["privileged"].as_bool(), Some(false));
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_sequence()
        .expect("capabilities")
        .iter()
        .filter_map(|cap| cap.as_str())
        .collect();
    for needed in ["BPF", "PERFMON", "NET_ADMIN"] {
        assert!(added.contains(&needed), "missing {needed}: {added:?}");
    }
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
