//! The `dropscope` binary.
use clap::Parser as _;
use dropscope::{cli::Cli, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(error) = telemetry::init(&cli.log_level, cli.log_format) {
        eprintln!("dropscope: {error:#}");
        return std::process::ExitCode::from(2);
    }
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dropscope: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
