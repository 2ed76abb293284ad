//! The event stream on a terminal: one readable line per event, or JSON
//! lines (`--output json`: one object per line, `{"drop": {...}}` or
//! `{"loss": {...}}`).

use std::io::Write;

use crate::{
    fanout::Subscription,
    model::{DropEvent, Event, EventKind, Explanation, LossEvent, LossSource},
};

/// How events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Writes every event of `subscription` to stdout until the hub closes or
/// stdout does (a closed pipe ends the sink, not the agent).
pub async fn run(mut subscription: Subscription, format: Format) {
    let stdout = std::io::stdout();
    while let Some(event) = subscription.next().await {
        let line = render(&event, format);
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            tracing::info!("stdout closed; stopping the terminal output");
            return;
        }
    }
}

/// One event as one line.
pub fn render(event: &Event, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string(event)
            .unwrap_or_else(|error| format!(r#"{{"error":"cannot serialize event: {error}"}}"#)),
        Format::Text => match event {
            Event::Drop(drop) => text_drop(drop),
            Event::Loss(loss) => text_loss(loss),
        },
    }
}

fn text_drop(drop: &DropEvent) -> String {
    let time = humantime::format_rfc3339_millis(drop.last_seen);
    let kind = match drop.kind {
        EventKind::New => "DROP",
        EventKind::Update => "MORE",
        EventKind::End => "END ",
    };
    let mut line = format!(
        "{time} {kind} #{} {} {}",
        drop.flow_id, drop.reason, drop.packet
    );
    if drop.packet.protocol == crate::model::Protocol::Tcp {
        line.push_str(&format!(" [{}]", drop.tcp_flags_seen));
    }
    if let Some(ct) = &drop.conntrack
        && (ct.is_dnat() || ct.is_snat())
    {
        line.push_str(&format!(" (sent as {})", ct.original));
    }
    line.push_str(&format!(" x{}", drop.packets));
    match &drop.location.symbol {
        Some(symbol) => line.push_str(&format!(" at {symbol}")),
        None => line.push_str(&format!(" at {:#x}", drop.location.address)),
    }
    if drop.netns != 0 {
        line.push_str(&format!(" netns {}", drop.netns));
    }
    if drop.ifindex != 0 {
        line.push_str(&format!(" if {}", drop.ifindex));
    }
    if !drop.aggregated {
        line.push_str(" (not aggregated: no free flow slot)");
    }
    if let Some(explanation) = &drop.explanation {
        line.push_str(&explained(explanation));
    }
    line
}

/// ` | source -> destination [via Service]: verdict by policies; hints`.
fn explained(explanation: &Explanation) -> String {
    let mut text = format!(
        " | {} -> {}",
        explanation.source.identity, explanation.destination.identity
    );
    if let Some(service) = &explanation.service {
        text.push_str(&format!(" via {service}"));
    }
    text.push_str(&format!(": NetworkPolicy {}", explanation.verdict));
    let deciding: Vec<String> = [&explanation.egress, &explanation.ingress]
        .into_iter()
        .filter(|report| !report.allowed)
        .flat_map(|report| report.policies.iter().map(ToString::to_string))
        .collect();
    if !deciding.is_empty() {
        text.push_str(&format!(" ({})", deciding.join(", ")));
    }
    for hint in &explanation.hints {
        text.push_str(&format!("; [{}] {}", hint.code, hint.message));
    }
    text
}

fn text_loss(loss: &LossEvent) -> String {
    let time = humantime::format_rfc3339_millis(loss.time);
    let what = match loss.source {
        LossSource::KernelRingFull => "drops not reported: kernel ring buffer full",
        LossSource::KernelRecursion => {
            "kernel hook invocations skipped (program already running on the CPU)"
        }
        LossSource::Pipeline => "events lost between pipeline steps",
        LossSource::Subscriber => "events missed by this output: it read too slowly",
    };
    format!("{time} LOST {} {what} ({} in total)", loss.lost, loss.total)
}
