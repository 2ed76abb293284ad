//! Snapshot files: a Kubernetes `List` in YAML or JSON, exactly what
//! `kubectl get namespaces,pods,services,endpointslices,networkpolicies,nodes
//! -A -o yaml` (or `-o json`) prints. Receives a path or text; emits
//! [`WatchEvent`]s fed to the same [`Store::apply`] as the live watch.
//!
//! A snapshot is input from whoever can write the file, so the loader
//! bounds what it costs and what it repeats:
//! - **Size.** A file over [`MAX_SNAPSHOT_BYTES`] is refused from its
//!   metadata before it is read, and again while reading (a file that grows,
//!   or a pipe); the error names the file, its size and the cap.
//! - **No YAML anchors or aliases** (kubectl never writes them): one alias
//!   can repeat a large subtree, so a 15 KB file could expand to gigabytes.
//!   Before anything is built, a probe pass hands libyaml a copy of the text
//!   in which every `&` and `*` byte is a backquote, a character that can
//!   appear inside scalars and comments but cannot start a token: libyaml
//!   fails exactly where the original has an anchor or alias (the error
//!   names its line, column and field path), and a copy without either byte
//!   cannot expand. Only a file that passes is read for real. As a second
//!   line, every pass is charged per node and per scalar byte against a
//!   budget of four times the file's length, which no alias-free document
//!   reaches.
//! - **Duplicate mapping keys** are rejected with their field path
//!   (`items[3].spec.podSelector.matchLabels.app`) and line, anywhere in the
//!   document: kubectl never writes them, and which copy wins is a matter
//!   of parser.
//! - **Errors never echo the file.** A fatal error names the file, the line
//!   and column, the field path and a problem chosen from a fixed list
//!   ([`Problem`]); parser messages are used only when they are one of the
//!   parser's own constant texts. A skipped item's reason says what type was
//!   expected and which kind of value was found, never the value: a token
//!   file handed to `--snapshot` does not print the token. Field paths name
//!   mapping keys (the structure), identifying fields (`kind`, namespace,
//!   name) name the skipped object, as the logs must.
//!
//! **Memory.** Items are read one at a time: each becomes a small tree
//! (`node::Node`), is converted to its Kubernetes type and dropped; no tree
//! of the whole document is built, and no second copy of the text is kept
//! while items are read. JSON is read straight from the text: a load holds
//! the text (at most [`MAX_SNAPSHOT_BYTES`]), one item's tree and the typed
//! objects. YAML goes through libyaml, which has no streaming interface in
//! the crates this project uses: serde_norway first turns the whole
//! document into a list of parse events, several times the size of the
//! text, and the items are then read from those events as above. A file
//! with any `&` or `*` byte is probed first: the probe holds a copy of the
//! text and that copy's events, both dropped before the real read. So the
//! peak is the text plus one list of events (plus, during the probe, the
//! copy), one item's tree and the objects. Measured on a 30 MB
//! kubectl-shaped YAML List: a 520 MB peak, the filled store included
//! (building the old loader's `serde_json::Value` of it alone took
//! 650 MB); the same List as 47 MB of JSON: 200 MB. For the largest
//! clusters, JSON costs a third of YAML.
//!
//! A bad item is skipped with a warning naming `items[N]`, its kind,
//! namespace, name and field path, and recorded in the store (explanations
//! say it is missing); a file that is not a List, or breaks one of the
//! bounds above, is an error naming the file, line and field.

mod document;
mod error;
mod item;
mod json;
mod node;
mod read;
mod value;
mod walk;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use self::error::{Error, Problem};
use super::store::{Kind, Store, WatchEvent};

/// The largest snapshot file the loader reads: 256 MiB, checked before
/// reading and while reading. `kubectl get -A -o yaml` of the six kinds
/// prints about 1-2 KB per object, so this holds a List of over a hundred
/// thousand objects. It bounds the worst case, not the usual one: at the
/// cap, a YAML load peaks at roughly 17 times the file (about 4 GB, mostly
/// libyaml's events; see the module docs), a JSON load at roughly 4 times.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

/// An item the loader skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Field path of the problem, starting at `items[N]`.
    pub field: String,
    /// The item's kind, as written.
    pub kind: String,
    /// Its namespace (empty when none).
    pub namespace: String,
    /// Its name (empty when none).
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// What loading a snapshot did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Objects stored.
    pub applied: usize,
    /// Items skipped, each also logged as a warning.
    pub skipped: Vec<Skipped>,
}

/// Parsed snapshot items: events with their item index, and skipped items.
pub type Parsed = (Vec<(usize, WatchEvent)>, Vec<Skipped>);

/// Reads a snapshot file (at most [`MAX_SNAPSHOT_BYTES`]) into the store.
pub fn load(path: &Path, store: &mut Store) -> Result<Loaded, super::Error> {
    let text = read::read_capped(path, MAX_SNAPSHOT_BYTES).map_err(|error| error.at(path))?;
    load_str(&text, path, store)
}

/// Parses snapshot text (`path` only names it in errors) into the store.
pub fn load_str(text: &str, path: &Path, store: &mut Store) -> Result<Loaded, super::Error> {
    let (events, mut skipped) = parse(text, path)?;
    // Items that could not be read as their kind never reach `apply`: the
    // store still learns of them, so explanations say they are missing.
    // Noted after the valid items, so that a List holding a good and a bad
    // copy of one object fails closed.
    let unreadable = skipped.len();
    let mut loaded = Loaded::default();
    for (index, event) in events {
        match store.apply(event) {
            Ok(()) => loaded.applied += 1,
            Err(error) => skipped.push(item::skip_invalid(index, error)),
        }
    }
    for skip in &skipped[..unreadable] {
        if let Some(kind) = Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == skip.kind)
        {
            store.note_skipped(kind, &skip.namespace, &skip.name, skip.reason.clone());
        }
    }
    for skip in &skipped {
        tracing::warn!(
            path = %path.display(),
            field = %skip.field,
            kind = %skip.kind,
            namespace = %skip.namespace,
            name = %skip.name,
            reason = %skip.reason,
            "snapshot item skipped"
        );
    }
    loaded.skipped = skipped;
    Ok(loaded)
}

/// Parses snapshot text into events, each with its item index, and the
/// items skipped because they do not parse as their kind.
pub fn parse(text: &str, path: &Path) -> Result<Parsed, super::Error> {
    read_document(text).map_err(|error| error.at(path))
}

/// Reads a List document, YAML or JSON (a document whose first character
/// is `{` is JSON, as `kubectl -o json` prints it), after a byte order
/// mark if there is one (which serde_norway would take for a document).
fn read_document(text: &str) -> Result<Parsed, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        json::read(text)
    } else {
        yaml::read(text)
    }
}
