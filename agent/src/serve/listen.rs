//! Where the API listens (or where a client connects): `unix:PATH` or
//! `HOST:PORT`. Parsed at the edge with errors naming the input.

use std::{
    fmt,
    net::{IpAddr, SocketAddr, ToSocketAddrs as _},
    path::PathBuf,
    str::FromStr,
};

/// The agent's default API socket.
pub const DEFAULT_SOCKET: &str = "/run/dropscope/dropscope.sock";

/// An API address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Default for Listen {
    fn default() -> Self {
        Self::Unix(PathBuf::from(DEFAULT_SOCKET))
    }
}

impl Listen {
    /// True for a Unix socket or a loopback TCP address: where plaintext
    /// is allowed.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp(address) => address.ip().is_loopback(),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(address) => write!(f, "{address}"),
        }
    }
}

/// An address that is neither `unix:PATH` nor `HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not unix:PATH or HOST:PORT ({reason})")]
pub struct ListenError {
    /// What was given.
    pub input: String,
    /// Why it does not parse.
    pub reason: String,
}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| ListenError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = input.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(error("empty socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Ok(address) = input.parse::<SocketAddr>() {
            return Ok(Self::Tcp(address));
        }
        let (host, port) = input.rsplit_once(':').ok_or_else(|| error("no port"))?;
        port.parse::<u16>()
            .map_err(|_| error("the port is not a number up to 65535"))?;
        if host.parse::<IpAddr>().is_err() && host != "localhost" {
            // Only names that resolve locally without a network lookup.
            return Err(error("the host must be an IP address or localhost"));
        }
        input
            .to_socket_addrs()
            .map_err(|source| error(&source.to_string()))?
            .next()
            .map(Self::Tcp)
            .ok_or_else(|| error("the name resolves to no address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_say_whether_they_are_local() {
        let unix: Listen = "unix:/run/x.sock".parse().expect("unix");
        assert_eq!(unix, Listen::Unix("/run/x.sock".into()));
        assert!(unix.is_local());
        let loopback: Listen = "127.0.0.1:4245".parse().expect("tcp");
        assert!(loopback.is_local());
        let v6: Listen = "[::1]:4245".parse().expect("tcp6");
        assert!(v6.is_local());
        let any: Listen = "0.0.0.0:4245".parse().expect("any");
        assert!(!any.is_local(), "all interfaces need TLS");
        assert!("localhost:4245".parse::<Listen>().is_ok());
        for bad in ["unix:", "4245", "host:99999", "example.com:80"] {
            let error = bad.parse::<Listen>().expect_err(bad).to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
