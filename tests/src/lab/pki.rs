//! A CA made for one test and the certificates it signs (rcgen), written
//! as PEM files in a temporary directory of the test's own.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Temporary directories made by this process, for unique names.
static MADE: AtomicU32 = AtomicU32::new(0);

/// A directory of its own under the system's temporary directory,
/// removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Makes `dropscope-e2e-TAG-PID-N`.
    pub fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "dropscope-e2e-{tag}-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Writes `contents` to the file `name` in it; returns its path as
    /// text, for command lines.
    pub fn write(&self, name: &str, contents: &str) -> Result<String> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.display().to_string())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A CA made for one test, with a server certificate for 127.0.0.1 and
/// `localhost` and
/// a client certificate it signed, as PEM files (paths as text) in a
/// temporary directory removed on drop.
pub struct TestPki {
    /// The CA's certificate.
    pub ca: String,
    /// The server's certificate (SANs: IP 127.0.0.1, DNS `localhost`;
    /// server auth).
    pub server_cert: String,
    /// The server's private key.
    pub server_key: String,
    /// The client's certificate (client auth).
    pub client_cert: String,
    /// The client's private key.
    pub client_key: String,
    /// Where the files are; removed last.
    _dir: TempDir,
}

impl TestPki {
    /// Makes the CA, signs both certificates and writes the files.
    pub fn new() -> Result<Self> {
        let dir = TempDir::new("pki")?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "dropscope e2e test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf = |name: &str,
                    subject_alt_names: Vec<String>,
                    usage: ExtendedKeyUsagePurpose|
         -> Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(subject_alt_names)?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(
            "dropscope e2e agent",
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_cert, client_key) = leaf(
            "dropscope e2e client",
            vec!["dropscope-e2e-client".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca: dir.write("ca.pem", &ca_cert.pem())?,
            server_cert: dir.write("server.pem", &server_cert)?,
            server_key: dir.write("server-key.pem", &server_key)?,
            client_cert: dir.write("client.pem", &client_cert)?,
            client_key: dir.write("client-key.pem", &client_key)?,
            _dir: dir,
        })
    }
}
