//! The `dropscope` command line: one subcommand per file.

pub mod agent;

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
    Agent(agent::Args),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Agent(args) => agent::run(args).await,
        }
    }
}
