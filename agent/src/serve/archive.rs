//! History older than a hub holds, from where it is kept: a collector on
//! NATS JetStream answers `observe --since` further back than its
//! `--history` from the stream. The observe stream sends the archive's
//! events first (those before the oldest event the hub holds), then goes
//! on in the hub.

use std::time::SystemTime;

use dropscope_proto::v1;
use tokio::sync::mpsc;

/// Where a server's older history is.
pub trait Archive: Send + Sync + 'static {
    /// The events whose own time lies in `[since, before)`, oldest first,
    /// as they come; the receiver ends after the last, or with one error
    /// message (the stream then goes on with what the hub holds).
    fn replay(
        &self,
        since: SystemTime,
        before: SystemTime,
    ) -> mpsc::Receiver<Result<v1::Event, String>>;
}
