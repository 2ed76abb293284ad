//! Logs: `tracing` to stderr, plain or JSON, level from `--log-level` or
//! `RUST_LOG`.

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, fmt};

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive
/// (e.g. `info`, `dropscope=debug`); `RUST_LOG` wins when set.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => EnvFilter::try_new(from_env)?,
        _ => {
            let filter = EnvFilter::try_new(level)?;
            // The NATS client logs every reconnect attempt at info; the
            // agent logs losing and regaining the connection itself.
            if level.contains("async_nats") {
                filter
            } else {
                filter.add_directive("async_nats=warn".parse()?)
            }
        }
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the log subscriber: {error}"))
}
