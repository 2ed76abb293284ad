//! How filters combine: allow lists ORed, fields ANDed, values ORed, deny
//! subtracted; losses always pass; event and drop kinds.

use dropscope_proto::v1::{DropEventKind, EventFilter as F, EventKind};

use super::{
    Row, allow, both, check,
    events::{loss, plain},
    filter, node, port, s,
};

/// One row per rule.
fn rows() -> Vec<Row> {
    vec![
        // Lists and fields.
        allow("empty lists pass everything", vec![], plain(), true),
        allow(
            "an empty filter matches everything",
            vec![F::default()],
            plain(),
            true,
        ),
        allow(
            "or across filters: one matching allow filter is enough",
            vec![node(&["node-b"]), node(&["node-a"])],
            plain(),
            true,
        ),
        allow(
            "or across filters: no allow filter matching drops the event",
            vec![node(&["node-b"]), port(&[9])],
            plain(),
            false,
        ),
        allow(
            "and across fields: every set field matches",
            vec![filter(|f| {
                f.node = s(&["node-a"]);
                f.port = vec![8080];
            })],
            plain(),
            true,
        ),
        allow(
            "and across fields: one field failing fails the filter",
            vec![filter(|f| {
                f.node = s(&["node-a"]);
                f.port = vec![9];
            })],
            plain(),
            false,
        ),
        allow(
            "or across values: one value is enough",
            vec![port(&[9, 8080])],
            plain(),
            true,
        ),
        both(
            "allow minus deny: a matching deny filter drops an allowed event",
            vec![node(&["node-a"])],
            vec![port(&[8080])],
            plain(),
            false,
        ),
        both(
            "allow minus deny: a deny filter that does not match keeps it",
            vec![node(&["node-a"])],
            vec![port(&[9])],
            plain(),
            true,
        ),
        both(
            "deny alone drops what it matches",
            vec![],
            vec![filter(|f| f.reason = s(&["NETFILTER_DROP"]))],
            plain(),
            false,
        ),
        both(
            "deny alone passes the rest",
            vec![],
            vec![filter(|f| f.reason = s(&["NO_SOCKET"]))],
            plain(),
            true,
        ),
        // Losses.
        allow(
            "a loss passes an allow list it does not match",
            vec![node(&["node-b"])],
            loss(),
            true,
        ),
        both(
            "a loss passes a deny filter matching everything",
            vec![],
            vec![F::default()],
            loss(),
            true,
        ),
        allow(
            "a loss passes event_kind DROP",
            vec![filter(|f| f.event_kind = vec![EventKind::Drop as i32])],
            loss(),
            true,
        ),
        // Kinds.
        allow(
            "event_kind DROP matches a drop",
            vec![filter(|f| f.event_kind = vec![EventKind::Drop as i32])],
            plain(),
            true,
        ),
        allow(
            "event_kind LOSS does not match a drop",
            vec![filter(|f| f.event_kind = vec![EventKind::Loss as i32])],
            plain(),
            false,
        ),
        allow(
            "drop_kind NEW matches a new flow",
            vec![filter(|f| f.drop_kind = vec![DropEventKind::New as i32])],
            plain(),
            true,
        ),
        allow(
            "drop_kind END does not match a new flow",
            vec![filter(|f| f.drop_kind = vec![DropEventKind::End as i32])],
            plain(),
            false,
        ),
    ]
}

/// Every row of [`rows`].
#[test]
fn combination_rules() {
    check(rows());
}
