//! The address a client dials (`dropscope observe --server`, the agent's
//! `--collector`): `unix:PATH` or `HOST:PORT`, where HOST is an IP address
//! or a DNS name such as a Service's `dropscope-collector.dropscope.svc`.
//!
//! Unlike a listening address ([`crate::serve::Listen`]), a name is kept as
//! written and resolved on every dial, so a client that reconnects follows
//! the name to wherever it points now (a Service recreated, a collector
//! moved), and the name is what TLS checks the certificate against.

use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr};

/// Where a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP port on a host.
    Tcp {
        /// An IP address (IPv6 without brackets) or a DNS name.
        host: String,
        /// The port, never 0.
        port: u16,
    },
}

impl Server {
    /// The name a server certificate is checked against when none is
    /// given: the host as written (`localhost` for a Unix socket).
    pub fn tls_name(&self) -> &str {
        match self {
            Self::Unix(_) => "localhost",
            Self::Tcp { host, .. } => host,
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// An address that is neither `unix:PATH` nor `HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not unix:PATH or HOST:PORT ({reason})")]
pub struct ServerError {
    /// What was given.
    pub input: String,
    /// Why it does not parse.
    pub reason: &'static str,
}

impl FromStr for Server {
    type Err = ServerError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| ServerError {
            input: input.to_owned(),
            reason,
        };
        if let Some(path) = input.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(error("empty socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (host, port) = input.rsplit_once(':').ok_or_else(|| error("no port"))?;
        let port = match port.parse::<u16>() {
            Ok(0) => return Err(error("port 0 cannot be dialled")),
            Ok(port) => port,
            Err(_) => return Err(error("the port is not a number from 1 to 65535")),
        };
        let host = if let Some(inner) = host.strip_prefix('[') {
            let address = inner
                .strip_suffix(']')
                .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
                .ok_or_else(|| error("only an IPv6 address goes between brackets"))?;
            address.to_string()
        } else if host.contains(':') {
            return Err(error("an IPv6 address needs brackets: [ADDRESS]:PORT"));
        } else if let Ok(address) = host.parse::<IpAddr>() {
            address.to_string()
        } else if is_dns_name(host) {
            host.to_owned()
        } else {
            return Err(error(
                "the host is neither an IP address nor a DNS name (letters, digits and '-' in dot-separated labels of 1 to 63)",
            ));
        };
        Ok(Self::Tcp { host, port })
    }
}

/// A host name as DNS writes it: dot-separated labels of 1 to 63 letters,
/// digits and hyphens, not starting or ending with a hyphen, 253
/// characters at most (a final dot allowed).
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Server {
        Server::Tcp {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn names_addresses_and_sockets_parse_and_print_back() {
        for (input, parsed) in [
            ("unix:/run/x.sock", Server::Unix("/run/x.sock".into())),
            ("unix:///run/x.sock", Server::Unix("/run/x.sock".into())),
            ("127.0.0.1:4245", tcp("127.0.0.1", 4245)),
            ("[::1]:4245", tcp("::1", 4245)),
            ("localhost:4245", tcp("localhost", 4245)),
            (
                "dropscope-collector.dropscope.svc:4245",
                tcp("dropscope-collector.dropscope.svc", 4245),
            ),
            (
                "collector.dropscope.svc.cluster.local.:4245",
                tcp("collector.dropscope.svc.cluster.local.", 4245),
            ),
        ] {
            let server: Server = input.parse().expect(input);
            assert_eq!(server, parsed, "{input}");
            let printed = server.to_string();
            assert_eq!(printed.parse::<Server>().expect(&printed), parsed);
        }
    }

    #[test]
    fn the_certificate_is_checked_against_the_host_as_written() {
        let name: Server = "dropscope-collector.dropscope.svc:4245"
            .parse()
            .expect("name");
        assert_eq!(name.tls_name(), "dropscope-collector.dropscope.svc");
        let v6: Server = "[fd00::1]:4245".parse().expect("v6");
        assert_eq!(v6.tls_name(), "fd00::1");
        let unix: Server = "unix:/run/x.sock".parse().expect("unix");
        assert_eq!(unix.tls_name(), "localhost");
    }

    #[test]
    fn a_bad_address_says_what_is_wrong_with_it() {
        for (bad, reason) in [
            ("unix:", "empty socket path"),
            ("4245", "no port"),
            ("collector:99999", "the port is not a number"),
            ("collector:0", "port 0"),
            ("collector:", "the port is not a number"),
            ("::1:4245", "needs brackets"),
            ("[collector]:4245", "between brackets"),
            (
                "col_lector.svc:4245",
                "neither an IP address nor a DNS name",
            ),
            ("-collector:4245", "neither an IP address nor a DNS name"),
            ("a..b:4245", "neither an IP address nor a DNS name"),
            (":4245", "neither an IP address nor a DNS name"),
        ] {
            let error = bad.parse::<Server>().expect_err(bad).to_string();
            assert!(error.contains(reason), "{bad}: {error}");
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
        let long = format!("{}.svc:4245", "a".repeat(64));
        assert!(long.parse::<Server>().is_err(), "a label of 64 characters");
    }
}
