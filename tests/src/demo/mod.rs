//! `dropscope-demo`: the runbooks' incidents (`../shared/seeds/`) replayed
//! for real, one after the other, each in a network-namespace lab of its
//! own. For each: the cluster and the policies that broke it; what the
//! workload's user saw without dropscope (a timeout, measured); what
//! dropscope says through `dropscope observe` and `dropscope explain`
//! (pods, Service and backend, both tuples, the policy, the hint, the
//! smallest fix); then dropscope's suggested policy applied to the lab's
//! enforcer, whose nftables rules are regenerated from the policies, and
//! the workload working again.
//!
//! Nothing is staged: the enforcer ([`crate::lab::enforcer`]) is written
//! independently of the agent's policy engine, the drops happen in the
//! kernel, the agent is the real binary on this kernel, and the fix is
//! whatever dropscope suggested. Every claim the demo prints is checked;
//! with `--ci` a failed check fails the run.

mod scenarios;
mod show;
mod steps;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use show::Printer;

use self::{
    scenarios::{Expected, NODE, Scenario, Stage},
    steps::Outcome,
};
use crate::lab::{
    Agent, Lab, LabClient,
    client::observe_once,
    enforcer::Enforcer,
    json::{hint_codes, policy_names, text},
};

/// How the demo runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// No pauses, no colours, and a failed check fails the run.
    pub ci: bool,
    /// Only this scenario (1-based).
    pub only: Option<usize>,
}

/// How long dropscope may take to report a scenario's drops and incidents.
const REPORT_LIMIT: Duration = Duration::from_secs(25);

/// Set when the user interrupted the demo: the current scenario stops at
/// its next step and its lab is removed.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// One scenario's result.
struct Report {
    /// Every claim checked: (held, what it says).
    checks: Vec<(bool, String)>,
    /// The closing line.
    summary: String,
}

impl Report {
    fn check(&mut self, held: bool, what: impl Into<String>) {
        self.checks.push((held, what.into()));
    }

    fn held(&self) -> bool {
        self.checks.iter().all(|(held, _)| *held)
    }
}

/// Plays the scenarios; fails when any check failed.
pub fn run(options: &Options) -> Result<()> {
    let dropscope = std::env::var("DROPSCOPE_BIN")
        .context("DROPSCOPE_BIN is not set: run the demo with `cargo xtask demo`")?;
    let client = LabClient::new(lab_client()?);
    let printer = Printer::new(options.ci);
    let all = scenarios::all();
    let chosen: Vec<(usize, &Scenario)> = all
        .iter()
        .enumerate()
        .map(|(index, scenario)| (index + 1, scenario))
        .filter(|(number, _)| options.only.is_none_or(|only| only == *number))
        .collect();
    if chosen.is_empty() {
        bail!(
            "there is no scenario {:?}: 1 to {}",
            options.only,
            all.len()
        );
    }
    printer.prose(
        0,
        "dropscope demo: four silent drops from real runbooks, replayed on this machine's kernel. \
         Each runs in a lab of network namespaces (pods, a node, kube-proxy-style Service DNAT, \
         and an nftables enforcer generated from the NetworkPolicies), watched by the real agent.",
    );
    let mut reports = Vec::new();
    for (number, scenario) in &chosen {
        check_interrupted()?;
        let report = play(
            &printer,
            &client,
            &dropscope,
            (*number, all.len()),
            scenario,
        )?;
        for (held, what) in report.checks.iter().filter(|(held, _)| !held) {
            printer.verdict(*held, what);
        }
        reports.push((*number, report));
        if !options.ci && *number != chosen.last().map_or(0, |(last, _)| *last) {
            pause()?;
        }
    }
    printer.part("Summary");
    for (number, report) in &reports {
        printer.verdict(
            report.held(),
            &format!("{number}/{}  {}", all.len(), report.summary),
        );
    }
    let failed = reports.iter().filter(|(_, report)| !report.held()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} incidents did not play as expected (the ✘ lines above)",
            reports.len()
        );
    }
    Ok(())
}

/// `lab-client`, built next to this binary.
fn lab_client() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding the demo's own binary")?;
    let client = me.with_file_name("lab-client");
    if !client.exists() {
        bail!(
            "{} is missing: build it with `cargo build -p dropscope-e2e --bins` (cargo xtask demo does)",
            client.display()
        );
    }
    Ok(client)
}

/// Waits for Enter when a person is at the terminal.
fn pause() -> Result<()> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        return Ok(());
    }
    println!("\n(press Enter for the next incident, Ctrl-C to stop)");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

fn play(
    printer: &Printer,
    client: &LabClient,
    dropscope: &str,
    (number, total): (usize, usize),
    scenario: &Scenario,
) -> Result<Report> {
    let mut lab = Lab::new()?;
    let stage = (scenario.build)(&mut lab, client)?;
    let mut enforcer = Enforcer::from_items(stage.cluster.items())?;
    enforcer.enforce(&lab.nft())?;
    let snapshot = stage.cluster.write(lab.id())?;

    printer.heading(number, total, scenario.title);
    printer.prose(2, scenario.story);
    printer.out_blank();
    for service in &stage.services {
        printer.field("service", 8, service);
    }
    for policy in stage
        .cluster
        .items()
        .iter()
        .filter(|item| item["kind"] == "NetworkPolicy")
    {
        printer.field(
            "policy",
            8,
            &format!(
                "{}/{}  {}",
                text(policy, &["metadata", "namespace"]),
                text(policy, &["metadata", "name"]),
                scenarios::one_line(&policy["spec"])
            ),
        );
    }
    printer.field(
        "enforcer",
        8,
        &format!(
            "nftables generated from the policies: {} isolated pod direction(s), counted drops",
            enforcer.chains().len()
        ),
    );

    let agent = Agent::start_in(
        &lab.node,
        &[
            "--snapshot",
            snapshot.path(),
            "--node-name",
            NODE,
            "--dns-timeout",
            "1s",
        ],
    )?;
    let mut report = Report {
        checks: Vec::new(),
        summary: String::new(),
    };

    printer.part("Without dropscope");
    let mut before = Vec::new();
    for step in &stage.steps {
        check_interrupted()?;
        let outcome = step.run(&lab, client)?;
        printer.action(&step.who, &step.command(), outcome.succeeded, &outcome.seen);
        report.check(
            !outcome.succeeded,
            format!("{} fails before the fix ({})", step.command(), outcome.seen),
        );
        before.push(outcome);
    }
    let dropped = enforcer.dropped_total(&lab.nft())?;
    printer.line(&format!(
        "The enforcer dropped {dropped} packet(s). The workload saw only {}: no event, no log line, \
         nothing in kubectl.",
        if stage.steps.len() > 1 { "timeouts" } else { "a timeout" }
    ));

    check_interrupted()?;
    let events = wait_for_report(&agent, &lab, &stage)?;
    printer.part("With dropscope");
    // The incidents: one line per failed action, with the drop that caused
    // it and its explanation in short; `explain` then tells the whole story.
    let mut observe: Vec<String> = vec![
        "observe".into(),
        "--server".into(),
        agent.server(),
        "--incidents".into(),
    ];
    observe.extend(stage.observe.iter().cloned());
    observe.extend(["--last".into(), "20".into()]);
    let compact = dropscope_output(dropscope, &observe)?;
    printer.command("$", &format!("dropscope {}", observe.join(" ")), &compact);
    let mut explain: Vec<String> = vec![
        "explain".into(),
        "--snapshot".into(),
        snapshot.path().into(),
    ];
    explain.extend(stage.explain.iter().cloned());
    let explained = dropscope_output(dropscope, &explain)?;
    printer.command("$", &format!("dropscope {}", explain.join(" ")), &explained);

    let mut suggestions = BTreeSet::new();
    let mut named = Vec::new();
    for expected in &stage.expected {
        match find_explained(&events, &lab, expected) {
            Some(explanation) => {
                let policies = [
                    policy_names(&explanation["egress"]),
                    policy_names(&explanation["ingress"]),
                ]
                .concat();
                let hints = hint_codes(&explanation);
                report.check(
                    end_name(&explanation["source"]) == expected.source
                        && end_name(&explanation["destination"]) == expected.destination,
                    format!(
                        "dropscope names {} → {} (it said {} → {})",
                        expected.source,
                        expected.destination,
                        end_name(&explanation["source"]),
                        end_name(&explanation["destination"])
                    ),
                );
                report.check(
                    policies.contains(&expected.policy),
                    format!(
                        "dropscope names policy {} (it said {policies:?})",
                        expected.policy
                    ),
                );
                report.check(
                    hints.iter().any(|hint| hint == expected.hint),
                    format!(
                        "dropscope's hints include {} (they were {hints:?})",
                        expected.hint
                    ),
                );
                let suggested = text(&explanation, &["suggestedPolicy"]);
                report.check(!suggested.is_empty(), "dropscope suggests a policy");
                if !suggested.is_empty() {
                    suggestions.insert(suggested.to_owned());
                }
                named.push(format!(
                    "{} → {} · policy {} · hint {}",
                    expected.source, expected.destination, expected.policy, expected.hint
                ));
            }
            None => report.check(
                false,
                format!(
                    "dropscope reported an explained drop {} → {} port {} within {REPORT_LIMIT:?}",
                    expected.source, expected.destination, expected.port
                ),
            ),
        }
    }
    let incidents = incident_count(&events, &lab);
    report.check(
        incidents >= stage.steps.len(),
        format!(
            "one incident per failed action ({} actions, {incidents} incidents)",
            stage.steps.len()
        ),
    );

    printer.part("The fix: dropscope's suggested policy, applied as is");
    for (index, suggestion) in suggestions.iter().enumerate() {
        if index > 0 {
            printer.block("---");
        }
        printer.block(suggestion);
        for document in suggestion.split("\n---\n") {
            let policy: Value = serde_norway::from_str(document).with_context(|| {
                format!("dropscope's suggested policy is not YAML:\n{document}")
            })?;
            enforcer.apply_policy(&policy)?;
        }
    }
    enforcer.enforce(&lab.nft())?;
    printer.line(
        "(the enforcer's nftables rules regenerated from the policies, the new one included)",
    );
    let mut after: Vec<Outcome> = Vec::new();
    for step in &stage.steps {
        check_interrupted()?;
        let outcome = step.run(&lab, client)?;
        printer.action(&step.who, &step.command(), outcome.succeeded, &outcome.seen);
        report.check(
            outcome.succeeded,
            format!("{} works after the fix ({})", step.command(), outcome.seen),
        );
        after.push(outcome);
    }
    report.summary = format!(
        "{} · after the fix: {}",
        named.join("; "),
        after
            .iter()
            .map(|outcome| outcome.seen.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    agent.stop()?;
    drop(stage.servers);
    Ok(report)
}

/// The events `dropscope observe -o json` returns for the lab, once every
/// expected drop is explained and every step has its incident (or after
/// [`REPORT_LIMIT`]).
fn wait_for_report(agent: &Agent, lab: &Lab, stage: &Stage) -> Result<Vec<Value>> {
    let started = Instant::now();
    let server = agent.server();
    loop {
        check_interrupted()?;
        let mut args: Vec<&str> = stage.observe.iter().map(String::as_str).collect();
        args.extend(["-o", "json", "--last", "200"]);
        let events = observe_once(&server, &args, Duration::from_secs(10))?;
        let complete = stage.expected.iter().all(|expected| {
            find_explained(&events, lab, expected).is_some_and(|explanation| {
                hint_codes(&explanation)
                    .iter()
                    .any(|hint| hint == expected.hint)
            })
        }) && incident_count(&events, lab) >= stage.steps.len();
        if complete || started.elapsed() > REPORT_LIMIT {
            return Ok(events);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The explanation of this lab's first drop to `expected.port`.
fn find_explained(events: &[Value], lab: &Lab, expected: &Expected) -> Option<Value> {
    events.iter().find_map(|event| {
        let drop = event.get("drop")?;
        let packet = &drop["packet"];
        let source: std::net::IpAddr = text(packet, &["source", "ip"]).parse().ok()?;
        let port = packet["destination"]["port"].as_u64()?;
        (lab.owns(source) && port == u64::from(expected.port))
            .then(|| drop.get("explanation").cloned())
            .flatten()
    })
}

/// Incidents (as decided, not their updates) of this lab's clients.
fn incident_count(events: &[Value], lab: &Lab) -> usize {
    events
        .iter()
        .filter_map(|event| event.get("incident"))
        .filter(|incident| text(incident, &["eventKind"]) == "INCIDENT_EVENT_KIND_NEW")
        .filter(|incident| {
            text(incident, &["flow", "source", "ip"])
                .parse()
                .is_ok_and(|ip| lab.owns(ip))
        })
        .count()
}

/// `namespace/pod`, `node` for a node address, or the bare address.
fn end_name(end: &Value) -> String {
    let identity = &end["identity"];
    if identity["pod"].is_object() {
        format!(
            "{}/{}",
            text(identity, &["pod", "namespace"]),
            text(identity, &["pod", "name"])
        )
    } else if identity["node"].is_object() {
        "node".into()
    } else {
        text(end, &["ip"]).to_owned()
    }
}

/// Runs `dropscope ARGS` and returns its stdout, or fails with its stderr.
fn dropscope_output(dropscope: &str, args: &[String]) -> Result<String> {
    let output = Command::new(dropscope)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .with_context(|| format!("running {dropscope}"))?;
    if !output.status.success() {
        bail!(
            "dropscope {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
