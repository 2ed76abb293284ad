//! TLS for the API, server and client side, with rustls (ring). The server
//! reads its certificate, key and optional client CA (mutual TLS) from
//! files and reloads them when they change (checked on each new
//! connection: a renewed certificate needs no restart). A reload that fails
//! is logged and the previous configuration kept.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use rustls::{ClientConfig, RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// Certificate files of a server or client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle: on a server, client certificates must chain to it
    /// (mutual TLS); on a client, the server's must.
    pub ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("TLS {what} {path}: {reason}")]
    File {
        /// Certificate, key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (key not matching the certificate, …).
    #[error("TLS configuration from {cert}: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client CA bundle cannot verify clients.
    #[error("TLS client CA {path}: {reason}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|source| error(source.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| error(source.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::File {
        what: "key",
        path: path.to_owned(),
        reason: source.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("CA", path)? {
        roots.add(cert).map_err(|source| TlsError::File {
            what: "CA",
            path: path.to_owned(),
            reason: source.to_string(),
        })?;
    }
    Ok(roots)
}

/// A server configuration from `files` (HTTP/2 only, as gRPC needs).
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = certificates("certificate", &files.cert)?;
    let key = private_key(&files.key)?;
    let config_error = |source| TlsError::Config {
        cert: files.cert.clone(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match &files.ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|source| TlsError::ClientCa {
                        path: ca.clone(),
                        reason: source.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client configuration: trust `ca` (required), present `cert`/`key`
/// when given (mutual TLS).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let config_error = |source| TlsError::Config {
        cert: ca.to_owned(),
        source,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates("certificate", cert)?, private_key(key)?)
            .map_err(|source| TlsError::Config {
                cert: cert.to_owned(),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The modification times of the files, to notice a change.
type Stamp = Vec<Option<SystemTime>>;

fn stamp(files: &TlsFiles) -> Stamp {
    [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|path| {
            std::fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok()
        })
        .collect()
}

/// A server configuration that follows its files.
pub struct ReloadingConfig {
    files: TlsFiles,
    current: Mutex<(Stamp, Arc<ServerConfig>)>,
}

impl ReloadingConfig {
    /// Loads `files` now (an error here stops the agent: it names the file).
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let config = Arc::new(server_config(&files)?);
        Ok(Self {
            current: Mutex::new((stamp(&files), config)),
            files,
        })
    }

    /// The configuration for a new connection, reloaded first when a file
    /// changed since the last load.
    pub fn get(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.files);
        if now != current.0 {
            match server_config(&self.files) {
                Ok(config) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS files changed; reloaded");
                    *current = (now, Arc::new(config));
                }
                Err(error) => {
                    tracing::warn!(%error, "TLS files changed but cannot be loaded; keeping the previous ones");
                    current.0 = now;
                }
            }
        }
        Arc::clone(&current.1)
    }
}
