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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn write_certificate(dir: &Path, name: &str) -> TlsFiles {
        let issued =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("certificate");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: None,
        };
        std::fs::write(&files.cert, issued.cert.pem()).expect("write cert");
        std::fs::write(&files.key, issued.signing_key.serialize_pem()).expect("write key");
        files
    }

    /// Moves a file's modification time forward, as a renewal would.
    fn touch_later(path: &Path, seconds: u64) {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        file.set_modified(SystemTime::now() + Duration::from_secs(seconds))
            .expect("set mtime");
    }

    #[test]
    fn a_renewed_certificate_is_picked_up_and_a_broken_one_keeps_the_last_good() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = write_certificate(dir.path(), "first.example");
        let reloading = ReloadingConfig::new(files.clone()).expect("loads");
        let first = reloading.get();
        assert!(
            Arc::ptr_eq(&first, &reloading.get()),
            "unchanged files: same config"
        );

        write_certificate(dir.path(), "second.example");
        touch_later(&files.cert, 10);
        touch_later(&files.key, 10);
        let second = reloading.get();
        assert!(!Arc::ptr_eq(&first, &second), "renewed files are reloaded");

        std::fs::write(&files.key, "not a key").expect("break key");
        touch_later(&files.key, 20);
        assert!(
            Arc::ptr_eq(&second, &reloading.get()),
            "a broken renewal keeps the last good configuration"
        );
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = TlsFiles {
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("key.pem"),
            ca: None,
        };
        let error = server_config(&files).expect_err("no file").to_string();
        assert!(error.contains("missing.pem"), "{error}");
        std::fs::write(&files.cert, "no PEM here").expect("write");
        let error = server_config(&files)
            .expect_err("no certificate")
            .to_string();
        assert!(error.contains("no PEM certificate"), "{error}");
    }
}
