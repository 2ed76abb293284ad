//! `--watch-timeout`, the same on `agent` and `collector`, and the
//! metadata source both build from `--snapshot` and `--kubernetes`.

use std::{path::PathBuf, time::Duration};

use crate::enrich::{MetadataConfig, watch::WatchSettings};

/// How the API server is watched (with `--kubernetes`).
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// With --kubernetes: how long each watch request runs before it is
    /// renewed from its resource version (no new list). A watch that
    /// delivers nothing for this long plus 5s, not even the bookmark the
    /// API server sends about once a minute, is taken for a dead
    /// connection and resumed. Lower it behind proxies or load balancers
    /// that drop idle connections without closing them.
    #[arg(
        long,
        default_value = "290s",
        value_parser = at_least_a_second,
        env = "DROPSCOPE_WATCH_TIMEOUT"
    )]
    pub watch_timeout: Duration,
}

fn at_least_a_second(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if timeout < Duration::from_secs(1) {
        return Err(format!(
            "{text} is under a second: the API server counts watch timeouts in whole seconds"
        ));
    }
    Ok(timeout)
}

impl WatchArgs {
    /// The metadata source `--snapshot` and `--kubernetes` ask for (the
    /// two conflict on the command line).
    pub fn metadata(&self, snapshot: Option<PathBuf>, kubernetes: bool) -> MetadataConfig {
        match (snapshot, kubernetes) {
            (Some(path), _) => MetadataConfig::Snapshot(path),
            (None, true) => MetadataConfig::Kubernetes(WatchSettings {
                timeout: self.watch_timeout,
            }),
            (None, false) => MetadataConfig::Standalone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_timeout_is_whole_seconds_or_more() {
        assert_eq!(at_least_a_second("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(at_least_a_second("5m"), Ok(Duration::from_secs(300)));
        let error = at_least_a_second("500ms").expect_err("half a second is refused");
        assert!(error.contains("under a second"), "{error}");
        assert!(at_least_a_second("soon").is_err());
    }

    #[test]
    fn the_default_is_the_watchers_default() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            watch: WatchArgs,
        }
        let parsed = Command::try_parse_from(["dropscope"]).expect("defaults parse");
        assert_eq!(
            parsed.watch.watch_timeout,
            crate::enrich::watch::DEFAULT_WATCH_TIMEOUT
        );
    }

    #[test]
    fn kubernetes_carries_the_watch_timeout() {
        let args = WatchArgs {
            watch_timeout: Duration::from_secs(7),
        };
        assert!(matches!(
            args.metadata(None, true),
            MetadataConfig::Kubernetes(WatchSettings { timeout }) if timeout == Duration::from_secs(7)
        ));
        assert!(matches!(
            args.metadata(Some("s.yaml".into()), false),
            MetadataConfig::Snapshot(_)
        ));
        assert!(matches!(
            args.metadata(None, false),
            MetadataConfig::Standalone
        ));
    }
}
