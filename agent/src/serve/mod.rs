//! The gRPC API: `dropscope.v1.Observer` (Observe, GetStatus, Explain),
//! `grpc.health.v1` (NOT_SERVING until the programs are attached and the
//! metadata synced) and server reflection in both v1 and v1alpha, on a
//! Unix socket or TCP (plaintext only on loopback; TLS, optionally mutual,
//! otherwise). Receives the hub and the agent's state; one consumer of the
//! hub per open Observe stream.

pub mod archive;
pub mod filter;
pub mod listen;
mod observe;
mod service;
pub mod status;
pub mod tls;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::{
    net::{TcpListener, UnixListener},
    sync::{mpsc, watch},
};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Router;

pub use self::{
    listen::{DEFAULT_SOCKET, Listen},
    service::{Observer, StatusReport},
    status::{AgentState, KernelInfo, MetadataSource, MetadataState},
    tls::{ReloadingConfig, TlsError, TlsFiles},
};
use crate::model::Readiness;

/// Where and how the API is served.
#[derive(Clone, Debug, Default)]
pub struct ServeConfig {
    /// The address; `None` turns the API off.
    pub listen: Option<Listen>,
    /// Server certificate, key and optional client CA.
    pub tls: Option<TlsFiles>,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Plaintext on a non-loopback address.
    #[error(
        "--listen {listen}: plaintext gRPC is only served on a Unix socket or a loopback address; give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS) to listen there"
    )]
    PlaintextNotLocal {
        /// The address.
        listen: Listen,
    },
    /// The socket's directory could not be made or a stale socket removed.
    #[error("preparing the API socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something other than a socket is at the socket path.
    #[error("--listen unix:{path}: the path exists and is not a socket; choose another path")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another process answers on the socket.
    #[error("--listen unix:{path}: another process (an agent already running?) listens there")]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
    /// Binding failed.
    #[error("listening on {listen}: {source}")]
    Bind {
        /// The address.
        listen: Listen,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Reflection could not read the descriptors.
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server stopped with an error.
    #[error("the gRPC server on {listen}: {source}")]
    Transport {
        /// The address.
        listen: Listen,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// A bound API, ready to serve.
pub struct Server {
    router: Router,
    listen: Listen,
    incoming: Incoming,
}

enum Incoming {
    Unix(UnixListener),
    Tcp(TcpListener),
    Tls(TcpListener, Arc<ReloadingConfig>),
}

impl Server {
    /// Binds `config.listen` and builds the services; errors name the
    /// address or file.
    pub async fn bind(
        config: &ServeConfig,
        listen: Listen,
        observer: Observer,
        ready: watch::Receiver<Readiness>,
    ) -> Result<Self, Error> {
        Self::bind_with(config, listen, observer, ready, &[], |router| router).await
    }

    /// [`Server::bind`] with more services: `add` adds them to the router,
    /// `names` are their health-check names (serving with the Observer).
    pub async fn bind_with(
        config: &ServeConfig,
        listen: Listen,
        observer: Observer,
        ready: watch::Receiver<Readiness>,
        names: &'static [&'static str],
        add: impl FnOnce(Router) -> Router,
    ) -> Result<Self, Error> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(ReloadingConfig::new(files.clone())?)),
            None if !listen.is_local() => {
                return Err(Error::PlaintextNotLocal { listen });
            }
            None => None,
        };
        let incoming = match (&listen, tls) {
            (Listen::Unix(path), _) => Incoming::Unix(bind_unix(path, &listen)?),
            (Listen::Tcp(address), tls) => {
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|source| Error::Bind {
                        listen: listen.clone(),
                        source,
                    })?;
                match tls {
                    Some(tls) => Incoming::Tls(listener, tls),
                    None => Incoming::Tcp(listener),
                }
            }
        };
        let listen = match &incoming {
            Incoming::Tcp(listener) | Incoming::Tls(listener, _) => {
                listener.local_addr().map(Listen::Tcp).unwrap_or(listen)
            }
            Incoming::Unix(_) => listen,
        };
        let router = add(routes(observer, ready, names)?);
        Ok(Self {
            router,
            listen,
            incoming,
        })
    }

    /// Where it listens (the bound port when 0 was asked for).
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let listen = self.listen.clone();
        let tls = matches!(self.incoming, Incoming::Tls(..));
        tracing::info!(%listen, tls, "gRPC API listening (dropscope.v1.Observer, grpc.health.v1, reflection)");
        let served = match self.incoming {
            Incoming::Unix(listener) => {
                self.router
                    .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                    .await
            }
            Incoming::Tcp(listener) => {
                self.router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
            }
            Incoming::Tls(listener, config) => {
                self.router
                    .serve_with_incoming_shutdown(tls_handshakes(listener, config), shutdown)
                    .await
            }
        };
        served.map_err(|source| Error::Transport { listen, source })
    }
}

fn bind_unix(path: &std::path::Path, listen: &Listen) -> Result<UnixListener, Error> {
    let socket_error = |source| Error::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(socket_error)?;
    }
    // Only a stale socket is replaced: never another kind of file, never
    // the socket of an agent that still answers.
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(socket_error(error)),
        Ok(meta) if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            return Err(Error::NotASocket {
                path: path.to_owned(),
            });
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(Error::SocketInUse {
                path: path.to_owned(),
            });
        }
        Ok(_) => {
            std::fs::remove_file(path).map_err(socket_error)?;
            tracing::debug!(path = %path.display(), "removed a stale API socket");
        }
    }
    UnixListener::bind(path).map_err(|source| Error::Bind {
        listen: listen.clone(),
        source,
    })
}

/// TLS handshakes run beside the accept loop, so a slow or silent client
/// cannot hold up the others; at most [`MAX_HANDSHAKES`] at once, failed
/// ones logged at debug. The loop ends with the server.
fn tls_handshakes(
    listener: TcpListener,
    config: Arc<ReloadingConfig>,
) -> ReceiverStream<Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>>
{
    const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
    let (sender, receiver) = mpsc::channel(16);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, typically: pause rather than spin.
                    tracing::warn!(%error, "accepting an API connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config.get());
            let handshaken = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = handshaken.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => log_refused(peer, &error.to_string()),
                    Err(_) => log_refused(peer, "handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// TLS handshakes in progress at once.
const MAX_HANDSHAKES: usize = 64;

fn log_refused(peer: SocketAddr, why: &str) {
    tracing::debug!(%peer, why, "TLS handshake failed; connection refused");
}

/// The Observer, health and reflection services on one router.
fn routes(
    observer: Observer,
    mut ready: watch::Receiver<Readiness>,
    names: &'static [&'static str],
) -> Result<Router, Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        loop {
            let readiness = ready.borrow_and_update().clone();
            let status = if readiness.is_ready() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for service in ["", dropscope_proto::OBSERVER_SERVICE]
                .into_iter()
                .chain(names.iter().copied())
            {
                health.set_service_status(service, status).await;
            }
            if ready.changed().await.is_err() {
                return;
            }
        }
    });
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(dropscope_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    Ok(tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(dropscope_proto::v1::observer_server::ObserverServer::new(
            observer,
        )))
}
