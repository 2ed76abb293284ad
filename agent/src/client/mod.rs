//! A gRPC channel to a dropscope server (an agent's or a collector's API), for
//! the client commands and the agent's export to a collector: over a Unix
//! socket, plaintext TCP, or TLS (optionally with a client certificate).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use dropscope_proto::v1::observer_client::ObserverClient;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use crate::serve::tls;

mod server;

pub use server::{Server, ServerError};

/// How to reach one agent.
pub struct Connection {
    server: Server,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// Whether a client certificate is presented.
    identity: bool,
}

impl Connection {
    /// A connection to `server`; TLS when `ca` is given (with a client
    /// certificate when `identity` is).
    pub fn new(
        server: &Server,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
        server_name: Option<&str>,
    ) -> anyhow::Result<Self> {
        let tls = match ca {
            None => None,
            Some(ca) => {
                let config = tls::client_config(ca, identity)?;
                let name = server_name.unwrap_or(server.tls_name()).to_owned();
                let name = ServerName::try_from(name.clone())
                    .with_context(|| format!("{name:?} is not a valid TLS server name"))?;
                Some((Arc::new(config), name))
            }
        };
        Ok(Self {
            server: server.clone(),
            identity: tls.is_some() && identity.is_some(),
            tls,
        })
    }

    /// Whether it speaks TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether it presents a client certificate (mutual TLS).
    pub fn presents_certificate(&self) -> bool {
        self.identity
    }

    /// The address, for messages.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// A connected Observer client.
    pub async fn observer(&self) -> anyhow::Result<ObserverClient<Channel>> {
        Ok(ObserverClient::new(self.channel().await?).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// A connected channel, for any service the agent serves.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        // The URI is only a label here: the connector below dials.
        let endpoint = Endpoint::from_static("http://dropscope.agent");
        let server = self.server.clone();
        let tls = self.tls.clone();
        let connector = tower::service_fn(move |_| {
            let server = server.clone();
            let tls = tls.clone();
            async move { dial(&server, tls).await.map(TokioIo::new) }
        });
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|error| {
                // The transport error wraps the dial error: say the root once.
                let mut root: &dyn std::error::Error = &error;
                while let Some(source) = root.source() {
                    root = source;
                }
                anyhow::anyhow!(
                    "connecting to the dropscope agent at {}: {root} (is `dropscope agent` running there?)",
                    self.server
                )
            })
    }
}

/// A byte stream to the server, TLS or not.
type Stream = Box<dyn Io>;

/// What a dialed connection is.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn dial(
    server: &Server,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
) -> std::io::Result<Stream> {
    let plain: Stream = match server {
        Server::Unix(path) => Box::new(unix(path).await?),
        // Resolved on every dial: a reconnect follows the name.
        Server::Tcp { host, port } => {
            Box::new(tokio::net::TcpStream::connect((host.as_str(), *port)).await?)
        }
    };
    match tls {
        None => Ok(plain),
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            Ok(Box::new(connector.connect(name, plain).await?))
        }
    }
}

async fn unix(path: &PathBuf) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(path).await
}
