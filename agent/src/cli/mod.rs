//! The command line: one subcommand per file, each an args struct and its
//! `run`. Receives argv (through clap); emits the chosen command's run.

pub mod explain;

/// dropscope subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Explain what NetworkPolicy does with a flow, and why.
    Explain(explain::Args),
}
