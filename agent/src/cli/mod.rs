//! The `dropscope` command line: one subcommand per file.

pub mod agent;
pub mod collector;
pub mod explain;
pub mod nats;
pub mod observe;
pub mod otlp;
pub mod watch;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// dropscope: turns silent packet drops into named, explained events.
#[derive(Debug, Parser)]
#[command(name = "dropscope", version, about, long_about = None)]
pub struct Cli {
    /// Log level or filter directive (e.g. `info`, `dropscope=debug`);
    /// `RUST_LOG` overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "DROPSCOPE_LOG_LEVEL"
    )]
    pub log_level: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain, env = "DROPSCOPE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture drops on this node and stream them as events.
    Agent(Box<agent::Args>),
    /// Explain what NetworkPolicy would do with a flow, and why.
    ///
    /// Prints the verdict (allowed, or denied at the source's egress or the
    /// destination's ingress), the policies involved, the rule that came
    /// closest, hints naming the trap (DNS egress, Service port vs target
    /// port, kubelet probes, selectors matching nothing, …) and the smallest
    /// NetworkPolicy that would allow the flow. A Service destination is
    /// resolved through its EndpointSlices to a backend pod and evaluated on
    /// the target port, as the CNI sees the packet after DNAT.
    ///
    /// Example:
    ///   dropscope explain --snapshot cluster.yaml --from default/web \
    ///     --to kube-system/svc/kube-dns --port 53 --protocol UDP -o json
    #[command(verbatim_doc_comment)]
    Explain(explain::Args),
    /// Read drops, incidents and losses from an agent's API: history, then
    /// live with --follow.
    Observe(Box<observe::Args>),
    /// Receive every agent's events and serve the cluster's stream.
    Collector(Box<collector::Args>),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Agent(args) => agent::run(*args).await,
            Command::Explain(args) => explain::run(args).await,
            Command::Observe(args) => observe::run(*args).await,
            Command::Collector(args) => collector::run(*args).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{explain::Target, model::Protocol};

    #[test]
    fn the_command_line_is_consistent_and_parses_explain() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "dropscope",
            "explain",
            "--snapshot",
            "cluster.yaml",
            "--from",
            "default/web",
            "--to",
            "kube-system/svc/kube-dns",
            "--port",
            "53",
            "--protocol",
            "udp",
            "-o",
            "json",
        ])
        .expect("parses");
        let Command::Explain(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(
            args.to,
            Target::Service {
                namespace: "kube-system".into(),
                name: "kube-dns".into()
            }
        );
        assert_eq!(args.protocol, Protocol::Udp);
        for bad in [["--from", "a/b/c"], ["--protocol", "ICMP"]] {
            let mut argv = vec![
                "dropscope",
                "explain",
                "--from",
                "default/web",
                "--to",
                "10.0.0.1",
                "--port",
                "1",
            ];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
