//! Traffic from inside a pod: TCP connects and UDP datagrams, each bounded
//! in time and count, to this lab's own addresses only.

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result};

use super::Netns;

/// How a TCP connect ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOutcome {
    /// The handshake completed.
    Connected,
    /// Refused (RST).
    Refused,
    /// No answer within the time given.
    TimedOut,
}

/// Connects from `pod` to `to`, giving up after `timeout`.
pub fn connect_tcp(pod: &Netns, to: SocketAddr, timeout: Duration) -> Result<TcpOutcome> {
    pod.enter(move || match TcpStream::connect_timeout(&to, timeout) {
        Ok(_) => Ok(TcpOutcome::Connected),
        Err(error) => match error.kind() {
            std::io::ErrorKind::ConnectionRefused => Ok(TcpOutcome::Refused),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                Ok(TcpOutcome::TimedOut)
            }
            // Unreachable, not permitted, …: not what the test set up.
            _ => Err(error).with_context(|| format!("connecting to {to}")),
        },
    })?
}

/// Sends `per_flow` datagrams from each of the local ports `from_ports`
/// (0 = one ephemeral port) in `pod` to `to`.
pub fn send_udp(pod: &Netns, from_ports: Vec<u16>, to: SocketAddr, per_flow: usize) -> Result<()> {
    pod.enter(move || -> Result<()> {
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        for port in from_ports {
            let mut local = any;
            local.set_port(port);
            let socket = UdpSocket::bind(local).with_context(|| format!("binding {local}"))?;
            for _ in 0..per_flow {
                socket
                    .send_to(b"dropscope-lab", to)
                    .with_context(|| format!("sending to {to}"))?;
            }
        }
        Ok(())
    })?
}

/// Like [`send_udp`], but the flows take turns: one datagram from each
/// port, `per_flow` times over, so consecutive drops are never of the
/// same flow.
pub fn send_udp_interleaved(
    pod: &Netns,
    from_ports: Vec<u16>,
    to: SocketAddr,
    per_flow: usize,
) -> Result<()> {
    pod.enter(move || -> Result<()> {
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let sockets = from_ports
            .into_iter()
            .map(|port| {
                let mut local = any;
                local.set_port(port);
                UdpSocket::bind(local).with_context(|| format!("binding {local}"))
            })
            .collect::<Result<Vec<_>>>()?;
        for _ in 0..per_flow {
            for socket in &sockets {
                socket
                    .send_to(b"dropscope-lab", to)
                    .with_context(|| format!("sending to {to}"))?;
            }
        }
        Ok(())
    })?
}
