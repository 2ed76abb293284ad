//! One List item: its kind dispatched, read as its Kubernetes type from its
//! [`Node`] tree, or skipped naming `items[N]`, the field path and a reason
//! that does not quote the file.

use serde::de::DeserializeOwned;

use super::{Parsed, Problem, Skipped, node::Node};
use crate::enrich::{
    Error,
    store::{Kind, Object, WatchEvent},
};

/// Reads item `index` into `parsed`: an event, or a skipped entry.
pub(super) fn read(node: Node, index: usize, parsed: &mut Parsed) {
    match object(&node) {
        Ok(object) => parsed.0.push((index, WatchEvent::Apply(object))),
        Err((field, problem)) => {
            let text = |path: &[&str]| node.str_at(path).unwrap_or_default().to_string();
            parsed.1.push(Skipped {
                field: if field.is_empty() || field == "." {
                    format!("items[{index}]")
                } else {
                    format!("items[{index}].{field}")
                },
                kind: text(&["kind"]),
                namespace: text(&["metadata", "namespace"]),
                name: text(&["metadata", "name"]),
                reason: problem.to_string(),
            });
        }
    }
}

/// The skipped entry for an item the store refused.
pub(super) fn skip_invalid(index: usize, error: Error) -> Skipped {
    match error {
        Error::Invalid {
            kind,
            namespace,
            name,
            reason,
        } => {
            let (field, reason) = match reason.split_once(": ") {
                Some((field, rest)) if field.contains('.') || field.contains('[') => {
                    (format!("items[{index}].{field}"), rest.to_string())
                }
                _ => (format!("items[{index}]"), reason),
            };
            Skipped {
                field,
                kind: kind.to_string(),
                namespace,
                name,
                reason,
            }
        }
        other => Skipped {
            field: format!("items[{index}]"),
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
            reason: other.to_string(),
        },
    }
}

fn object(node: &Node) -> Result<Object, (String, Problem)> {
    let kind = node.str_at(&["kind"]).unwrap_or_default();
    let kind = Kind::ALL
        .into_iter()
        .find(|candidate| candidate.as_str() == kind)
        .ok_or_else(|| ("kind".to_string(), Problem::UnusedKind))?;
    Ok(match kind {
        Kind::Namespace => Object::Namespace(typed(node)?),
        Kind::Pod => Object::Pod(typed(node)?),
        Kind::Service => Object::Service(typed(node)?),
        Kind::EndpointSlice => Object::EndpointSlice(typed(node)?),
        Kind::NetworkPolicy => Object::NetworkPolicy(typed(node)?),
        Kind::Node => Object::Node(typed(node)?),
    })
}

fn typed<K: DeserializeOwned>(node: &Node) -> Result<Box<K>, (String, Problem)> {
    serde_path_to_error::deserialize(node)
        .map(Box::new)
        .map_err(|error| (error.path().to_string(), error.into_inner().0))
}
