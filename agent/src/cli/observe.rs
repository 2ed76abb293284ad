//! `dropscope observe`: a client of the Observer API. Builds one request
//! from the flags (filters, history, follow), prints each event (compact,
//! JSON or table) on stdout and status or loss lines on stderr; with
//! `--follow` it reconnects when the agent goes away and resumes after the
//! last event it printed.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use dropscope_proto::v1;
use tokio_stream::StreamExt as _;

use crate::client::{Connection, Server};
use crate::{
    convert,
    print::events::{Format, Style, TABLE_HEADER, render},
};

/// Read drop events and incidents from an agent's API: history, then live
/// with --follow.
///
/// Filters of different flags must all match (AND); repeating a flag
/// matches any of its values (OR); `--not` before a filter flag excludes
/// what it matches instead. Every filter applies to drops and incidents
/// alike (an incident's reason and TCP flags are those of its joined
/// drops). Loss lines (events or drops that could not be delivered) are
/// always shown, on stderr.
///
/// Examples:
///   dropscope observe --namespace shop --verdict deny_ingress --follow
///   dropscope observe --ip 10.96.0.10 --port 53 -o json --last 100
///   dropscope observe --from-pod shop/cart --not --reason NO_SOCKET
///   dropscope observe --incidents --from-pod shop/cart --place this_node
///   dropscope observe --incident-kind dns_unanswered --dns-name svc.cluster.local
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The API of an agent or a collector: `unix:PATH` or `HOST:PORT`
    /// (HOST an IP address or a DNS name, resolved at each connect).
    #[arg(
        long,
        default_value = "unix:/run/dropscope/dropscope.sock",
        env = "DROPSCOPE_SERVER"
    )]
    pub server: Server,
    /// PEM CA bundle that signed the agent's certificate (turns TLS on).
    #[arg(long, env = "DROPSCOPE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for agents that require mutual TLS.
    #[arg(long, env = "DROPSCOPE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, env = "DROPSCOPE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the agent's certificate must carry (default: the host of --server).
    #[arg(long, env = "DROPSCOPE_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Keep streaming live events (reconnecting if the agent restarts).
    #[arg(short, long)]
    pub follow: bool,
    /// The last N matching events from the agent's history.
    #[arg(long, value_name = "N", conflicts_with_all = ["first", "since"])]
    pub last: Option<u64>,
    /// The first N matching events of the history, then stop.
    #[arg(long, value_name = "N", conflicts_with = "follow")]
    pub first: Option<u64>,
    /// Events since a time: a duration ago (`5m`, `1h30m`) or RFC 3339.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Events until a time: a duration ago or RFC 3339.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Compact)]
    pub output: Format,
    /// Namespace of either end.
    #[arg(long, value_name = "NS")]
    pub namespace: Vec<String>,
    /// Pod name prefix of either end: `NS/PREFIX` or `PREFIX`.
    #[arg(long, value_name = "[NS/]POD")]
    pub pod: Vec<String>,
    /// Pod name prefix of the source.
    #[arg(long, value_name = "[NS/]POD")]
    pub from_pod: Vec<String>,
    /// Pod name prefix of the destination.
    #[arg(long, value_name = "[NS/]POD")]
    pub to_pod: Vec<String>,
    /// Label selector on either end's pod (`app=web,tier!=db`).
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub label: Vec<String>,
    /// Owning workload of either end: `KIND/NAME` or `NAME`.
    #[arg(long, value_name = "[KIND/]NAME")]
    pub workload: Vec<String>,
    /// Service the flow was sent to: `NS/NAME` or `NAME`.
    #[arg(long, value_name = "[NS/]NAME")]
    pub service: Vec<String>,
    /// Node that saw the event.
    #[arg(long)]
    pub node: Vec<String>,
    /// IP or CIDR of either end (packet or pre-DNAT original).
    #[arg(long, value_name = "IP|CIDR")]
    pub ip: Vec<String>,
    /// IP or CIDR of the source.
    #[arg(long, value_name = "IP|CIDR")]
    pub from_ip: Vec<String>,
    /// IP or CIDR of the destination (a Service VIP finds DNATed drops).
    #[arg(long, value_name = "IP|CIDR")]
    pub to_ip: Vec<String>,
    /// Port of either end.
    #[arg(long)]
    pub port: Vec<u32>,
    /// Protocol: TCP, UDP, SCTP, ICMP, ICMPv6.
    #[arg(long, value_parser = parse_protocol)]
    pub protocol: Vec<v1::Protocol>,
    /// TCP flags all set in a dropped packet (`SYN`, `SYN,ACK`).
    #[arg(long, value_name = "FLAGS")]
    pub tcp_flags: Vec<String>,
    /// Kernel drop reason name (NETFILTER_DROP, NO_SOCKET, …).
    #[arg(long)]
    pub reason: Vec<String>,
    /// NetworkPolicy verdict: allow, deny_egress, deny_ingress, deny_both.
    #[arg(long, value_parser = parse_verdict)]
    pub verdict: Vec<v1::Verdict>,
    /// NetworkPolicy behind the verdict: `NS/NAME` or `NAME`.
    #[arg(long, value_name = "[NS/]NAME")]
    pub policy: Vec<String>,
    /// Hint code (dns_egress_denied, service_port_not_target_port, …).
    #[arg(long)]
    pub hint: Vec<String>,
    /// Only incidents: connects that timed out, were refused or retried, and
    /// DNS lookups that failed.
    ///
    /// `--not --incidents` hides incidents instead.
    /// Example: `--incidents --from-pod shop/cart`
    #[arg(long)]
    pub incidents: bool,
    /// Incident kind: connect_timeout, connect_refused, connect_retried,
    /// dns_unanswered, dns_error.
    ///
    /// Also accepted as CONNECT_TIMEOUT or INCIDENT_KIND_CONNECT_TIMEOUT.
    /// Matches incidents only. Example: `--incident-kind connect_timeout`
    #[arg(long, value_name = "KIND", value_parser = parse_incident_kind)]
    pub incident_kind: Vec<v1::IncidentKind>,
    /// Where an incident's flow died: this_node, beyond_node, refused,
    /// unseen, not_failed.
    ///
    /// Also accepted as THIS_NODE or FAILURE_PLACE_THIS_NODE. Matches
    /// incidents only. Example: `--place this_node`
    #[arg(long, value_name = "PLACE", value_parser = parse_place)]
    pub place: Vec<v1::FailurePlace>,
    /// DNS name suffix of an incident's question, on whole labels,
    /// case-insensitive.
    ///
    /// `svc.cluster.local` matches `api.shop.svc.cluster.local`, not
    /// `mysvc.cluster.local`. Matches DNS incidents only.
    /// Example: `--dns-name svc.cluster.local`
    #[arg(long, value_name = "SUFFIX")]
    pub dns_name: Vec<String>,
    /// Exclude what the next filter flag matches (e.g. `--not --reason NO_SOCKET`).
    #[arg(long, action = clap::ArgAction::Count)]
    pub not: u8,
}

fn parse_time(input: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(input) {
        return SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{input:?} is before 1970"));
    }
    humantime::parse_rfc3339_weak(input)
        .map_err(|_| format!("{input:?} is neither a duration ago (5m) nor an RFC 3339 time"))
}

fn parse_protocol(input: &str) -> Result<v1::Protocol, String> {
    match input.to_ascii_uppercase().as_str() {
        "TCP" => Ok(v1::Protocol::Tcp),
        "UDP" => Ok(v1::Protocol::Udp),
        "SCTP" => Ok(v1::Protocol::Sctp),
        "ICMP" => Ok(v1::Protocol::Icmp),
        "ICMPV6" => Ok(v1::Protocol::Icmpv6),
        _ => Err(format!("{input:?} is not TCP, UDP, SCTP, ICMP or ICMPv6")),
    }
}

fn parse_verdict(input: &str) -> Result<v1::Verdict, String> {
    match input.to_ascii_lowercase().replace('-', "_").as_str() {
        "allow" => Ok(v1::Verdict::Allow),
        "deny_egress" => Ok(v1::Verdict::DenyEgress),
        "deny_ingress" => Ok(v1::Verdict::DenyIngress),
        "deny_both" => Ok(v1::Verdict::DenyBoth),
        _ => Err(format!(
            "{input:?} is not allow, deny_egress, deny_ingress or deny_both"
        )),
    }
}

/// An incident kind: `connect_timeout`, `CONNECT_TIMEOUT` or
/// `INCIDENT_KIND_CONNECT_TIMEOUT` (dashes for underscores too).
fn parse_incident_kind(input: &str) -> Result<v1::IncidentKind, String> {
    enum_by_name(input, "INCIDENT_KIND_", v1::IncidentKind::from_str_name)
        .filter(|kind| *kind != v1::IncidentKind::Unknown)
        .ok_or_else(|| {
            format!(
                "{input:?} is not connect_timeout, connect_refused, connect_retried, \
                 dns_unanswered or dns_error"
            )
        })
}

/// A failure place: `this_node`, `THIS_NODE` or `FAILURE_PLACE_THIS_NODE`
/// (dashes for underscores too).
fn parse_place(input: &str) -> Result<v1::FailurePlace, String> {
    enum_by_name(input, "FAILURE_PLACE_", v1::FailurePlace::from_str_name)
        .filter(|place| *place != v1::FailurePlace::Unknown)
        .ok_or_else(|| {
            format!("{input:?} is not this_node, beyond_node, refused, unseen or not_failed")
        })
}

/// A proto enum value by its name with or without the enum's `prefix`, in
/// any case, with dashes for underscores.
fn enum_by_name<E>(input: &str, prefix: &str, by_name: fn(&str) -> Option<E>) -> Option<E> {
    let name = input.trim().to_ascii_uppercase().replace('-', "_");
    if name.starts_with(prefix) {
        by_name(&name)
    } else {
        by_name(&format!("{prefix}{name}"))
    }
}

/// The filter flags, by long name (without `--`).
const FILTER_FLAGS: [&str; 23] = [
    "namespace",
    "pod",
    "from-pod",
    "to-pod",
    "label",
    "workload",
    "service",
    "node",
    "ip",
    "from-ip",
    "to-ip",
    "port",
    "protocol",
    "tcp-flags",
    "reason",
    "verdict",
    "policy",
    "hint",
    "incidents",
    "incident-kind",
    "place",
    "dns-name",
    "l",
];

/// The filter flags that take no value.
const SWITCH_FLAGS: [&str; 1] = ["incidents"];

/// The `(flag, value)` pairs that follow `--not` on a command line.
pub fn negated(argv: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        if word != "--not" {
            continue;
        }
        let Some(flag) = words.next() else {
            bail!("--not must be followed by a filter flag");
        };
        let flag_text = flag.trim_start_matches('-');
        let (name, value) = match flag_text.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None if SWITCH_FLAGS.contains(&flag_text) => (flag_text.to_owned(), String::new()),
            None => {
                let value = words
                    .next()
                    .with_context(|| format!("{flag} after --not needs a value"))?;
                (flag_text.to_owned(), value.clone())
            }
        };
        if !FILTER_FLAGS.contains(&name.as_str()) {
            bail!("--not must be followed by a filter flag, not {flag}");
        }
        let name = if name == "l" {
            "label".to_owned()
        } else {
            name
        };
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// One `EventFilter` from the flags; `keep` says which (flag, value) pairs
/// belong in it.
fn filter(args: &Args, keep: &dyn Fn(&str, &str) -> bool) -> anyhow::Result<v1::EventFilter> {
    let strings = |flag: &str, values: &[String]| -> Vec<String> {
        values
            .iter()
            .filter(|value| keep(flag, value))
            .cloned()
            .collect()
    };
    Ok(v1::EventFilter {
        namespace: strings("namespace", &args.namespace),
        pod: strings("pod", &args.pod),
        source_pod: strings("from-pod", &args.from_pod),
        destination_pod: strings("to-pod", &args.to_pod),
        label: strings("label", &args.label),
        workload: strings("workload", &args.workload),
        service: strings("service", &args.service),
        node: strings("node", &args.node),
        ip: strings("ip", &args.ip),
        source_ip: strings("from-ip", &args.from_ip),
        destination_ip: strings("to-ip", &args.to_ip),
        port: args
            .port
            .iter()
            .filter(|port| keep("port", &port.to_string()))
            .copied()
            .collect(),
        protocol: args
            .protocol
            .iter()
            .filter(|protocol| keep("protocol", protocol.as_str_name()))
            .map(|protocol| *protocol as i32)
            .collect(),
        tcp_flags: strings("tcp-flags", &args.tcp_flags),
        reason: strings("reason", &args.reason),
        verdict: args
            .verdict
            .iter()
            .filter(|verdict| keep("verdict", verdict.as_str_name()))
            .map(|verdict| *verdict as i32)
            .collect(),
        policy: strings("policy", &args.policy),
        hint: strings("hint", &args.hint),
        event_kind: if args.incidents && keep("incidents", "") {
            vec![v1::EventKind::Incident as i32]
        } else {
            Vec::new()
        },
        drop_kind: Vec::new(),
        incident_kind: args
            .incident_kind
            .iter()
            .filter(|kind| keep("incident-kind", kind.as_str_name()))
            .map(|kind| *kind as i32)
            .collect(),
        place: args
            .place
            .iter()
            .filter(|place| keep("place", place.as_str_name()))
            .map(|place| *place as i32)
            .collect(),
        dns_name: strings("dns-name", &args.dns_name),
    })
}

fn is_empty(filter: &v1::EventFilter) -> bool {
    filter == &v1::EventFilter::default()
}

/// The request the flags ask for; `negated` are the pairs after `--not`.
pub fn request(args: &Args, negated: &[(String, String)]) -> anyhow::Result<v1::ObserveRequest> {
    let is_negated = |flag: &str, value: &str| {
        negated.iter().any(|(name, negated_value)| {
            name == flag
                && (negated_value == value
                    || parse_protocol(negated_value).is_ok_and(|p| p.as_str_name() == value)
                    || parse_verdict(negated_value).is_ok_and(|v| v.as_str_name() == value)
                    || parse_incident_kind(negated_value).is_ok_and(|k| k.as_str_name() == value)
                    || parse_place(negated_value).is_ok_and(|p| p.as_str_name() == value))
        })
    };
    let allow = filter(args, &|flag, value| !is_negated(flag, value))?;
    let deny = filter(args, &is_negated)?;
    let (number, first) = match (args.last, args.first, args.since) {
        (Some(last), _, _) => (last, 0),
        (None, Some(first), _) => (0, first),
        (None, None, Some(_)) => (0, 0),
        // Like `hubble observe`: the last 20 unless told otherwise; with
        // --follow and no history flag, live events only.
        (None, None, None) if args.follow => (0, 0),
        (None, None, None) => (20, 0),
    };
    Ok(v1::ObserveRequest {
        number,
        first,
        follow: args.follow,
        since: args.since.map(convert::timestamp),
        until: args.until.map(convert::timestamp),
        allow: if is_empty(&allow) {
            Vec::new()
        } else {
            vec![allow]
        },
        deny: if is_empty(&deny) {
            Vec::new()
        } else {
            vec![deny]
        },
    })
}

/// Pause between reconnection attempts, doubling up to the last.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Streams until the server ends the stream (or forever with --follow).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let mut request = request(&args, &negated(&argv)?)?;
    let connection = Connection::new(
        &args.server,
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref().zip(args.tls_key.as_deref()),
        args.tls_server_name.as_deref(),
    )?;
    let style = Style::for_terminal(&std::io::stdout());
    let errors = Style::for_terminal(&std::io::stderr());
    if args.output == Format::Table {
        println!("{TABLE_HEADER}");
    }
    let mut attempt = 0;
    let mut last_time: Option<pbjson_types::Timestamp> = None;
    loop {
        let printed_before = last_time;
        let outcome = stream_once(
            &connection,
            &request,
            args.output,
            style,
            errors,
            &mut last_time,
        )
        .await;
        let until_passed = args.until.is_some_and(|until| until <= SystemTime::now());
        match outcome {
            Ok(()) if !args.follow || until_passed => return Ok(()),
            Ok(()) => eprintln!("dropscope observe: the agent ended the stream; reconnecting"),
            Err(error) if !args.follow => return Err(error),
            Err(error) => eprintln!("dropscope observe: {error:#}; reconnecting"),
        }
        // Resume after the last event printed: nothing twice, no gap the
        // new agent still holds.
        if let Some(time) = &last_time {
            request.since = Some(*time);
            request.number = 0;
        }
        // A stream that delivered something resets the backoff.
        if last_time != printed_before {
            attempt = 0;
        }
        tokio::time::sleep(BACKOFF[attempt.min(BACKOFF.len() - 1)]).await;
        attempt += 1;
    }
}

async fn stream_once(
    connection: &Connection,
    request: &v1::ObserveRequest,
    format: Format,
    style: Style,
    errors: Style,
    last_time: &mut Option<pbjson_types::Timestamp>,
) -> anyhow::Result<()> {
    let mut client = connection.observer().await?;
    let mut stream = client
        .observe(request.clone())
        .await
        .map_err(|status| status_error(connection.server(), "", &status))?
        .into_inner();
    // Updates come without their flow's explanation: the compact and table
    // lines show it again from the flow's NEW event (JSON prints what the
    // API sent).
    let mut carry = crate::convert::wire::Carry::default();
    while let Some(event) = stream.next().await {
        let mut event =
            event.map_err(|status| status_error(connection.server(), "stream from ", &status))?;
        if format != Format::Json {
            carry.fill(&mut event);
        }
        if let (Some(last), Some(time)) = (&last_time, &event.time)
            && (time.seconds, time.nanos) <= (last.seconds, last.nanos)
            && event.kind != v1::EventKind::Loss as i32
        {
            continue;
        }
        let is_loss = event.kind == v1::EventKind::Loss as i32;
        if is_loss && format != Format::Json {
            eprintln!("{}", render(&event, Format::Compact, errors));
        } else {
            println!("{}", render(&event, format, style));
        }
        if !is_loss {
            *last_time = event.time;
        }
    }
    Ok(())
}

/// An error naming the server, the status message and what caused it
/// (a refused TLS handshake, a reset connection): a transport failure's
/// message alone is only "transport error".
fn status_error(server: &Server, prefix: &str, status: &tonic::Status) -> anyhow::Error {
    let mut text = format!("{prefix}{server}: {}", status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    let transport = matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    );
    if transport && matches!(server, Server::Tcp { .. }) {
        text.push_str(" (does the agent use TLS (--tls-ca), or require a client certificate (--tls-cert, --tls-key)?)");
    }
    anyhow::anyhow!(text)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(argv: &[&str]) -> (Args, Vec<String>) {
        let mut full = vec!["dropscope", "observe"];
        full.extend(argv);
        let cli = Cli::try_parse_from(&full).expect("parses");
        let Command::Observe(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        (*args, full.into_iter().map(str::to_owned).collect())
    }

    #[test]
    fn flags_become_one_allow_filter_and_not_moves_a_value_to_deny() {
        let (args, argv) = parse(&[
            "--namespace",
            "shop",
            "--to-ip",
            "10.96.0.10",
            "--reason",
            "NETFILTER_DROP",
            "--not",
            "--reason",
            "NO_SOCKET",
            "--verdict",
            "deny-ingress",
            "--follow",
        ]);
        let request = request(&args, &negated(&argv).expect("negations")).expect("request");
        assert!(request.follow);
        assert_eq!(request.number, 0, "follow alone: live only");
        let allow = &request.allow[0];
        assert_eq!(allow.namespace, vec!["shop"]);
        assert_eq!(allow.destination_ip, vec!["10.96.0.10"]);
        assert_eq!(allow.reason, vec!["NETFILTER_DROP"]);
        assert_eq!(allow.verdict, vec![v1::Verdict::DenyIngress as i32]);
        assert_eq!(request.deny[0].reason, vec!["NO_SOCKET"]);
        assert!(request.deny[0].namespace.is_empty());
    }

    #[test]
    fn the_default_is_the_last_twenty_and_history_flags_conflict() {
        let (args, argv) = parse(&[]);
        let request = request(&args, &negated(&argv).expect("none")).expect("request");
        assert_eq!(
            (request.number, request.first, request.follow),
            (20, 0, false)
        );
        assert!(request.allow.is_empty() && request.deny.is_empty());
        for bad in [
            vec!["--last", "5", "--first", "5"],
            vec!["--first", "5", "--follow"],
            vec!["--since", "yesterday-ish"],
            vec!["--verdict", "maybe"],
        ] {
            let mut full = vec!["dropscope", "observe"];
            full.extend(&bad);
            assert!(Cli::try_parse_from(&full).is_err(), "{bad:?}");
        }
        let not_a_filter: Vec<String> = ["dropscope", "observe", "--not", "--follow"]
            .map(str::to_owned)
            .to_vec();
        assert!(negated(&not_a_filter).is_err());
    }

    #[test]
    fn incident_flags_fill_the_incident_fields_and_not_moves_them_to_deny() {
        let (args, argv) = parse(&[
            "--incidents",
            "--incident-kind",
            "connect_timeout",
            "--incident-kind",
            "DNS_UNANSWERED",
            "--not",
            "--incident-kind",
            "incident_kind_connect_retried",
            "--place",
            "this-node",
            "--not",
            "--place",
            "FAILURE_PLACE_UNSEEN",
            "--dns-name",
            "svc.cluster.local",
            "--not",
            "--dns-name=kube-system.svc.cluster.local",
        ]);
        let request = request(&args, &negated(&argv).expect("negations")).expect("request");
        let (allow, deny) = (&request.allow[0], &request.deny[0]);
        assert_eq!(allow.event_kind, vec![v1::EventKind::Incident as i32]);
        assert_eq!(
            allow.incident_kind,
            vec![
                v1::IncidentKind::ConnectTimeout as i32,
                v1::IncidentKind::DnsUnanswered as i32
            ]
        );
        assert_eq!(
            deny.incident_kind,
            vec![v1::IncidentKind::ConnectRetried as i32]
        );
        assert_eq!(allow.place, vec![v1::FailurePlace::ThisNode as i32]);
        assert_eq!(deny.place, vec![v1::FailurePlace::Unseen as i32]);
        assert_eq!(allow.dns_name, vec!["svc.cluster.local"]);
        assert_eq!(deny.dns_name, vec!["kube-system.svc.cluster.local"]);
        assert!(deny.event_kind.is_empty());
    }

    #[test]
    fn not_incidents_hides_incidents() {
        let (args, argv) = parse(&["--from-pod", "shop/cart", "--not", "--incidents"]);
        let request = request(&args, &negated(&argv).expect("negations")).expect("request");
        assert!(request.allow[0].event_kind.is_empty());
        assert_eq!(request.allow[0].source_pod, vec!["shop/cart"]);
        assert_eq!(
            request.deny[0].event_kind,
            vec![v1::EventKind::Incident as i32]
        );
    }

    #[test]
    fn incident_kinds_and_places_parse_in_every_spelling() {
        for input in [
            "CONNECT_TIMEOUT",
            "connect_timeout",
            "connect-timeout",
            "INCIDENT_KIND_CONNECT_TIMEOUT",
            "incident_kind_connect_timeout",
        ] {
            assert_eq!(
                parse_incident_kind(input),
                Ok(v1::IncidentKind::ConnectTimeout),
                "{input}"
            );
        }
        for input in ["THIS_NODE", "this_node", "FAILURE_PLACE_THIS_NODE"] {
            assert_eq!(
                parse_place(input),
                Ok(v1::FailurePlace::ThisNode),
                "{input}"
            );
        }
        for bad in ["unknown", "INCIDENT_KIND_UNKNOWN", "timeout", ""] {
            assert!(parse_incident_kind(bad).is_err(), "{bad}");
        }
        for bad in ["unknown", "FAILURE_PLACE_UNKNOWN", "elsewhere"] {
            assert!(parse_place(bad).is_err(), "{bad}");
        }
        for bad in [
            vec!["--incident-kind", "timeout"],
            vec!["--place", "elsewhere"],
        ] {
            let mut full = vec!["dropscope", "observe"];
            full.extend(&bad);
            assert!(Cli::try_parse_from(&full).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn since_takes_a_duration_ago_or_a_time() {
        let ago = parse_time("5m").expect("duration");
        let elapsed = SystemTime::now().duration_since(ago).expect("in the past");
        assert!(elapsed >= Duration::from_secs(300) && elapsed < Duration::from_secs(310));
        assert!(parse_time("2026-11-22T22:18:43Z").is_ok());
    }
}
