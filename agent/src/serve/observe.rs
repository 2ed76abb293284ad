//! One `Observe` stream: the request checked and turned into a plan (where
//! to start in the hub, when to stop, which events pass), then a task that
//! walks a hub cursor and sends what passes. The task holds only a cursor
//! and a small send queue: a client that stops reading stalls its own task,
//! never the hub or the other streams, and is told what it missed.

use std::{ops::Range, sync::Arc, time::SystemTime};

use dropscope_proto::v1;
use tokio::sync::mpsc;
use tonic::Status;

use super::{archive::Archive, filter::Filters};
use crate::{
    convert,
    fanout::{Cursor, Hub, Item, Start, loss_message},
};

/// Messages queued per stream before its task waits for the client.
const SEND_QUEUE: usize = 64;

/// What a request asks for.
pub struct Plan {
    start: Begin,
    follow: bool,
    until: Option<SystemTime>,
    first: Option<u64>,
    filters: Filters,
}

enum Begin {
    At(Start),
    LastMatching(u64),
}

/// History from an archive: its events as they come, and the range of
/// time it answers.
type Older = (mpsc::Receiver<Result<v1::Event, String>>, Range<SystemTime>);

/// True when `event`'s own time lies in the range an archive answered.
fn from_the_archive(event: &v1::Event, range: &Range<SystemTime>) -> bool {
    event
        .time
        .as_ref()
        .and_then(convert::time_of)
        .is_some_and(|time| range.contains(&time))
}

/// Sleeps `wait`, or forever without one.
async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// An invalid request, naming the field.
fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

impl Plan {
    /// Checks `request`; errors are `INVALID_ARGUMENT` naming the field.
    pub fn new(
        request: &v1::ObserveRequest,
        known_reason: &dyn Fn(&str) -> bool,
    ) -> Result<Self, Status> {
        if request.first > 0 && request.follow {
            return Err(invalid(
                "first",
                "cannot be combined with follow (use number)",
            ));
        }
        if request.first > 0 && request.number > 0 {
            return Err(invalid("first", "cannot be combined with number"));
        }
        if request.number > 0 && request.since.is_some() {
            return Err(invalid("number", "cannot be combined with since"));
        }
        let time = |field: &str, value: &Option<pbjson_types::Timestamp>| {
            value
                .as_ref()
                .map(|timestamp| {
                    convert::time_of(timestamp)
                        .ok_or_else(|| invalid(field, "not a valid time after 1970"))
                })
                .transpose()
        };
        let since = time("since", &request.since)?;
        let until = time("until", &request.until)?;
        if let (Some(since), Some(until)) = (since, until)
            && until < since
        {
            return Err(invalid("until", "is before since"));
        }
        let filters = Filters::compile(&request.allow, &request.deny, known_reason)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let start = match (since, request.number, request.first) {
            (Some(since), _, _) => Begin::At(Start::Since(since)),
            (None, number, _) if number > 0 => Begin::LastMatching(number),
            (None, _, first) if first > 0 => Begin::At(Start::Oldest),
            _ => Begin::At(Start::Live),
        };
        Ok(Self {
            start,
            follow: request.follow,
            until,
            first: (request.first > 0).then_some(request.first),
            filters,
        })
    }

    /// Opens the cursor and starts the stream's task; returns what the
    /// gRPC response streams. A `since` before the oldest event `hub`
    /// holds is answered from `archive` first, when there is one.
    pub fn start(
        self,
        hub: &Hub,
        archive: Option<&dyn Archive>,
        peer: String,
    ) -> mpsc::Receiver<Result<v1::Event, Status>> {
        let mut older = None;
        let cursor = match self.start {
            Begin::At(Start::Since(since)) if archive.is_some() => {
                let held_from = hub.history().oldest.unwrap_or_else(SystemTime::now);
                match archive {
                    Some(archive) if since < held_from => {
                        let before = self.until.map_or(held_from, |until| until.min(held_from));
                        older = Some((archive.replay(since, before), since..before));
                        hub.cursor(Start::Since(held_from), peer)
                    }
                    _ => hub.cursor(Start::Since(since), peer),
                }
            }
            Begin::At(start) => hub.cursor(start, peer),
            Begin::LastMatching(count) => {
                let filters = &self.filters;
                let until = self.until.map(convert::timestamp);
                let before_until = |event: &v1::Event| match (&until, &event.time) {
                    (Some(until), Some(time)) => {
                        (time.seconds, time.nanos) < (until.seconds, until.nanos)
                    }
                    _ => true,
                };
                hub.cursor_last_matching(
                    count,
                    &|event| before_until(event) && filters.matches(event),
                    peer,
                )
            }
        };
        // Without follow, the stream ends at what is published now.
        let end = (!self.follow).then(|| hub.history().published);
        let (sender, receiver) = mpsc::channel(SEND_QUEUE);
        tokio::spawn(self.run(older, cursor, end, sender));
        receiver
    }

    async fn run(
        self,
        older: Option<Older>,
        mut cursor: Cursor,
        end: Option<u64>,
        sender: mpsc::Sender<Result<v1::Event, Status>>,
    ) {
        let node = cursor.node().to_owned();
        let mut sent_matching = 0;
        // What the archive covers is not sent again from the hub (a late
        // event is held under a later time than its own there).
        let mut archived = None;
        if let Some((mut older, range)) = older {
            archived = Some(range);
            while let Some(event) = older.recv().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(%error, "history from the archive ended early");
                        break;
                    }
                };
                if !self.filters.matches(&event) {
                    continue;
                }
                sent_matching += 1;
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
                if self.first.is_some_and(|first| sent_matching >= first) {
                    return;
                }
            }
        }
        loop {
            let item = match end {
                Some(_) => cursor.try_next(),
                None => {
                    let wait = self
                        .until
                        .map(|until| until.duration_since(SystemTime::now()).unwrap_or_default());
                    // Events first: history before `until` is sent even
                    // when the deadline has passed; a client that went away
                    // ends the task at once, even on a quiet node.
                    tokio::select! {
                        biased;
                        item = cursor.next() => item,
                        () = sender.closed() => return,
                        () = sleep_or_forever(wait) => None,
                    }
                }
            };
            let message = match item {
                None => return,
                Some(Item::Lost(loss, until)) => Arc::new(loss_message(&loss, until, &node)),
                Some(Item::Event(entry)) => {
                    if end.is_some_and(|end| entry.seq > end) {
                        return;
                    }
                    if self.until.is_some_and(|until| entry.time >= until) {
                        return;
                    }
                    if !self.filters.matches(&entry.event)
                        || archived
                            .as_ref()
                            .is_some_and(|range| from_the_archive(&entry.event, range))
                    {
                        continue;
                    }
                    sent_matching += 1;
                    entry.event
                }
            };
            if sender
                .send(Ok(convert::wire::on_the_wire(&message).into_owned()))
                .await
                .is_err()
            {
                return;
            }
            cursor.delivered();
            if self.first.is_some_and(|first| sent_matching >= first) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> v1::Event {
        v1::Event {
            time: Some(convert::timestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn the_hub_skips_only_what_the_archive_answered() {
        let second = |seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        let range = second(100)..second(200);
        assert!(from_the_archive(&at(100), &range), "since is in");
        assert!(from_the_archive(&at(150), &range));
        assert!(
            !from_the_archive(&at(200), &range),
            "the hub's own first time is out"
        );
        assert!(
            !from_the_archive(&at(99), &range),
            "before since: not asked of the archive"
        );
        assert!(
            !from_the_archive(&v1::Event::default(), &range),
            "no time: the hub's"
        );
    }
}
