//! The gRPC channel to the OTLP receiver: plaintext for `http://`, TLS for
//! `https://` (with the CA that signed the receiver's certificate, and a
//! client certificate when the receiver wants one).

use std::{path::PathBuf, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tonic::{
    codegen::http::Uri,
    transport::{Channel, Endpoint},
};

use super::Error;
use crate::serve::tls;

/// TLS to the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpTls {
    /// PEM CA bundle that signed the receiver's certificate.
    pub ca: PathBuf,
    /// Client certificate and key, for a receiver that wants one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the receiver's certificate carries, when not the URL's
    /// host.
    pub server_name: Option<String>,
}

/// A lazily connected channel to `endpoint`, each call timing out after
/// `timeout`.
pub fn connect(
    endpoint: &str,
    tls_files: Option<&OtlpTls>,
    timeout: Duration,
) -> Result<Channel, Error> {
    let invalid = |source| Error::Endpoint {
        endpoint: endpoint.to_owned(),
        source,
    };
    if endpoint.starts_with("http://") {
        if tls_files.is_some() {
            return Err(Error::TlsOverHttp(endpoint.to_owned()));
        }
        return Ok(Endpoint::from_shared(endpoint.to_owned())
            .map_err(invalid)?
            .timeout(timeout)
            .connect_lazy());
    }
    if !endpoint.starts_with("https://") {
        return Err(Error::Scheme(endpoint.to_owned()));
    }
    let Some(files) = tls_files else {
        return Err(Error::HttpsWithoutCa(endpoint.to_owned()));
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| Error::Url(endpoint.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::Url(endpoint.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(4317);
    let name = files.server_name.clone().unwrap_or_else(|| host.clone());
    let name = ServerName::try_from(name.clone()).map_err(|_| Error::ServerName(name))?;
    let config = Arc::new(tls::client_config(
        &files.ca,
        files
            .identity
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path())),
    )?);
    // The URI is a label for the requests; the connector below dials.
    let label = format!(
        "http://{}",
        uri.authority().map_or(host.as_str(), |a| a.as_str())
    );
    let connector = tower::service_fn(move |_: Uri| {
        let (host, name, config) = (host.clone(), name.clone(), Arc::clone(&config));
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(Endpoint::from_shared(label)
        .map_err(invalid)?
        .timeout(timeout)
        .connect_with_connector_lazy(connector))
}
