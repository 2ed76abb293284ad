//! The stream's subjects, node tokens and message ids (see the module
//! above for the layout).

/// The subjects of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    /// `<stream>.v1`.
    prefix: String,
}

/// What a message of the stream is, by its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A node's event; the node's token.
    Events(String),
    /// A node's status report; the node's token.
    Status(String),
    /// A node's agent run started; the node's token.
    Hello(String),
    /// A cluster incident a collector joined.
    Joined,
}

impl Subjects {
    /// The subjects under `stream` (a valid stream name).
    pub fn new(stream: &str) -> Self {
        Self {
            prefix: format!("{stream}.v1"),
        }
    }

    /// Every subject of the stream (what the stream captures).
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// Every node's events.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// `node`'s events.
    pub fn events(&self, node: &str) -> String {
        format!("{}.events.{}", self.prefix, node_token(node))
    }

    /// `node`'s status reports.
    pub fn status(&self, node: &str) -> String {
        format!("{}.status.{}", self.prefix, node_token(node))
    }

    /// `node`'s agent runs starting.
    pub fn hello(&self, node: &str) -> String {
        format!("{}.hello.{}", self.prefix, node_token(node))
    }

    /// Joined cluster incidents.
    pub fn joined(&self) -> String {
        format!("{}.joined", self.prefix)
    }

    /// What `subject` carries; `None` for a subject dropscope does not
    /// publish.
    pub fn classify(&self, subject: &str) -> Option<Subject> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        if rest == "joined" {
            return Some(Subject::Joined);
        }
        let (kind, token) = rest.split_once('.')?;
        if token.is_empty() || token.contains('.') {
            return None;
        }
        let token = token.to_owned();
        match kind {
            "events" => Some(Subject::Events(token)),
            "status" => Some(Subject::Status(token)),
            "hello" => Some(Subject::Hello(token)),
            _ => None,
        }
    }
}

/// A node name as one subject token: ASCII letters, digits and `-` as
/// they are, anything else `_`.
pub fn node_token(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// True for a name JetStream takes as a stream name and that makes valid
/// subjects.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The message id of an agent run's event `sequence`: the run is the
/// agent's start time, so a restarted agent's numbers never collide with
/// the previous run's.
pub fn event_id(node: &str, run_nanos: u128, sequence: u64) -> String {
    format!("{}:{run_nanos}:{sequence}", node_token(node))
}

/// The message id of a joined incident: one per incident of a node, so
/// two replicas (or one after a redelivery) store it once.
pub fn joined_id(node: &str, incident_id: u64) -> String {
    format!("joined:{}:{incident_id}", node_token(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_through_classify() {
        let subjects = Subjects::new("dropscope");
        let node = "ip-10-0-1-7.eu-west-1.compute.internal";
        let token = node_token(node);
        assert_eq!(token, "ip-10-0-1-7_eu-west-1_compute_internal");
        assert_eq!(
            subjects.events(node),
            format!("dropscope.v1.events.{token}")
        );
        assert_eq!(
            subjects.classify(&subjects.events(node)),
            Some(Subject::Events(token.clone()))
        );
        assert_eq!(
            subjects.classify(&subjects.status(node)),
            Some(Subject::Status(token.clone()))
        );
        assert_eq!(
            subjects.classify(&subjects.hello(node)),
            Some(Subject::Hello(token))
        );
        assert_eq!(subjects.classify(&subjects.joined()), Some(Subject::Joined));
        assert_eq!(subjects.all(), "dropscope.v1.>");
        assert_eq!(subjects.all_events(), "dropscope.v1.events.>");
    }

    #[test]
    fn foreign_subjects_are_not_ours() {
        let subjects = Subjects::new("dropscope");
        for subject in [
            "dropscope.v1",
            "dropscope.v1.",
            "dropscope.v1.events",
            "dropscope.v1.events.",
            "dropscope.v1.events.a.b",
            "dropscope.v1.other.a",
            "dropscope.v2.events.a",
            "dropscopex.v1.events.a",
            "other.v1.events.a",
        ] {
            assert_eq!(subjects.classify(subject), None, "{subject}");
        }
    }

    #[test]
    fn stream_names_that_make_bad_subjects_are_refused() {
        for name in ["dropscope", "drop_scope-2", "A"] {
            assert!(valid_stream_name(name), "{name}");
        }
        for name in ["", "drop.scope", "drop scope", "a*", "a>", "ü"] {
            assert!(!valid_stream_name(name), "{name}");
        }
    }

    #[test]
    fn message_ids_differ_by_run_and_node() {
        assert_ne!(event_id("a", 1, 7), event_id("a", 2, 7));
        assert_ne!(event_id("a", 1, 7), event_id("b", 1, 7));
        assert_ne!(joined_id("a", 7), event_id("a", 0, 7));
    }
}
