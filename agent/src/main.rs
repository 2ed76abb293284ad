//! The `dropscope` binary: parses the command line and runs a subcommand.

use clap::Parser;
use dropscope::cli::Command;

/// Turns silent packet drops into named, explained events.
#[derive(Debug, Parser)]
#[command(name = "dropscope", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Explain(args) => dropscope::cli::explain::run(args).await,
    }
}
