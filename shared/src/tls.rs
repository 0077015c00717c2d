//! Serving HTTPS: a rustls server configuration from PEM files, for the
//! viewer's dashboard and the node's HTTP server (`--tls-cert`,
//! `--tls-key`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

use crate::error::MqttSetupError;
pub use tokio_rustls::TlsAcceptor;

/// A certificate chain and key that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: std::path::PathBuf },
    #[error("{path} holds no private key (PEM: PKCS#8, RSA or EC)")]
    NoKey { path: std::path::PathBuf },
    #[error("the certificate and key do not go together: {0}")]
    Config(String),
}

/// An acceptor for the certificate chain in `cert` and the key in `key`
/// (PEM), HTTP/1.1 only.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let open = |path: &Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|source| TlsSetupError::Read {
                path: path.to_owned(),
                source,
            })
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Read {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|source| TlsSetupError::Read {
            path: key.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsSetupError::NoKey {
            path: key.to_owned(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client configuration trusting the CA certificates in `ca_file`
/// (PEM), or the system's when there is none: for `mqtts://` brokers and
/// nodes' HTTPS.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, MqttSetupError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |source| MqttSetupError::CaFile {
                path: path.to_owned(),
                source,
            };
            let mut reader = BufReader::new(File::open(path).map_err(ca_err)?);
            for cert in rustls_pemfile::certs(&mut reader) {
                roots
                    .add(cert.map_err(ca_err)?)
                    .map_err(|e| MqttSetupError::Tls(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(MqttSetupError::NoCertificate {
                    path: path.to_owned(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!("loading the system CA certificates: {error}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system CA certificates found; pass a CA file for mqtts://");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
