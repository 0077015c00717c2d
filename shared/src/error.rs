//! Errors of the shared layer, as enums callers can match.

use thiserror::Error;

/// A broken TCP frame stream (protocol v1 or v2).
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("the peer did not greet with CAMFLEET/1 or CAMFLEET/2 (got {0:?})")]
    BadHello(String),
    #[error("a malformed v2 message: {0}")]
    BadHeader(String),
    #[error("frame of {len} bytes is over the {max} byte cap")]
    TooLarge { len: usize, max: usize },
    #[error("frame {seq} does not hold a JPEG (no SOI marker)")]
    NotJpeg { seq: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A setting (flag, variable or config key) that cannot be used: its key
/// and why.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{key}: {why}")]
pub struct BadSetting {
    pub key: String,
    pub why: String,
}

impl BadSetting {
    pub fn new(key: &str, why: impl Into<String>) -> Self {
        BadSetting {
            key: key.to_owned(),
            why: why.into(),
        }
    }
}

/// A broker URL that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BrokerUrlError {
    #[error("broker URL {0:?} must start with mqtt:// or mqtts://")]
    Scheme(String),
    #[error("broker URL {0:?} has no host")]
    NoHost(String),
    #[error("broker URL {url:?} has a bad port: {reason}")]
    Port { url: String, reason: String },
}

/// MQTT client settings that cannot be turned into a connection.
#[derive(Debug, Error)]
pub enum MqttSetupError {
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable certificate")]
    NoCertificate { path: std::path::PathBuf },
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
