//! The live source: kube-rs watchers for the six kinds, every event turned
//! into a [`WatchEvent`] and fed to [`Store::apply`] (the same entry point
//! as the snapshot loader). Full objects are stripped as they arrive: no
//! reflector keeps them. Connects in-cluster or through the kubeconfig. A
//! kind the RBAC forbids is logged as a warning, recorded in the store as
//! unavailable (explanations say so) and left out; the others go on. A
//! kind whose watch fails (an API server outage) keeps its last known
//! objects and is marked stale ([`super::freshness`]) until the API server
//! answers again, which is probed every [`PROBE_EVERY`] while it lasts.
//!
//! The first listing and the watches after it are one set of streams:
//! [`sync_once`] reads them until every kind has synced and [`run`] goes on
//! from there, so each kind is listed once at start, not twice. Each watch
//! asks the API server to end it after [`WatchSettings::timeout`] and is
//! then resumed from its last resource version (no new list); one that
//! delivers nothing for that long plus five seconds (not even the bookmark
//! the API server sends about once a minute) is taken for a connection
//! that died without a word and resumed the same way.

use std::{
    fmt::Debug,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{StreamExt, stream::BoxStream};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;

use super::{
    Error,
    store::{Kind, Object, Store, WatchEvent, batch},
};

/// Connects to the API server: in-cluster service account, else kubeconfig.
pub async fn connect() -> Result<Client, Error> {
    let config = kube::Config::infer()
        .await
        .map_err(|source| Error::Config { source })?;
    Client::try_from(config).map_err(|source| Error::Client { source })
}

/// How the API server is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchSettings {
    /// How long one watch request runs (`timeoutSeconds`) before it is
    /// renewed from its resource version; a watch silent for this long
    /// plus five seconds is taken for dead and resumed.
    pub timeout: Duration,
}

/// A watch that asks for no timeout is ended by the API server after 30
/// to 60 minutes (`--min-request-timeout`); kube-rs asks for 290 s, under
/// the common 5-minute idle limits of load balancers, and so does
/// dropscope unless told otherwise.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(290);

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_WATCH_TIMEOUT,
        }
    }
}

type Item = Result<WatchEvent, (Kind, watcher::Error)>;

/// Every kind's list-then-watch stream, merged: what [`sync_once`] and
/// [`run`] read, one after the other.
pub type Events = BoxStream<'static, Item>;

fn kind_stream<K>(
    client: &Client,
    settings: WatchSettings,
    kind: Kind,
    wrap: fn(Box<K>) -> Object,
) -> Events
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    // At least one second: kube-rs reads a zero as "never time out".
    let seconds = u32::try_from(settings.timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    watcher::watcher(api, watcher::Config::default().timeout(seconds))
        .default_backoff()
        .map(move |event| match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                Ok(WatchEvent::Apply(wrap(Box::new(object))))
            }
            Ok(Event::Delete(object)) => Ok(WatchEvent::Delete(wrap(Box::new(object)))),
            Ok(Event::Init) => Ok(WatchEvent::RelistStart(kind)),
            Ok(Event::InitDone) => Ok(WatchEvent::RelistDone(kind)),
            Err(error) => Err((kind, error)),
        })
        .boxed()
}

/// Every kind's events, merged; nothing is requested until they are read.
pub fn events(client: &Client, settings: WatchSettings) -> Events {
    futures::stream::select_all([
        kind_stream(client, settings, Kind::Namespace, Object::Namespace),
        kind_stream(client, settings, Kind::Pod, Object::Pod),
        kind_stream(client, settings, Kind::Service, Object::Service),
        kind_stream(client, settings, Kind::EndpointSlice, Object::EndpointSlice),
        kind_stream(client, settings, Kind::NetworkPolicy, Object::NetworkPolicy),
        kind_stream(client, settings, Kind::Node, Object::Node),
    ])
    .boxed()
}

fn is_forbidden(error: &watcher::Error) -> bool {
    let client_error = match error {
        watcher::Error::InitialListFailed(error)
        | watcher::Error::WatchStartFailed(error)
        | watcher::Error::WatchFailed(error) => error,
        watcher::Error::WatchError(status) => return status.code == 403,
        watcher::Error::NoResourceVersion => return false,
    };
    matches!(client_error, kube::Error::Api(status) if status.code == 403)
}

/// How often the API server is asked for its version while a kind is
/// stale: the watchers resume on their own (with backoff) and say nothing
/// when they do, so this is how the store learns the outage is over.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What to do with one stream item; returns the kind when it is done
/// (synced, or forbidden and given up).
fn handle(store: &mut Store, item: Item, forbidden: &mut Vec<Kind>) -> Option<Kind> {
    let now = SystemTime::now();
    match item {
        Ok(event) => {
            let freshness = store.freshness_mut();
            let done = match &event {
                WatchEvent::RelistStart(kind) => {
                    freshness.listing(*kind, now);
                    None
                }
                WatchEvent::RelistDone(kind) => {
                    freshness.delivered(*kind, now);
                    Some(*kind)
                }
                WatchEvent::Apply(object) | WatchEvent::Delete(object) => {
                    freshness.delivered(object.kind(), now);
                    None
                }
            };
            if let Err(error) = store.apply(event) {
                tracing::warn!(%error, "object skipped");
            }
            if let Some(kind) = done {
                tracing::info!(kind = kind.as_str(), "synced");
            }
            done
        }
        Err((kind, error)) if is_forbidden(&error) => {
            // Explanations must not read "no policy" where none could be read.
            let reason = format!("RBAC forbids listing {}: {error}", kind.as_str());
            store.freshness_mut().forbidden(kind, reason.clone(), now);
            store.note_unavailable(kind, reason);
            if !forbidden.contains(&kind) {
                tracing::warn!(kind = kind.as_str(), %error, "RBAC forbids watching this kind; continuing without it");
                forbidden.push(kind);
            }
            Some(kind)
        }
        Err((kind, error)) => {
            if store.freshness_mut().failed(kind, error.to_string(), now) {
                tracing::warn!(
                    kind = kind.as_str(),
                    %error,
                    "watch failed: the last known objects of this kind are kept, marked stale, until the API server answers again"
                );
            } else {
                tracing::debug!(kind = kind.as_str(), %error, "watch still failing; retrying with backoff");
            }
            None
        }
    }
}

/// Reads `stream` into `store` until each kind has synced or was
/// forbidden: the first listing. `dropscope explain` stops there; the
/// agent and the collector hand the same stream to [`run`].
pub async fn sync_once(stream: &mut Events, store: &mut Store) -> Result<(), Error> {
    let mut done: Vec<Kind> = Vec::new();
    let mut forbidden = Vec::new();
    while done.len() < Kind::ALL.len() {
        let Some(item) = stream.next().await else {
            break;
        };
        if let Some(kind) = handle(store, item, &mut forbidden)
            && !done.contains(&kind)
        {
            done.push(kind);
        }
    }
    Ok(())
}

/// Watches forever, applying every change to the shared store: what the
/// streams have ready is applied in batches ([`batch`]), each under one
/// write lock held for about [`batch::WRITE_BUDGET`] (one event more at
/// most), so explanations wait for one batch, never for a whole burst.
/// `stream` goes on from where [`sync_once`] left it.
pub async fn run(client: Client, stream: Events, store: Arc<RwLock<Store>>) -> Result<(), Error> {
    let mut stream = stream.ready_chunks(batch::MAX_BATCH);
    let mut forbidden = Vec::new();
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            items = stream.next() => {
                let Some(items) = items else { break };
                let mut pending = items.into_iter().peekable();
                while pending.peek().is_some() {
                    let mut store = store.write().await;
                    batch::apply_within(
                        &mut store,
                        &mut pending,
                        batch::WRITE_BUDGET,
                        |store, item| {
                            handle(store, item, &mut forbidden);
                        },
                    );
                }
            }
            _ = probe.tick() => {
                if store.read().await.freshness().any_stale()
                    && client.apiserver_version().await.is_ok()
                {
                    let resumed = store.write().await.freshness_mut().resumed(SystemTime::now());
                    let kinds: Vec<&str> = resumed.iter().map(|kind| kind.as_str()).collect();
                    tracing::info!(?kinds, "the API server answers again; stale kinds resume");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn forbidden_error() -> watcher::Error {
        let mut status = kube::core::Status::failure("pods is forbidden", "Forbidden");
        status.code = 403;
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    /// What the watchers emit goes through the same `apply`; a forbidden
    /// kind is given up (reported done) and the others go on.
    #[test]
    fn watcher_items_feed_the_store_and_forbidden_kinds_are_skipped() {
        let mut store = Store::new();
        let mut forbidden = Vec::new();
        let items: Vec<Item> = vec![
            Ok(WatchEvent::RelistStart(Kind::Namespace)),
            Ok(WatchEvent::Apply(mk_namespace("default", &[]))),
            Ok(WatchEvent::RelistDone(Kind::Namespace)),
            Err((Kind::NetworkPolicy, forbidden_error())),
            Err((Kind::NetworkPolicy, forbidden_error())),
            Ok(WatchEvent::Apply(pod(mk_pod(
                "default",
                "web",
                "10.244.1.11",
                &[],
            )))),
        ];
        let done: Vec<Option<Kind>> = items
            .into_iter()
            .map(|item| handle(&mut store, item, &mut forbidden))
            .collect();
        assert_eq!(
            done,
            [
                None,
                None,
                Some(Kind::Namespace),
                Some(Kind::NetworkPolicy),
                Some(Kind::NetworkPolicy),
                None
            ]
        );
        assert_eq!(forbidden, [Kind::NetworkPolicy]);
        assert!(
            store
                .skipped()
                .unavailable(Kind::NetworkPolicy)
                .is_some_and(|reason| reason.contains("RBAC forbids")),
            "a forbidden kind is recorded as unavailable"
        );
        assert_eq!(store.counts().namespaces, 1);
        assert_eq!(store.counts().pods, 1);
    }

    #[test]
    fn other_watch_errors_are_retried() {
        let mut status = kube::core::Status::failure("etcd is slow", "Timeout");
        status.code = 504;
        let error = watcher::Error::WatchError(Box::new(status));
        assert!(!is_forbidden(&error));
        assert_eq!(
            handle(&mut Store::new(), Err((Kind::Pod, error)), &mut Vec::new()),
            None
        );
    }
}
