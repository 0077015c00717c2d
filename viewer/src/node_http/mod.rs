//! Talking to a node's HTTP server (the clock exchange, the Sources page's
//! camera API calls), plain or over TLS when its NodeInfo URL says
//! `https://`. TLS trusts the viewer's `--ca-file` (the fleet's CA), else
//! the system's roots. [`request`] sends one request and reads its reply
//! through the pure parser in [`response`].

mod exchange;
pub mod response;

use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

pub use self::exchange::{read_reply, request, Reply};
pub use self::response::{MAX_BODY, MAX_HEAD, MAX_HEADERS};

/// Where a node's HTTP server is, from one of its camera URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHttp {
    pub tls: bool,
    /// `host:port`.
    pub authority: String,
}

impl NodeHttp {
    /// From an `http://host:port/...` or `https://...` URL.
    pub fn parse(url: &str) -> Option<NodeHttp> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://")?),
        };
        let authority = rest.split('/').next()?.rsplit('@').next()?;
        (!authority.is_empty()).then(|| NodeHttp {
            tls,
            authority: authority.to_owned(),
        })
    }

    fn host(&self) -> &str {
        let host = match self.authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.authority,
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// A connection to the node, through TLS when it serves HTTPS.
    pub async fn connect(&self) -> Result<Box<dyn Io>> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach {}", self.authority))?;
        stream.set_nodelay(true)?;
        if !self.tls {
            return Ok(Box::new(stream));
        }
        let config = client_config()?;
        let name = ServerName::try_from(self.host().to_owned())
            .map_err(|e| anyhow!("{}: {e}", self.host()))?;
        let tls = TlsConnector::from(config)
            .connect(name, stream)
            .await
            .with_context(|| {
                format!(
                    "TLS with {} (is its certificate signed by the CA in --ca-file?)",
                    self.authority
                )
            })?;
        Ok(Box::new(tls))
    }
}

/// A byte stream to a node.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

static CA_FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// The CA the nodes' certificates are checked against (the viewer's
/// `--ca-file`); set once at start.
pub fn trust(ca_file: Option<std::path::PathBuf>) {
    let _ = CA_FILE.set(ca_file);
}

fn client_config() -> Result<Arc<ClientConfig>> {
    if let Some(config) = CONFIG.get() {
        return Ok(Arc::clone(config));
    }
    let ca = CA_FILE.get().cloned().flatten();
    let config = Arc::new(shared::tls::client_config(ca.as_deref())?);
    Ok(Arc::clone(CONFIG.get_or_init(|| config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_url_gives_the_server_and_whether_it_is_tls() {
        let plain = NodeHttp::parse("http://10.0.0.7:8080/cameras/cam0/stream.mjpg").unwrap();
        assert_eq!(
            (plain.tls, plain.authority.as_str()),
            (false, "10.0.0.7:8080")
        );
        let tls = NodeHttp::parse("https://pi-door.lan:8443/").unwrap();
        assert_eq!((tls.tls, tls.host()), (true, "pi-door.lan"));
        let v6 = NodeHttp::parse("https://[fe80::1]:80/x").unwrap();
        assert_eq!(v6.host(), "fe80::1");
        assert_eq!(NodeHttp::parse("rtsp://h/x"), None);
        assert_eq!(NodeHttp::parse("http:///x"), None);
    }
}
