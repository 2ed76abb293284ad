//! `TestApiServer`: a protocol-faithful test stand-in for kube-apiserver,
//! for the agent's live path (`dropscope agent --kubernetes`). No real API
//! server can be installed on the machines these tests run on, so this one
//! speaks the part of the protocol a list/watch client depends on, the way
//! the API server does:
//!
//! - `GET /version`, which clients probe;
//! - `GET` lists of the six kinds the agent watches, cluster-wide, with the
//!   list's `metadata.resourceVersion`; one global, increasing resource
//!   version, stamped on every object as it changes;
//! - `?watch=1&resourceVersion=N`: a chunked stream of JSON lines (`ADDED`,
//!   `MODIFIED`, `DELETED`) of every change after `N`, then of changes as
//!   they happen; `BOOKMARK` events when the client allows them; the stream
//!   ends after `timeoutSeconds`, or earlier when the server's own limit
//!   is shorter ([`TestApiServer::limit_watches`]), as the API server's
//!   `--min-request-timeout` makes it;
//! - a watch from a resource version older than the retained history gets
//!   the API server's answer: HTTP 200 and one `ERROR` event carrying a
//!   `Status` with code 410 (`Expired`), which forces the client to list
//!   again ([`TestApiServer::compact`]);
//! - `403 Forbidden` with a `Status` body for a kind the client's RBAC does
//!   not allow ([`TestApiServer::forbid`]);
//! - outages (connections refused while down, open watches ended), cut
//!   watch streams ([`TestApiServer::cut_watches`]), watches that go silent
//!   with their connection still open, as behind a proxy that lost the
//!   other side ([`TestApiServer::stall_watches`]), and slow connections
//!   that deliver every answer a few bytes at a time
//!   ([`TestApiServer::slow_down`]).
//!
//! Plain HTTP/1.1 on loopback, one thread per connection, `Connection:
//! close` on every response. [`TestApiServer::kubeconfig`] writes a
//! kubeconfig that points a client at it.

use std::{
    collections::{BTreeMap, HashSet},
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use http::{Paced, Request, finish, read_request, respond, send_event, status};
use serde_json::{Value, json};

mod http;

/// A kind the agent watches: where it is served and how it is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct KindInfo {
    /// `kind` of one object.
    kind: &'static str,
    /// `apiVersion`.
    api_version: &'static str,
    /// The cluster-wide collection path.
    path: &'static str,
    /// The resource name (in URLs and RBAC messages).
    resource: &'static str,
    /// The API group ("" for the core group).
    group: &'static str,
}

const KINDS: [KindInfo; 6] = [
    KindInfo {
        kind: "Namespace",
        api_version: "v1",
        path: "/api/v1/namespaces",
        resource: "namespaces",
        group: "",
    },
    KindInfo {
        kind: "Pod",
        api_version: "v1",
        path: "/api/v1/pods",
        resource: "pods",
        group: "",
    },
    KindInfo {
        kind: "Service",
        api_version: "v1",
        path: "/api/v1/services",
        resource: "services",
        group: "",
    },
    KindInfo {
        kind: "Node",
        api_version: "v1",
        path: "/api/v1/nodes",
        resource: "nodes",
        group: "",
    },
    KindInfo {
        kind: "EndpointSlice",
        api_version: "discovery.k8s.io/v1",
        path: "/apis/discovery.k8s.io/v1/endpointslices",
        resource: "endpointslices",
        group: "discovery.k8s.io",
    },
    KindInfo {
        kind: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
        path: "/apis/networking.k8s.io/v1/networkpolicies",
        resource: "networkpolicies",
        group: "networking.k8s.io",
    },
];

fn kind_info(kind: &str) -> Result<KindInfo> {
    KINDS
        .into_iter()
        .find(|info| info.kind == kind)
        .with_context(|| format!("the test API server does not serve kind {kind:?}"))
}

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
struct Change {
    version: u64,
    kind: &'static str,
    action: &'static str,
    object: Value,
}

/// Everything the server holds.
#[derive(Debug, Default)]
struct State {
    /// The latest resource version handed out.
    version: u64,
    /// Objects by (kind, namespace, name).
    objects: BTreeMap<(&'static str, String, String), Value>,
    /// Changes after `compacted`, oldest first.
    history: Vec<Change>,
    /// Watches from before this version get 410 Gone (0: none).
    compacted: u64,
    /// Kinds answered with 403.
    forbidden: HashSet<&'static str>,
    /// Bumped to end every open watch.
    cuts: u64,
    /// Bumped to silence every open watch (connection kept, nothing sent).
    stalls: u64,
    /// The server's own limit on a watch's length, when shorter than the
    /// client's `timeoutSeconds`.
    watch_limit: Option<Duration>,
    /// A slow connection: answers go out `SLOW_PIECE` bytes at a time,
    /// this long apart.
    slow: Option<Duration>,
    /// While false, connections are closed unanswered.
    up: bool,
    /// Requests served, by path and whether they were watches.
    requests: Vec<(String, bool)>,
}

/// The shared state and its change signal.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A protocol-faithful test stand-in for kube-apiserver (see the module
/// docs). Stops when dropped.
pub struct TestApiServer {
    address: SocketAddr,
    shared: Arc<Shared>,
}

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

impl TestApiServer {
    /// Starts serving on a free loopback port.
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the test API server")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        shared.lock().up = true;
        let serving = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if serving.stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&serving);
                std::thread::spawn(move || {
                    // A client gone mid-answer is the client's business.
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(Self { address, shared })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Writes a kubeconfig pointing at this server into `dir` and returns
    /// its path (for `KUBECONFIG`).
    pub fn kubeconfig(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             users:\n- name: test\n  user:\n    token: test-token\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Creates or replaces an object (`kind`, `metadata.name` and, for
    /// namespaced kinds, `metadata.namespace` set), as `ADDED` or
    /// `MODIFIED`.
    pub fn apply(&self, object: &Value) -> Result<()> {
        let info = kind_info(object["kind"].as_str().unwrap_or_default())?;
        let key = key_of(info, object)?;
        let mut state = self.shared.lock();
        state.version += 1;
        let version = state.version;
        let mut object = object.clone();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{version}"));
        }
        let action = if state.objects.insert(key, object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        state.history.push(Change {
            version,
            kind: info.kind,
            action,
            object,
        });
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Deletes an object (as given to [`Self::apply`]), as `DELETED`.
    pub fn delete(&self, object: &Value) -> Result<()> {
        let info = kind_info(object["kind"].as_str().unwrap_or_default())?;
        let key = key_of(info, object)?;
        let mut state = self.shared.lock();
        let Some(mut gone) = state.objects.remove(&key) else {
            bail!("no {} {}/{} to delete", info.kind, key.1, key.2);
        };
        state.version += 1;
        let version = state.version;
        gone["metadata"]["resourceVersion"] = json!(version.to_string());
        state.history.push(Change {
            version,
            kind: info.kind,
            action: "DELETED",
            object: gone,
        });
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// A write the watches never see (another kind's object, say),
    /// followed by etcd's compaction up to it: every watch resuming from an
    /// earlier resource version gets `410 Gone` and must list again. Open
    /// watches end.
    pub fn compact(&self) {
        let mut state = self.shared.lock();
        state.version += 1;
        state.compacted = state.version;
        state.history.clear();
        state.cuts += 1;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Answers 403 for every request for `kind` from now on.
    pub fn forbid(&self, kind: &str) -> Result<()> {
        let info = kind_info(kind)?;
        self.shared.lock().forbidden.insert(info.kind);
        Ok(())
    }

    /// Ends every open watch stream mid-way (a dropped connection).
    pub fn cut_watches(&self) {
        self.shared.lock().cuts += 1;
        self.shared.changed.notify_all();
    }

    /// Silences every open watch: its connection stays open but nothing
    /// more arrives on it, neither events nor bookmarks nor the end of the
    /// stream (a proxy or NAT that lost the other side). Watches opened
    /// afterwards are served normally.
    pub fn stall_watches(&self) {
        self.shared.lock().stalls += 1;
        self.shared.changed.notify_all();
    }

    /// Ends every watch after `limit` at most, whatever `timeoutSeconds`
    /// the client asked for.
    pub fn limit_watches(&self, limit: Duration) {
        self.shared.lock().watch_limit = Some(limit);
    }

    /// A slow connection from now on: every answer (status line, headers,
    /// list bodies, watch events) goes out a few bytes at a time, `pause`
    /// apart.
    pub fn slow_down(&self, pause: Duration) {
        self.shared.lock().slow = Some(pause);
    }

    /// An outage (`false`: connections are closed unanswered and open
    /// watches end) or the end of one.
    pub fn set_up(&self, up: bool) {
        let mut state = self.shared.lock();
        state.up = up;
        if !up {
            state.cuts += 1;
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Requests served so far for `kind`: (lists, watches).
    pub fn requests(&self, kind: &str) -> Result<(usize, usize)> {
        let info = kind_info(kind)?;
        let state = self.shared.lock();
        let of_kind = state.requests.iter().filter(|(path, _)| path == info.path);
        let watches = of_kind.clone().filter(|(_, watch)| *watch).count();
        Ok((of_kind.count() - watches, watches))
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.lock().cuts += 1;
        self.shared.changed.notify_all();
        // Wakes the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(self.address);
    }
}

fn key_of(info: KindInfo, object: &Value) -> Result<(&'static str, String, String)> {
    let name = object["metadata"]["name"]
        .as_str()
        .with_context(|| format!("{} without metadata.name", info.kind))?;
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    Ok((info.kind, namespace.to_owned(), name.to_owned()))
}

fn serve(stream: TcpStream, shared: &Shared) -> Result<()> {
    let pause = {
        let state = shared.lock();
        if !state.up {
            return Ok(());
        }
        state.slow
    };
    let request = read_request(&stream)?;
    let mut stream = Paced { stream, pause };
    if request.path == "/version" {
        let version = json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-dropscope-test-apiserver",
            "platform": "linux/amd64",
        });
        return respond(&mut stream, 200, &version);
    }
    let Some(info) = KINDS.into_iter().find(|info| info.path == request.path) else {
        return respond(
            &mut stream,
            404,
            &status(
                404,
                "NotFound",
                &format!("the server could not find {}", request.path),
            ),
        );
    };
    let watch = matches!(
        request.query.get("watch").map(String::as_str),
        Some("1" | "true")
    );
    let mut state = shared.lock();
    state.requests.push((request.path.clone(), watch));
    if state.forbidden.contains(info.kind) {
        drop(state);
        let verb = if watch { "watch" } else { "list" };
        let message = format!(
            "{} is forbidden: User \"system:serviceaccount:dropscope:dropscope\" cannot {verb} \
             resource \"{}\" in API group \"{}\" at the cluster scope",
            info.resource, info.resource, info.group
        );
        return respond(&mut stream, 403, &status(403, "Forbidden", &message));
    }
    if !watch {
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((kind, _, _), _)| *kind == info.kind)
            .map(|(_, object)| object.clone())
            .collect();
        let list = json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version,
            "metadata": { "resourceVersion": state.version.to_string() },
            "items": items,
        });
        drop(state);
        return respond(&mut stream, 200, &list);
    }
    drop(state);
    watch_stream(stream, shared, info, &request)
}

fn watch_stream(
    mut stream: Paced,
    shared: &Shared,
    info: KindInfo,
    request: &Request,
) -> Result<()> {
    let from: u64 = request
        .query
        .get("resourceVersion")
        .and_then(|version| version.parse().ok())
        .unwrap_or(0);
    let bookmarks = request
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|value| value == "true" || value == "1");
    let asked = request
        .query
        .get("timeoutSeconds")
        .and_then(|seconds| seconds.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut state = shared.lock();
    let timeout = state.watch_limit.map_or(asked, |limit| limit.min(asked));
    let ends_at = Instant::now() + timeout;
    let cuts = state.cuts;
    let stalls = state.stalls;
    if from != 0 && from < state.compacted {
        let message = format!("too old resource version: {from} ({})", state.compacted);
        drop(state);
        send_event(
            &mut stream,
            &json!({ "type": "ERROR", "object": status(410, "Expired", &message) }),
        )?;
        return finish(stream);
    }
    let mut sent = from;
    let mut last_bookmark = Instant::now();
    loop {
        if state.stalls != stalls {
            // Silent: the connection stays open, nothing more is sent, not
            // even the stream's end, until the test cuts or stops it.
            while state.cuts == cuts && !shared.stopping.load(Ordering::Relaxed) {
                state = shared
                    .changed
                    .wait_timeout(state, BOOKMARK_EVERY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            return Ok(());
        }
        let pending: Vec<Change> = state
            .history
            .iter()
            .filter(|change| change.version > sent && change.kind == info.kind)
            .cloned()
            .collect();
        let now = state.version;
        drop(state);
        for change in pending {
            sent = change.version;
            send_event(
                &mut stream,
                &json!({ "type": change.action, "object": change.object }),
            )?;
        }
        if bookmarks && last_bookmark.elapsed() >= BOOKMARK_EVERY {
            sent = sent.max(now);
            last_bookmark = Instant::now();
            send_event(
                &mut stream,
                &json!({
                    "type": "BOOKMARK",
                    "object": {
                        "kind": info.kind,
                        "apiVersion": info.api_version,
                        "metadata": { "resourceVersion": sent.to_string() },
                    },
                }),
            )?;
        }
        if Instant::now() >= ends_at {
            return finish(stream);
        }
        state = shared.lock();
        if state.cuts != cuts || !state.up || shared.stopping.load(Ordering::Relaxed) {
            // Cut: the connection drops without the chunked body's end.
            return Ok(());
        }
        let wait = BOOKMARK_EVERY.min(ends_at.saturating_duration_since(Instant::now()));
        state = shared
            .changed
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if state.cuts != cuts || !state.up {
            return Ok(());
        }
    }
}
