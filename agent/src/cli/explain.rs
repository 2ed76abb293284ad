//! `dropscope explain`: loads cluster metadata (a snapshot file or the live
//! API server), explains one flow, prints it. Receives its [`Args`]; emits
//! text or JSON on stdout through `print::explain`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    enrich::{snapshot, store::Store, view::View, watch},
    explain::{Flow, Target, explain},
    model::Protocol,
    print::explain::{Format, print},
};

/// The arguments of `dropscope explain` (its help is on `cli::Command::Explain`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Kubernetes List (YAML or JSON), as printed by `kubectl get
    /// namespaces,pods,services,endpointslices,networkpolicies,nodes -A -o
    /// yaml`. Without it, the live API server (kubeconfig or in-cluster).
    #[arg(long, value_name = "FILE", env = "DROPSCOPE_SNAPSHOT")]
    pub snapshot: Option<PathBuf>,
    /// Source: NS/POD or an IP address.
    #[arg(long, value_name = "NS/POD|IP")]
    pub from: Target,
    /// Destination: NS/POD, NS/svc/NAME (port is the Service port) or an IP.
    #[arg(long, value_name = "NS/POD|NS/svc/NAME|IP")]
    pub to: Target,
    /// Destination port (the Service port when --to is a Service).
    #[arg(long)]
    pub port: u16,
    /// Protocol: TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: Format,
}

/// How long the initial list of a live cluster may take.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn parse_protocol(input: &str) -> Result<Protocol, String> {
    match input.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(format!("{input:?} is not TCP, UDP or SCTP")),
    }
}

/// Loads the metadata, explains the flow, prints the explanation.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut store = Store::new();
    match &args.snapshot {
        Some(path) => {
            let loaded = snapshot::load(path, &mut store)?;
            tracing::debug!(
                applied = loaded.applied,
                skipped = loaded.skipped.len(),
                "snapshot loaded"
            );
        }
        None => {
            let client = watch::connect().await?;
            let mut events = watch::events(&client, watch::WatchSettings::default());
            tokio::time::timeout(SYNC_TIMEOUT, watch::sync_once(&mut events, &mut store))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the API server did not list every kind within {}s: is it reachable, and may this identity list pods, services, endpointslices, networkpolicies, namespaces and nodes?",
                        SYNC_TIMEOUT.as_secs()
                    )
                })?
                .context("reading cluster metadata")?;
        }
    }
    let flow = Flow {
        from: args.from,
        to: args.to,
        port: args.port,
        protocol: args.protocol,
        original: None,
    };
    let explanation = explain(&View::new(&store), &flow)?;
    print(&explanation, args.output)?;
    Ok(())
}
