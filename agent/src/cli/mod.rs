//! The command line: one subcommand per file, each an args struct and its
//! `run`. Receives argv (through clap); emits the chosen command's run.

pub mod explain;

/// dropscope subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
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
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{explain::Target, model::Protocol};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

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
        let Command::Explain(args) = cli.command;
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
