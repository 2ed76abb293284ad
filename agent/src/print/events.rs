//! Events on a terminal or in a file, for `dropscope agent` and `dropscope
//! observe` alike. Receives the contract's messages (`dropscope.v1.Event`);
//! `json` is their proto3 JSON mapping, one object per line, the same bytes
//! whichever command prints them; `compact` is one readable line per event;
//! `table` aligns the same facts in columns.

use std::{fmt::Write as _, io::Write};

use dropscope_proto::v1;

use crate::fanout::{Cursor, Item, loss_message};

/// How events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per event.
    #[default]
    #[value(alias = "text")]
    Compact,
    /// The proto3 JSON mapping of `dropscope.v1.Event`, one per line.
    Json,
    /// Aligned columns under a header.
    Table,
}

/// Whether to colour the output (only ever on a terminal).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours on.
    pub color: bool,
}

impl Style {
    /// Colours when `stream` is a terminal and `NO_COLOR` is not set.
    pub fn for_terminal(stream: &impl std::io::IsTerminal) -> Self {
        Self {
            color: stream.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// The header line of `table`.
pub const TABLE_HEADER: &str = "TIME                      NODE            KIND    REASON              SOURCE                                    DESTINATION                                          PROTO  VERDICT       POLICY                        COUNT";

/// Lines queued for the writer thread.
const WRITE_QUEUE: usize = 64;

/// Why the terminal output ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The hub closed: every event was written.
    HubClosed,
    /// stdout was closed (the reader went away): the agent stops, as a
    /// command whose output pipe closed does.
    StdoutClosed,
}

/// Writes every item of `cursor` to stdout until the hub closes or stdout
/// does. The writes happen on a thread of their own: a terminal that stops
/// reading blocks that thread, never a runtime worker, and cannot keep the
/// process from exiting.
pub async fn run(mut cursor: Cursor, format: Format) -> Ended {
    let style = Style::for_terminal(&std::io::stdout());
    let node = cursor.node().to_owned();
    let (lines, mut queued) = tokio::sync::mpsc::channel::<String>(WRITE_QUEUE);
    let (done, written) = tokio::sync::oneshot::channel();
    let writer = std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            while let Some(line) = queued.blocking_recv() {
                let mut out = stdout.lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    tracing::info!("stdout closed");
                    break;
                }
            }
            let _ = done.send(());
        });
    if let Err(error) = writer {
        tracing::error!(%error, "cannot start the stdout writer; no terminal output");
        return Ended::StdoutClosed;
    }
    if format == Format::Table && lines.send(TABLE_HEADER.to_owned()).await.is_err() {
        return Ended::StdoutClosed;
    }
    while let Some(item) = cursor.next().await {
        let message = match item {
            Item::Event(entry) => entry.event,
            Item::Lost(loss, until) => std::sync::Arc::new(loss_message(&loss, until, &node)),
        };
        if lines.send(render(&message, format, style)).await.is_err() {
            return Ended::StdoutClosed;
        }
        cursor.delivered();
    }
    drop(lines);
    let _ = written.await;
    Ended::HubClosed
}

/// One event as one line.
pub fn render(event: &v1::Event, format: Format, style: Style) -> String {
    match format {
        Format::Json => serde_json::to_string(&*crate::convert::wire::on_the_wire(event))
            .unwrap_or_else(|error| format!(r#"{{"error":"cannot serialize event: {error}"}}"#)),
        Format::Compact => match &event.event {
            Some(v1::event::Event::Drop(drop)) => compact_drop(event, drop, style),
            Some(v1::event::Event::Loss(loss)) => compact_loss(event, loss, style),
            Some(v1::event::Event::Incident(incident)) => compact_incident(event, incident, style),
            Some(v1::event::Event::NodeState(state)) => compact_node_state(event, state, style),
            None => format!("{} {} (empty event)", time(event.time.as_ref()), event.node),
        },
        Format::Table => table_row(event),
    }
}

/// RFC 3339 with milliseconds, or `-`.
fn time(timestamp: Option<&pbjson_types::Timestamp>) -> String {
    timestamp.and_then(crate::convert::time_of).map_or_else(
        || "-".to_owned(),
        |time| humantime::format_rfc3339_millis(time).to_string(),
    )
}

fn endpoint(endpoint: Option<&v1::Endpoint>) -> String {
    match endpoint {
        Some(v1::Endpoint { ip, port }) if ip.contains(':') => format!("[{ip}]:{port}"),
        Some(v1::Endpoint { ip, port }) => format!("{ip}:{port}"),
        None => "?".to_owned(),
    }
}

fn protocol_name(tuple: &v1::Tuple) -> String {
    match v1::Protocol::try_from(tuple.protocol) {
        Ok(v1::Protocol::Tcp) => "TCP".into(),
        Ok(v1::Protocol::Udp) => "UDP".into(),
        Ok(v1::Protocol::Sctp) => "SCTP".into(),
        Ok(v1::Protocol::Icmp) => "ICMP".into(),
        Ok(v1::Protocol::Icmpv6) => "ICMPv6".into(),
        _ => format!("IP-PROTO-{}", tuple.protocol_number),
    }
}

/// `ns/pod`, `node NAME`, `svc ns/name`, … for an identity.
fn who(identity: Option<&v1::Identity>) -> Option<String> {
    use v1::identity::Identity as Kind;
    match identity?.identity.as_ref()? {
        Kind::Pod(pod) => Some(format!("{}/{}", pod.namespace, pod.name)),
        Kind::Service(service) => Some(format!("svc {}/{}", service.namespace, service.name)),
        Kind::Node(node) => Some(format!("node {}", node.name)),
        Kind::External(_) => Some("external".into()),
        Kind::Unknown(_) => None,
    }
}

fn verdict_name(verdict: i32) -> &'static str {
    match v1::Verdict::try_from(verdict) {
        Ok(v1::Verdict::Allow) => "allow",
        Ok(v1::Verdict::DenyEgress) => "deny_egress",
        Ok(v1::Verdict::DenyIngress) => "deny_ingress",
        Ok(v1::Verdict::DenyBoth) => "deny_both",
        _ => "-",
    }
}

/// The policies of the denying directions, `ns/name` comma-separated,
/// with `+N more` for those the explanation does not list.
fn deciding_policies(explanation: &v1::Explanation) -> String {
    let denying = || {
        [&explanation.egress, &explanation.ingress]
            .into_iter()
            .flatten()
            .filter(|report| !report.allowed)
    };
    let mut named: Vec<String> = denying()
        .flat_map(|report| report.policies.iter())
        .map(|policy| format!("{}/{}", policy.namespace, policy.name))
        .collect();
    let more: u64 = denying().map(|report| report.policies_unlisted).sum();
    if more > 0 {
        named.push(format!("+{more} more"));
    }
    named.join(",")
}

fn kind_word(drop: &v1::DropEvent) -> &'static str {
    match v1::DropEventKind::try_from(drop.kind) {
        Ok(v1::DropEventKind::New) => "DROP",
        Ok(v1::DropEventKind::Update) => "MORE",
        Ok(v1::DropEventKind::End) => "END",
        _ => "?",
    }
}

/// The source and destination as pods when known, addresses otherwise,
/// with the Service VIP and its backend when the packet was DNATed.
fn ends(drop: &v1::DropEvent) -> (String, String) {
    let packet = drop.packet.clone().unwrap_or_default();
    let explanation = drop.explanation.as_ref();
    let named = |end: Option<&v1::FlowEnd>, address: String| match who(
        end.and_then(|end| end.identity.as_ref())
    ) {
        Some(name) => format!("{name} ({address})"),
        None => address,
    };
    let source = named(
        explanation.and_then(|explanation| explanation.source.as_ref()),
        endpoint(packet.source.as_ref()),
    );
    let mut destination = named(
        explanation.and_then(|explanation| explanation.destination.as_ref()),
        endpoint(packet.destination.as_ref()),
    );
    if let Some(conntrack) = drop.conntrack.as_ref().filter(|conntrack| conntrack.dnat) {
        let vip = endpoint(
            conntrack
                .original
                .as_ref()
                .and_then(|original| original.destination.as_ref()),
        );
        let service = explanation
            .and_then(|explanation| who(explanation.service.as_ref()))
            .map(|service| format!("{service} "))
            .unwrap_or_default();
        destination = format!("{service}{vip} => {destination}");
    }
    (source, destination)
}

fn compact_drop(event: &v1::Event, drop: &v1::DropEvent, style: Style) -> String {
    let packet = drop.packet.clone().unwrap_or_default();
    let reason = drop
        .reason
        .as_ref()
        .map_or("?", |reason| reason.name.as_str());
    let (source, destination) = ends(drop);
    let mut line = format!(
        "{} {} {} #{} {} {source} -> {destination} {}",
        time(drop.last_seen.as_ref()),
        event.node,
        style.paint("31", kind_word(drop)),
        drop.flow_id,
        style.paint("1", reason),
        protocol_name(&packet),
    );
    if !drop.tcp_flags_seen.is_empty() {
        let _ = write!(line, " [{}]", drop.tcp_flags_seen.join("|"));
    }
    let _ = write!(line, " x{}", drop.packets);
    line.push_str(&place_words(drop));
    if let Some(explanation) = &drop.explanation {
        let verdict = verdict_name(explanation.verdict);
        let painted = if verdict == "allow" {
            style.paint("32", verdict)
        } else {
            style.paint("31", verdict)
        };
        let _ = write!(line, " | policy {painted}");
        let policies = deciding_policies(explanation);
        if !policies.is_empty() {
            let _ = write!(line, " by {policies}");
        }
        for hint in &explanation.hints {
            let _ = write!(line, "; [{}] {}", hint.code, hint.message);
        }
        if !explanation.stale.is_empty() {
            let kinds: Vec<&str> = explanation
                .stale
                .iter()
                .map(|stale| stale.kind.as_str())
                .collect();
            let _ = write!(
                line,
                "; [stale] the last known {} (their watch is failing)",
                kinds.join(", ")
            );
        }
    } else if let Some(location) = drop
        .location
        .as_ref()
        .filter(|location| !location.symbol.is_empty())
    {
        let _ = write!(line, " at {}", location.symbol);
    }
    if let Some(overflow) = &drop.overflow {
        let _ = write!(
            line,
            " (flow table full: aggregated by destination, {} drops of other flows folded in)",
            overflow.folded_packets
        );
    }
    line
}

/// ` if veth10->veth12 netns host`: the device the packet arrived on, the
/// device it was at when dropped, and the namespace, by name, when the agent
/// could name them (nothing otherwise: the numbers are in the JSON).
fn place_words(drop: &v1::DropEvent) -> String {
    let mut words = String::new();
    match (drop.interface.as_str(), drop.ingress_interface.as_str()) {
        ("", "") => {}
        (device, "") => {
            let _ = write!(words, " if {device}");
        }
        ("", arrived) => {
            let _ = write!(words, " if {arrived}->");
        }
        (device, arrived) if device == arrived => {
            let _ = write!(words, " if {device}");
        }
        (device, arrived) => {
            let _ = write!(words, " if {arrived}->{device}");
        }
    }
    if !drop.netns_name.is_empty() {
        let _ = write!(words, " netns {}", drop.netns_name);
    }
    words
}

/// `INCIDENT` when decided, `UPDATED` when evidence arrived after,
/// `JOINED` when a collector found its drops on another node.
fn incident_word(incident: &v1::Incident) -> &'static str {
    match v1::IncidentEventKind::try_from(incident.event_kind) {
        Ok(v1::IncidentEventKind::Update) => "UPDATED",
        Ok(v1::IncidentEventKind::Joined) => "JOINED",
        _ => "INCIDENT",
    }
}

fn compact_incident(event: &v1::Event, incident: &v1::Incident, style: Style) -> String {
    let word = incident_word(incident);
    let painted = match v1::FailurePlace::try_from(incident.place) {
        Ok(v1::FailurePlace::NotFailed) => style.paint("33", word),
        _ => style.paint("31", word),
    };
    format!(
        "{} {} {} {}",
        time(incident.last_seen.as_ref()),
        event.node,
        painted,
        incident.summary
    )
}

/// `connected (v0.1.0)`, `unavailable`, `error: …`.
fn node_state_words(state: &v1::NodeState) -> String {
    match v1::NodeConnection::try_from(state.connection) {
        Ok(v1::NodeConnection::Connected) => {
            format!("agent connected (dropscope {})", state.version)
        }
        Ok(v1::NodeConnection::Unavailable) => {
            "agent unavailable: its events may be missing until it reconnects".to_owned()
        }
        Ok(v1::NodeConnection::Error) => format!("agent stream failed: {}", state.error),
        _ => "agent state unknown".to_owned(),
    }
}

fn compact_node_state(event: &v1::Event, state: &v1::NodeState, style: Style) -> String {
    let word = match v1::NodeConnection::try_from(state.connection) {
        Ok(v1::NodeConnection::Connected) => style.paint("32", "NODE"),
        _ => style.paint("33", "NODE"),
    };
    format!(
        "{} {} {} {}",
        time(event.time.as_ref()),
        event.node,
        word,
        node_state_words(state)
    )
}

fn loss_words(source: i32) -> &'static str {
    match v1::LossSource::try_from(source) {
        Ok(v1::LossSource::KernelRingFull) => "drops not reported: kernel ring buffer full",
        Ok(v1::LossSource::KernelRecursion) => {
            "kernel hook invocations skipped (program already running on the CPU)"
        }
        Ok(v1::LossSource::Pipeline) => "events lost between pipeline steps",
        Ok(v1::LossSource::Subscriber) => "events missed by this reader: it read too slowly",
        Ok(v1::LossSource::History) => "events no longer held in the agent's history",
        Ok(v1::LossSource::KernelUnreadable) => {
            "drops not reported: headers unreadable or not IPv4/IPv6"
        }
        Ok(v1::LossSource::Undecodable) => "drops not reported: kernel records not decodable",
        Ok(v1::LossSource::ConnectsUntracked) => {
            "TCP connects not followed: the kernel's SYN_SENT table was full"
        }
        Ok(v1::LossSource::DnsUntracked) => {
            "DNS queries not followed: the table of pending queries was full"
        }
        Ok(v1::LossSource::DnsUnreadable) => "DNS messages that could not be read",
        _ => "lost",
    }
}

fn compact_loss(event: &v1::Event, loss: &v1::LossEvent, style: Style) -> String {
    let mut line = format!(
        "{} {} {} {} events, {} drops: {}",
        time(loss.time.as_ref()),
        event.node,
        style.paint("33", "LOST"),
        loss.lost_events,
        loss.lost_drops,
        loss_words(loss.source),
    );
    if let Some(until) = &loss.missing_until {
        let _ = write!(line, " (up to {})", time(Some(until)));
    }
    let _ = write!(
        line,
        " ({} events, {} drops in total)",
        loss.total_events, loss.total_drops
    );
    line
}

fn table_row(event: &v1::Event) -> String {
    let clip = |text: &str, width: usize| -> String {
        if text.chars().count() <= width {
            format!("{text:<width$}")
        } else {
            let kept: String = text.chars().take(width.saturating_sub(1)).collect();
            format!("{kept}…")
        }
    };
    match &event.event {
        Some(v1::event::Event::Drop(drop)) => {
            let packet = drop.packet.clone().unwrap_or_default();
            let (source, destination) = ends(drop);
            let (verdict, policy) =
                drop.explanation
                    .as_ref()
                    .map_or(("-", String::new()), |explanation| {
                        (
                            verdict_name(explanation.verdict),
                            deciding_policies(explanation),
                        )
                    });
            format!(
                "{} {} {} {} {} {} {} {} {} {}",
                clip(&time(drop.last_seen.as_ref()), 25),
                clip(&event.node, 15),
                clip(kind_word(drop), 7),
                clip(
                    drop.reason
                        .as_ref()
                        .map_or("?", |reason| reason.name.as_str()),
                    19
                ),
                clip(&source, 41),
                clip(&destination, 52),
                clip(&protocol_name(&packet), 6),
                clip(verdict, 13),
                clip(if policy.is_empty() { "-" } else { &policy }, 29),
                drop.packets,
            )
        }
        Some(v1::event::Event::Loss(loss)) => format!(
            "{} {} {} {} events, {} drops: {}",
            clip(&time(loss.time.as_ref()), 25),
            clip(&event.node, 15),
            clip("LOST", 7),
            loss.lost_events,
            loss.lost_drops,
            loss_words(loss.source)
        ),
        Some(v1::event::Event::Incident(incident)) => format!(
            "{} {} {} {}",
            clip(&time(incident.last_seen.as_ref()), 25),
            clip(&event.node, 15),
            clip(incident_word(incident), 7),
            incident.summary
        ),
        Some(v1::event::Event::NodeState(state)) => format!(
            "{} {} {} {}",
            clip(&time(event.time.as_ref()), 25),
            clip(&event.node, 15),
            clip("NODE", 7),
            node_state_words(state)
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_is_named_by_what_happened_to_it() {
        let word = |kind: v1::IncidentEventKind| {
            incident_word(&v1::Incident {
                event_kind: kind as i32,
                ..Default::default()
            })
        };
        assert_eq!(word(v1::IncidentEventKind::New), "INCIDENT");
        assert_eq!(word(v1::IncidentEventKind::Update), "UPDATED");
        assert_eq!(word(v1::IncidentEventKind::Joined), "JOINED");
    }

    #[test]
    fn a_drop_names_its_devices_and_namespace_only_when_known() {
        let place = |netns_name: &str, interface: &str, ingress: &str| {
            place_words(&v1::DropEvent {
                netns: 4026531840,
                ifindex: 12,
                ingress_ifindex: 3,
                netns_name: netns_name.into(),
                interface: interface.into(),
                ingress_interface: ingress.into(),
                ..Default::default()
            })
        };
        assert_eq!(
            place("host", "veth12", "veth10"),
            " if veth10->veth12 netns host"
        );
        assert_eq!(place("host", "eth0", ""), " if eth0 netns host");
        assert_eq!(place("host", "br0", "br0"), " if br0 netns host");
        assert_eq!(
            place("", "", ""),
            "",
            "a pod's namespace: numbers only, in the JSON"
        );
    }

    #[test]
    fn a_drop_explained_during_an_api_outage_says_which_kinds_are_stale() {
        let event = |stale: Vec<v1::StaleKind>| v1::Event {
            event: Some(v1::event::Event::Drop(v1::DropEvent {
                explanation: Some(v1::Explanation {
                    verdict: v1::Verdict::DenyIngress as i32,
                    stale,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let stale = |kind: &str| v1::StaleKind {
            kind: kind.into(),
            since: None,
        };
        let line = render(
            &event(vec![stale("pods"), stale("networkpolicies")]),
            Format::Compact,
            Style::default(),
        );
        assert!(
            line.ends_with(
                "; [stale] the last known pods, networkpolicies (their watch is failing)"
            ),
            "{line}"
        );
        let current = render(&event(Vec::new()), Format::Compact, Style::default());
        assert!(!current.contains("stale"), "{current}");
    }
}
