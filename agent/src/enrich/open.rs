//! Opening the metadata store a [`MetadataConfig`] asks for: the agent's
//! and (with `--enrich collector`) the collector's.

use std::{sync::Arc, time::Duration};

use tokio::sync::RwLock;
use tracing::Instrument as _;

use super::{Error, MetadataConfig, snapshot, store::Store, watch};

/// How long the first listing of a live cluster may take.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The metadata store `config` asks for: loaded from a snapshot, or listed
/// from the API server and then kept current by a watch task; `None`
/// standalone.
pub async fn open(config: &MetadataConfig) -> Result<Option<Arc<RwLock<Store>>>, Error> {
    let mut store = Store::new();
    match config {
        MetadataConfig::Standalone => Ok(None),
        MetadataConfig::Snapshot(path) => {
            let loaded = snapshot::load(path, &mut store)?;
            tracing::info!(
                path = %path.display(),
                applied = loaded.applied,
                skipped = loaded.skipped.len(),
                "cluster metadata loaded from snapshot"
            );
            Ok(Some(Arc::new(RwLock::new(store))))
        }
        MetadataConfig::Kubernetes(settings) => {
            let client = watch::connect().await?;
            let mut events = watch::events(&client, *settings);
            tokio::time::timeout(SYNC_TIMEOUT, watch::sync_once(&mut events, &mut store))
                .await
                .map_err(|_| Error::SyncTimeout {
                    seconds: SYNC_TIMEOUT.as_secs(),
                })??;
            tracing::info!(counts = ?store.counts(), "cluster metadata synced");
            let shared = Arc::new(RwLock::new(store));
            let watched = Arc::clone(&shared);
            tokio::spawn(
                async move {
                    if let Err(error) = watch::run(client, events, watched).await {
                        tracing::error!(%error, "the cluster watch stopped; metadata goes stale");
                    }
                }
                .instrument(tracing::info_span!("enrich")),
            );
            Ok(Some(shared))
        }
    }
}
