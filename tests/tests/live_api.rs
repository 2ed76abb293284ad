//! End-to-end: the live path, `dropscope agent --kubernetes`, against
//! `TestApiServer`, the protocol-faithful test stand-in for kube-apiserver
//! (list/watch with resource versions, bookmarks, `410 Gone`, `403`, cut
//! streams). The kernel drops a datagram the way a policy enforcer would;
//! objects created, changed and deleted through the API change what the
//! agent says about the next drop.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use dropscope_e2e::{
    Agent, Lab,
    apiserver::TestApiServer,
    lab::{
        Cluster, Netns, collector,
        json::{hint_codes, policy_names, text},
        send_udp,
    },
};
use dropscope_proto::v1::{GetStatusResponse, KindSyncState};
use serde_json::{Value, json};

const NODE: &str = "lab-node";
const PORT: u16 = 8080;
const WAIT: Duration = Duration::from_secs(30);

/// A lab with `frontend/web` sending to `backend/api`, whose datagrams the
/// enforcer drops; the API server serves both pods, their namespaces and
/// the node; the agent watches it.
/// Fields drop in order: the agent first, the lab last.
struct LiveLab {
    agent: Agent,
    server: TestApiServer,
    web: Netns,
    api: IpAddr,
    lab: Lab,
    next_port: u16,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl LiveLab {
    /// Builds the lab; `before_start` runs on the server before the agent
    /// connects (to forbid a kind, say).
    fn new(before_start: impl FnOnce(&TestApiServer) -> Result<()>) -> Result<Self> {
        Self::with_agent_args(before_start, &[])
    }

    /// [`Self::new`], the agent run with `agent_args` besides
    /// `--kubernetes`.
    fn with_agent_args(
        before_start: impl FnOnce(&TestApiServer) -> Result<()>,
        agent_args: &[&str],
    ) -> Result<Self> {
        let mut lab = Lab::new()?;
        let web = lab.add_pod("web")?;
        let api = lab.add_pod("api")?;
        lab.nft()
            .drop_forward("enforcer", api.ipv4.into(), PORT, "udp")?;
        let server = TestApiServer::start()?;
        let mut cluster = Cluster::new();
        cluster.node(NODE, lab.gateway_v4().into()).web_and_api(
            (web.ipv4.into(), NODE),
            (api.ipv4.into(), NODE),
            PORT,
            "UDP",
        );
        for item in cluster.items() {
            server.apply(item)?;
        }
        before_start(&server)?;
        let dir = std::env::temp_dir().join(format!(
            "dropscope-live-{}-{}",
            std::process::id(),
            lab.id()
        ));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let kubeconfig = server.kubeconfig(&dir.0)?;
        let agent = Agent::start_with_env(
            &[(
                "KUBECONFIG",
                kubeconfig.to_str().context("kubeconfig path")?,
            )],
            &[&["--kubernetes"], agent_args].concat(),
        )?;
        agent.wait_for(WAIT, "the cluster metadata to sync", |agent| {
            agent
                .log()
                .contains("cluster metadata synced")
                .then_some(())
        })?;
        Ok(Self {
            web: web.netns.clone(),
            api: api.ipv4.into(),
            lab,
            server,
            agent,
            next_port: 41_000,
            _dir: dir,
        })
    }

    /// Sends one datagram from a port not used before and returns the
    /// explanation of its drop.
    fn explain_next_drop(&mut self) -> Result<Value> {
        let port = self.next_port;
        self.next_port += 1;
        send_udp(&self.web, vec![port], SocketAddr::new(self.api, PORT), 1)?;
        let lab = &self.lab;
        self.agent.wait_for(WAIT, "an explained drop", |agent| {
            agent
                .drops(|drop| lab.owns(drop.src.ip) && drop.src.port == port)
                .into_iter()
                .find_map(|drop| drop.raw.get("explanation").cloned())
        })
    }

    /// Sends drops until one's explanation satisfies `done` (the agent
    /// applies a change when its watch delivers it); fails after `WAIT`
    /// with the last explanation.
    fn explained_until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let started = Instant::now();
        loop {
            let explanation = self.explain_next_drop()?;
            if done(&explanation) {
                return Ok(explanation);
            }
            if started.elapsed() > WAIT {
                bail!("no drop explained {what} within {WAIT:?}; the last: {explanation:#}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl LiveLab {
    /// The agent's `GetStatus`.
    fn status(&self) -> Result<GetStatusResponse> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(collector::status(&self.agent.server()))
    }

    /// Polls `GetStatus` until `check` holds; fails after `WAIT`.
    fn status_until(
        &self,
        what: &str,
        check: impl Fn(&GetStatusResponse) -> bool,
    ) -> Result<GetStatusResponse> {
        let started = Instant::now();
        loop {
            let status = self.status()?;
            if check(&status) {
                return Ok(status);
            }
            if started.elapsed() > WAIT {
                bail!(
                    "GetStatus never showed {what} within {WAIT:?}: {:#?}",
                    status.metadata
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The state `GetStatus` gives a kind (`networkpolicies`, …).
fn kind_state(status: &GetStatusResponse, kind: &str) -> Option<KindSyncState> {
    status
        .metadata
        .as_ref()?
        .kinds
        .iter()
        .find(|sync| sync.kind == kind)
        .and_then(|sync| KindSyncState::try_from(sync.state).ok())
}

/// The kinds an explanation says were stale when it was made.
fn stale_kinds(explanation: &Value) -> Vec<String> {
    explanation["stale"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|stale| text(stale, &["kind"]).to_owned())
        .collect()
}

fn ingress_policies(explanation: &Value) -> Vec<String> {
    policy_names(&explanation["ingress"])
}

fn deny_all_ingress() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "deny-all", "namespace": "backend" },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress"] },
    })
}

fn denied_by_deny_all(explanation: &Value) -> bool {
    text(explanation, &["verdict"]) == "VERDICT_DENY_INGRESS"
        && ingress_policies(explanation) == ["backend/deny-all"]
}

#[test]
fn objects_created_changed_and_deleted_through_the_api_change_live_explanations() -> Result<()> {
    let mut live = LiveLab::new(|_| Ok(()))?;
    let first = live.explain_next_drop()?;
    assert_eq!(text(&first, &["source", "identity", "pod", "name"]), "web");
    assert_eq!(
        text(&first, &["destination", "identity", "pod", "name"]),
        "api"
    );
    assert_eq!(text(&first, &["verdict"]), "VERDICT_ALLOW", "{first:#}");

    // Created: a default deny in backend.
    live.server.apply(&deny_all_ingress())?;
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;

    // Changed: it now admits namespaces labelled team=web, which frontend
    // is not: still denied, with the namespace's labels to blame.
    let mut admits_team_web = deny_all_ingress();
    admits_team_web["spec"]["ingress"] =
        json!([{ "from": [{ "namespaceSelector": { "matchLabels": { "team": "web" } } }] }]);
    live.server.apply(&admits_team_web)?;
    let missed = live.explained_until("with the rule that almost admitted it", |explanation| {
        text(explanation, &["verdict"]) == "VERDICT_DENY_INGRESS"
            && !explanation["closestMiss"].is_null()
    })?;
    assert_eq!(ingress_policies(&missed), ["backend/deny-all"]);

    // Changed, another kind: frontend gets the label; the policy admits it.
    live.server.apply(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": "frontend", "labels": {
            "kubernetes.io/metadata.name": "frontend", "team": "web",
        } },
    }))?;
    live.explained_until("as allowed once frontend is labelled", |explanation| {
        text(explanation, &["verdict"]) == "VERDICT_ALLOW"
            && ingress_policies(explanation) == ["backend/deny-all"]
    })?;

    // Deleted: no policy selects api any more.
    live.server.delete(&deny_all_ingress())?;
    live.explained_until("with no policy after the delete", |explanation| {
        text(explanation, &["verdict"]) == "VERDICT_ALLOW"
            && ingress_policies(explanation).is_empty()
    })?;
    live.agent.stop()?;
    Ok(())
}

#[test]
fn a_watch_resumed_after_compaction_gets_410_lists_again_and_misses_nothing() -> Result<()> {
    let mut live = LiveLab::new(|_| Ok(()))?;
    let (lists_before, _) = live.server.requests("NetworkPolicy")?;
    // Compaction ends the open watches; their resource versions are now too
    // old, so the resumed watches get 410 Gone and the client lists again.
    live.server.compact();
    live.server.apply(&deny_all_ingress())?;
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;
    let (lists_after, _) = live.server.requests("NetworkPolicy")?;
    assert!(
        lists_after > lists_before,
        "the 410 made the agent list NetworkPolicies again ({lists_before} → {lists_after})"
    );
    live.agent.stop()?;
    Ok(())
}

#[test]
fn a_cut_watch_stream_is_resumed_without_losing_a_change() -> Result<()> {
    let mut live = LiveLab::new(|_| Ok(()))?;
    let (_, watches_before) = live.server.requests("NetworkPolicy")?;
    live.server.cut_watches();
    live.server.apply(&deny_all_ingress())?;
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;
    let (_, watches_after) = live.server.requests("NetworkPolicy")?;
    assert!(
        watches_after > watches_before,
        "the agent watched again after the cut ({watches_before} → {watches_after})"
    );
    live.agent.stop()?;
    Ok(())
}

#[test]
fn a_kind_the_rbac_forbids_degrades_only_itself_and_explanations_say_so() -> Result<()> {
    let mut live = LiveLab::new(|server| server.forbid("NetworkPolicy"))?;
    let log = live.agent.log();
    assert!(
        log.lines()
            .any(|line| line.contains("RBAC forbids") && line.contains("NetworkPolic")),
        "a clear log line names the forbidden kind:\n{log}"
    );
    // The other kinds are there: both pods are named. The verdict cannot
    // be known without the policies, and the explanation says so.
    let explanation = live.explain_next_drop()?;
    assert_eq!(
        text(&explanation, &["source", "identity", "pod", "name"]),
        "web"
    );
    assert_eq!(
        text(&explanation, &["destination", "identity", "pod", "name"]),
        "api"
    );
    assert_ne!(explanation["complete"], json!(true), "{explanation:#}");
    assert_eq!(
        hint_codes(&explanation).first().map(String::as_str),
        Some("explanation_incomplete"),
        "{explanation:#}"
    );
    // Not ready for that kind only.
    let status = live.status()?;
    assert_eq!(
        kind_state(&status, "networkpolicies"),
        Some(KindSyncState::Forbidden),
        "{:#?}",
        status.metadata
    );
    for kind in ["pods", "namespaces", "services", "endpointslices", "nodes"] {
        assert_eq!(
            kind_state(&status, kind),
            Some(KindSyncState::Synced),
            "{kind}"
        );
    }
    live.agent.stop()?;
    Ok(())
}

#[test]
fn an_api_outage_keeps_the_last_known_state_and_says_it_is_stale() -> Result<()> {
    let mut live = LiveLab::new(|server| server.apply(&deny_all_ingress()))?;
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;
    assert_eq!(
        live.status()?.metadata.map(|metadata| metadata.stale),
        Some(false)
    );

    // The API server goes away: its watches end and reconnects are refused.
    live.server.set_up(false);
    let status = live.status_until("the metadata marked stale", |status| {
        status
            .metadata
            .as_ref()
            .is_some_and(|metadata| metadata.stale)
            && kind_state(status, "networkpolicies") == Some(KindSyncState::Stale)
    })?;
    let log = live.agent.log();
    assert!(
        log.contains("marked stale"),
        "the outage is logged once per kind:\n{log}"
    );
    assert_eq!(
        status
            .metadata
            .as_ref()
            .map(|metadata| metadata.objects["networkpolicies"]),
        Some(1),
        "the last known objects are kept"
    );
    // Explanations still use them, and say which kinds may be out of date.
    let explanation = live.explain_next_drop()?;
    assert!(denied_by_deny_all(&explanation), "{explanation:#}");
    assert!(
        stale_kinds(&explanation).contains(&"networkpolicies".to_owned()),
        "the explanation names the stale kinds: {explanation:#}"
    );
    assert!(
        explanation["stale"][0]["since"].is_string(),
        "with the outage's start: {explanation:#}"
    );

    // Back: the probe sees it answer, the kinds are current again, and a
    // change made after the outage arrives.
    live.server.set_up(true);
    live.status_until("every kind current again", |status| {
        status
            .metadata
            .as_ref()
            .is_some_and(|metadata| !metadata.stale)
            && kind_state(status, "networkpolicies") == Some(KindSyncState::Synced)
    })?;
    live.server.delete(&deny_all_ingress())?;
    let current = live.explained_until("with no policy after the outage", |explanation| {
        text(explanation, &["verdict"]) == "VERDICT_ALLOW"
            && ingress_policies(explanation).is_empty()
    })?;
    assert!(stale_kinds(&current).is_empty(), "{current:#}");
    live.agent.stop()?;
    Ok(())
}

/// Lists and watches so far for every kind the agent watches.
fn requests_of_every_kind(server: &TestApiServer) -> Result<Vec<(&'static str, usize, usize)>> {
    [
        "Namespace",
        "Pod",
        "Service",
        "EndpointSlice",
        "NetworkPolicy",
        "Node",
    ]
    .into_iter()
    .map(|kind| {
        let (lists, watches) = server.requests(kind)?;
        Ok((kind, lists, watches))
    })
    .collect()
}

#[test]
fn each_kind_is_listed_once_and_watches_the_server_ends_resume_without_a_list() -> Result<()> {
    // The API server ends every watch after a second (its own limit,
    // shorter than the agent's timeoutSeconds).
    let mut live = LiveLab::new(|server| {
        server.limit_watches(Duration::from_secs(1));
        Ok(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    live.server.apply(&deny_all_ingress())?;
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;
    for (kind, lists, watches) in requests_of_every_kind(&live.server)? {
        assert_eq!(
            lists, 1,
            "{kind}: listed once at start, resumed from its resource version after each end"
        );
        assert!(
            watches >= 3,
            "{kind}: watched again after each end ({watches} watches)"
        );
    }
    let status = live.status()?;
    assert_eq!(
        kind_state(&status, "networkpolicies"),
        Some(KindSyncState::Synced),
        "a watch the server ends is no outage: {:#?}",
        status.metadata
    );
    assert_eq!(status.metadata.map(|metadata| metadata.stale), Some(false));
    live.agent.stop()?;
    Ok(())
}

#[test]
fn a_watch_that_goes_silent_is_taken_for_dead_and_resumed() -> Result<()> {
    // Watches renewed every 2 s: one silent for 2 s + 5 s is dead.
    let mut live = LiveLab::with_agent_args(|_| Ok(()), &["--watch-timeout", "2s"])?;
    // Whatever the agent watches now hears nothing more, not even the
    // stream's end: only its own idle limit can notice.
    live.server.stall_watches();
    let (_, watches_before) = live.server.requests("NetworkPolicy")?;
    live.server.apply(&deny_all_ingress())?;
    let started = Instant::now();
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;
    let (_, watches_after) = live.server.requests("NetworkPolicy")?;
    assert!(
        watches_after > watches_before,
        "a new watch replaced the silent one ({watches_before} → {watches_after})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "within the idle limit, not kube's default of nearly 5 minutes: {:?}",
        started.elapsed()
    );
    live.agent.stop()?;
    Ok(())
}

#[test]
fn a_slow_api_server_still_syncs_and_explains() -> Result<()> {
    // Every answer arrives 16 bytes at a time, 5 ms apart: the pods' list
    // takes about half a second, each watch event tens of milliseconds.
    let mut live = LiveLab::new(|server| {
        server.slow_down(Duration::from_millis(5));
        Ok(())
    })?;
    let first = live.explain_next_drop()?;
    assert_eq!(text(&first, &["source", "identity", "pod", "name"]), "web");
    assert_eq!(
        text(&first, &["destination", "identity", "pod", "name"]),
        "api"
    );
    live.server.apply(&deny_all_ingress())?;
    live.explained_until("as denied by backend/deny-all", denied_by_deny_all)?;
    live.agent.stop()?;
    Ok(())
}
